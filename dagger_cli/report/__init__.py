"""What `dagger report` reads and writes: runs (config, summary, metrics rows), their grouping by config into
seed aggregates, learning-curve plots (matplotlib) and a self-contained HTML report."""
