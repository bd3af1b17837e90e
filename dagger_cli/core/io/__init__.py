"""The run directory and its files: one atomic writer and reader (`files`), checkpoints, the layout and its resolver
(`run_dir`), metrics (JSONL and TensorBoard), videos and the run's process status. Imports no other floor but the
shared one (config, errors)."""
