"""The errors a user can cause. The CLI prints them as one line and exits with code 2."""


class OptlabError(Exception):
    """Base class: a problem with the user's input or environment, never a bug."""


class ConfigError(OptlabError):
    """An invalid setting: unknown name, out-of-range value, malformed file."""


class DataError(OptlabError):
    """A dataset file that is missing, truncated or corrupt."""


class ResultsError(OptlabError):
    """A results folder that cannot be written or read."""


class Interrupted(OptlabError):
    """Ctrl-C or SIGTERM stopped a run; its folder holds everything up to the last finished epoch."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
