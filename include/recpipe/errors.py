"""recpipe's exceptions: each message says what is wrong, where, and how to fix it.

The DAG layer maps them onto Airflow: ``DataError`` (bad input, a failed gate on data)
fails the task without retrying; ``StorageError`` is transient and retried.
"""


class RecpipeError(Exception):
    """Base class of every error recpipe raises on purpose."""


class ConfigError(RecpipeError):
    """The environment or a parameter is wrong (missing endpoint, unknown model, ...)."""


class DataError(RecpipeError):
    """The data itself is wrong or missing; retrying cannot help."""


class DataQualityError(DataError):
    """A batch failed the data-quality gate; ``report`` names the report to read."""

    def __init__(self, message: str, report: str | None = None):
        super().__init__(message if report is None else f"{message} Report: {report}")
        self.report = report


class PartitionNotFound(DataError):
    """A partition a stage needs was never written or never committed."""


class CorruptObjectError(DataError):
    """An object's bytes do not match the checksum its manifest recorded."""


class StorageError(RecpipeError):
    """The object store failed or is unreachable; transient, worth a retry."""


class ConcurrentUpdate(StorageError):
    """Another writer changed an object between our read and our conditional write; retry."""


class UpstreamNotReady(RecpipeError):
    """An earlier date this stage depends on is still being processed; transient, retried."""


class PublishRefused(DataError):
    """Publish refused to commit a table that fails its checks (empty, degenerate); the
    previous table keeps serving."""


class ResourceLimit(ConfigError):
    """The configured run needs more memory (or another resource) than the machine has.

    A ``ConfigError``: retrying the same run cannot help, changing a parameter can; the
    message names the parameter.
    """
