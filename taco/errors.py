"""User-facing errors: each message names the file or config key at fault and what to do."""


class TacoError(Exception):
    """An error caused by the user's input (data or config), reported without a traceback."""


class ConfigError(TacoError):
    """A config value is unknown or inconsistent."""


class DataError(TacoError):
    """A data set file (annotations, images) is missing, malformed or unreadable."""
