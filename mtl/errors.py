"""Error types with messages a user can act on; the CLI prints them as one paragraph."""


class MtlError(Exception):
    """Base class for every expected failure of a pipeline step."""


class ConfigError(MtlError):
    """params.yaml or an override is missing, unknown or of the wrong type."""


class DownloadError(MtlError):
    """A source could not be fetched, verified or extracted."""


class DataFormatError(MtlError):
    """A raw file does not have the documented format (names the file, line or column)."""


class DataValidationError(MtlError):
    """A Great Expectations suite failed; carries the path of the written report."""

    def __init__(self, message: str, report_path: str | None = None):
        super().__init__(message)
        self.report_path = report_path


class UnsafePickleError(DataFormatError):
    """A pickle referenced a global outside the allow-list."""


class TrainingError(MtlError):
    """Training diverged (NaN/inf loss) or could not run."""


class ModelConfigError(MtlError):
    """A model cannot be built for a dataset (e.g. ESMM without a click→purchase funnel)."""


class TrackingError(MtlError):
    """The MLflow tracking/registry server is missing, unreachable or refused an operation."""


class GateRejected(MtlError):
    """Raised only where a caller asks for a hard failure on a rejected gate (the default is a decision)."""
