"""The exceptions users can cause. The CLI turns each into a one-line error and a non-zero exit."""


class ProdmatchError(Exception):
    """An error the user can fix; its message says what happened and what to do."""


class ConfigError(ProdmatchError):
    """A setting is missing or invalid."""


class MemoryBudgetError(ProdmatchError):
    """A job's estimated peak memory exceeds the budget (`prodmatch.hardware.memory_budget`)."""


class DatabaseError(ProdmatchError):
    """The database cannot be reached or lacks what prodmatch needs (e.g. pgvector)."""


class DatabaseUnavailable(DatabaseError):
    """The server cannot take a connection now (down, starting, out of connection slots): worth retrying.

    Watchers (`embed --watch`, `link --watch`) wait and retry on it; a wrong address or password is a plain
    DatabaseError, which they report at once."""


class TooManyConnectionsError(DatabaseUnavailable):
    """Every connection slot of the server (`max_connections`) is in use."""


class IngestError(ProdmatchError):
    """A catalogue file cannot be read at all (unreadable, missing required columns)."""


class ModelLoadError(ProdmatchError):
    """A model cannot be loaded from the hub or a local directory."""


class ImageError(ProdmatchError):
    """An image reference cannot be turned into an RGB image.

    `transient` is true for failures worth retrying (timeouts, connection errors, HTTP 5xx/429).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
