"""Errors a user can act on. The CLI prints them as one line and exits with `exit_code`."""


class DaggerError(Exception):
    """A failure with a message fit to show a user as one line."""

    exit_code: int = 1


class ConfigError(DaggerError):
    """A preset, config file or `--set` override is malformed or names an unknown key."""

    exit_code = 2


class UsageError(DaggerError):
    """The command line itself is wrong (a missing argument, a bad flag value, a path that is not a run dir)."""

    exit_code = 2


class CheckpointError(DaggerError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""

    exit_code = 2


class EnvUnavailableError(DaggerError):
    """The simulator a preset needs is not installed or cannot start on this machine."""

    exit_code = 1
