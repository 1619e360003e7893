"""The errors a user can cause. The CLI prints them as one line and exits with code 2."""


class OptlabError(Exception):
    """Base class: a problem with the user's input or environment, never a bug."""


class ConfigError(OptlabError):
    """An invalid setting: unknown name, out-of-range value, malformed file."""


class DataError(OptlabError):
    """A dataset file that is missing, truncated or corrupt."""


class ResultsError(OptlabError):
    """A results folder that cannot be written or read."""
