"""Worker settings: ``WorkerConfig`` (flags > ``STREAMWORKER_*`` environment > TOML file >
defaults), the errors a bad one gets, and the masking of credentials in what is echoed."""

from streamworker.config.problems import check_environment
from streamworker.config.secrets import is_secret_key, redact
from streamworker.config.settings import WorkerConfig

__all__ = ["WorkerConfig", "check_environment", "is_secret_key", "redact"]
