"""A stand-in for RoboTwin's runtime package, for tests only (put its parent on ROBOTWIN_PATH)."""
