"""AWS credentials as KCL users configure them: the default chain, a named profile, or an assumed
role (``KclStsAssumeRoleCredentialsProvider|ARN|SESSION|endpointRegion=R|externalId=X`` in a
``.properties`` file; ``--role-arn`` / ``--external-id`` as flags), per service where the file
says so. An assumed role's credentials refresh for the life of the process (botocore's
assume-role fetcher behind refreshable credentials: boto3 has no public API for it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamworker.errors import ConfigError

if TYPE_CHECKING:
    import boto3

_DEFAULT = {"DefaultCredentialsProvider", "DefaultAWSCredentialsProviderChain",
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
            "com.amazonaws.auth.DefaultAWSCredentialsProviderChain"}
_ASSUME_ROLE = {"KclStsAssumeRoleCredentialsProvider", "KclSTSAssumeRoleSessionCredentialsProvider",
                "STSAssumeRoleSessionCredentialsProvider", "StsAssumeRoleCredentialsProvider"}


@dataclass(frozen=True)
class CredentialSpec:
    """Where one service's credentials come from (all None: boto3's default chain)."""

    profile: str | None = None
    role_arn: str | None = None
    session_name: str = "streamworker"
    external_id: str | None = None
    #: The STS endpoint's region (KCL's ``endpointRegion``); default: the client's.
    sts_region: str | None = None
    duration_seconds: int | None = None

    @property
    def is_default(self) -> bool:
        return self.profile is None and self.role_arn is None


def parse_provider(value: str) -> CredentialSpec | None:
    """A KCL ``AwsCredentialsProvider*`` value; None for a provider streamworker does not know."""
    v = value.strip()
    if v in _DEFAULT:
        return CredentialSpec()
    name, *args = v.split("|")
    short = name.rsplit(".", 1)[-1]
    if short == "ProfileCredentialsProvider":
        return CredentialSpec(profile=args[0] if args and args[0] else None)
    if short in _ASSUME_ROLE:
        if not args or not args[0].startswith("arn:"):
            raise ConfigError(f"credentials provider {short}: expected {short}|ROLE_ARN|SESSION_NAME[|endpointRegion=R]"
                              f"[|externalId=X], got {v!r}")
        positional = [a for a in args[1:] if "=" not in a]
        named = dict(a.split("=", 1) for a in args[1:] if "=" in a)
        unknown = set(named) - {"endpointRegion", "externalId", "durationSeconds"}
        if unknown:
            raise ConfigError(f"credentials provider {short}: unknown option(s) {', '.join(sorted(unknown))}")
        return CredentialSpec(role_arn=args[0], session_name=positional[0] if positional else "streamworker",
                              external_id=named.get("externalId"), sts_region=named.get("endpointRegion"),
                              duration_seconds=int(named["durationSeconds"]) if "durationSeconds" in named else None)
    return None


def session_for(spec: CredentialSpec | None, region: str | None = None,
                endpoint_url: str | None = None) -> boto3.session.Session:
    """A boto3 session with ``spec``'s credentials (refreshing ones for a role); ``endpoint_url``
    for its clients (not for the AssumeRole calls, which go to STS)."""
    from streamworker.aws.session import botocore_session, new_session, region_of, session_over

    if spec is None or spec.role_arn is None:
        return new_session(region, spec.profile if spec else None, endpoint_url)
    from botocore.credentials import AssumeRoleCredentialFetcher, CredentialProvider, CredentialResolver

    source = botocore_session(spec.profile)  # its chain signs the AssumeRole calls
    client_region = region_of(source, region)
    if client_region:
        source.set_config_variable("region", client_region)
    sts_region = spec.sts_region or client_region

    def sts_client(service: str, **kw: Any) -> Any:
        if sts_region:
            kw["region_name"] = sts_region
        return source.create_client(service, **kw)

    extra: dict[str, Any] = {"RoleSessionName": _session_name(spec.session_name)}
    if spec.external_id:
        extra["ExternalId"] = spec.external_id
    if spec.duration_seconds:
        extra["DurationSeconds"] = spec.duration_seconds
    fetcher = AssumeRoleCredentialFetcher(sts_client, source.get_credentials(), spec.role_arn, extra_args=extra)

    class _AssumedRole(CredentialProvider):
        METHOD = "assume-role"
        CANONICAL_NAME = "streamworker-assume-role"

        def load(self) -> Any:
            from botocore.credentials import DeferredRefreshableCredentials

            return DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role")

    role = botocore_session()
    if client_region:
        role.set_config_variable("region", client_region)
    role.register_component("credential_provider", CredentialResolver([_AssumedRole()]))
    return session_over(role, None, endpoint_url)


def _session_name(name: str) -> str:
    clean = re.sub(r"[^\w+=,.@-]", "-", name)[:64]
    return clean if len(clean) >= 2 else "streamworker"
