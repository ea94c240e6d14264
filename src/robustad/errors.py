"""Errors that carry a user-facing message: the CLI prints them without a traceback."""


class RobustADError(Exception):
    """Base class for errors whose message alone tells the user what to fix."""


class ConfigError(RobustADError, ValueError):
    """A configuration value is not allowed; raised before any training starts."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid value for `{key}`: {value!r}. Allowed: {allowed}.")


class ArgumentError(ValueError):
    """A constructor argument is not allowed (networks, which know nothing of configs); the
    assembly layer turns it into a `ConfigError` naming the config key."""

    def __init__(self, argument: str, value: object, allowed: str) -> None:
        self.argument, self.value, self.allowed = argument, value, allowed
        super().__init__(f"invalid {argument}: {value!r}. Allowed: {allowed}.")


class DataNotFoundError(RobustADError, FileNotFoundError):
    """The dataset files could not be found or fetched."""


class CorruptDataError(RobustADError):
    """A dataset file exists but is truncated or malformed."""


class RunFolderOccupied(RobustADError):
    """The run folder already holds a run and `resume=true` was not given: nothing is touched."""
