"""Amazon MSK with IAM (``--kafka-auth aws-msk-iam``): librdkafka's OAUTHBEARER token refresh
callback with tokens from AWS's signer (``pip install 'streamworker[msk-iam]'``), signed with the
default credential chain for the region boto3 resolves. librdkafka calls it at start and again
at 80 % of each token's lifetime, so tokens (15 minutes) are refreshed before they expire."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from streamworker.errors import ConfigError

log = structlog.get_logger("streamworker.kafka")

#: What an oauth_cb returns: the token and its expiry in seconds since the epoch.
Token = tuple[str, float]


def msk_iam_conf(region: str | None = None) -> dict[str, Any]:
    """The librdkafka settings for MSK IAM: SASL_SSL, OAUTHBEARER and the refresh callback
    (``-X security.protocol=…`` still wins where given)."""
    return {"security.protocol": "SASL_SSL", "sasl.mechanisms": "OAUTHBEARER",
            "oauth_cb": oauth_callback(region or _region())}


def oauth_callback(region: str, provider: Callable[[str], tuple[str, int]] | None = None) -> Callable[[str], Token]:
    """An ``oauth_cb`` for confluent-kafka: each call signs a fresh token for ``region``."""
    if provider is None:
        try:
            from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        except ImportError:
            raise ConfigError("--kafka-auth aws-msk-iam needs AWS's signer: pip install 'streamworker[msk-iam]' "
                              "(aws-msk-iam-sasl-signer-python)") from None
        provider = MSKAuthTokenProvider.generate_auth_token

    def oauth_cb(_config: str) -> Token:
        token, expiry_ms = provider(region)
        log.debug("MSK IAM token signed", region=region, expires_in_ms=expiry_ms)
        return token, expiry_ms / 1000.0

    return oauth_cb


def _region() -> str:
    from streamworker.aws.session import new_session

    region = new_session().region_name  # AWS_DEFAULT_REGION, the profile's, then AWS_REGION
    if not region:
        raise ConfigError("--kafka-auth aws-msk-iam needs the cluster's region: pass --region, or set AWS_REGION "
                          "(or a profile's region)")
    return str(region)
