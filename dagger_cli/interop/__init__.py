"""Formats of other tools: the LeRobot v3.0 dataset (written with pyarrow and PyAV, read back the same way)."""
