"""boto3 sessions as streamworker makes them: like boto3's own, but response timestamps are
parsed straight to UTC datetimes and temporary credentials are not fetched on every call.

botocore parses every timestamp into a datetime in the *local* zone through dateutil's
``tzlocal``, which costs about 3 µs each; a GetRecords reply carries one per record
(``ApproximateArrivalTimestamp``), and on a busy shard that parsing was ~30 % of a worker's CPU.
The same instant, timezone-aware in UTC, costs a tenth of that. Clients a caller passes in
(``Worker(kinesis_client=...)``) are used as they are.

Refreshing credentials are refreshed in proportion to how long they last. botocore refreshes
when fewer than 15 minutes are left and blocks every thread from 10 minutes before expiry
(boto/botocore#2189), so credentials that last 15 minutes or less (``durationSeconds = 900``, a
``credential_process`` handing out short tokens) were fetched again on *every* API call, all the
worker's threads queueing behind each fetch; a lease renewal stuck in that queue lost its lease.

botocore keeps its endpoint table (``endpoints.json``, every region of ~400 services, about 7 MB of
dicts) for a session's lifetime, the largest single share of a worker's memory; streamworker's
sessions keep only the entries of the services they call (others resolve from the partition's
defaults, as a service new to botocore does) and drop the service models' documentation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session
import botocore.utils
from botocore.credentials import RefreshableCredentials


def parse_timestamp(value: Any) -> datetime:
    """Epoch seconds (the JSON protocols) to a UTC datetime; anything else as botocore does."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    parsed: datetime = botocore.utils.parse_timestamp(value)
    return parsed


#: botocore's windows (seconds before expiry): refresh when convenient, then block until refreshed
ADVISORY_WINDOW = 15 * 60.0
MANDATORY_WINDOW = 10 * 60.0


def refresh_windows(lifetime: float) -> tuple[float, float]:
    """(advisory, mandatory) refresh windows for credentials that last ``lifetime`` seconds:
    botocore's, or a half and a quarter of the lifetime when those would cover all of it."""
    return min(ADVISORY_WINDOW, lifetime / 2), min(MANDATORY_WINDOW, lifetime / 4)


def fit_refresh_windows(credentials: Any) -> Any:
    """Make refreshing ``credentials`` set their refresh windows from each new set's lifetime."""
    if not isinstance(credentials, RefreshableCredentials) or getattr(credentials, "_sw_fitted", False):
        return credentials
    creds: Any = credentials  # botocore's private hooks, pinned by tests/unit/aws/test_aws_session.py
    fetch = creds._refresh_using

    def fit(expiry: Any) -> None:
        if isinstance(expiry, str):
            expiry = botocore.utils.parse_timestamp(expiry)
        if expiry is not None:
            lifetime = (expiry - datetime.now(timezone.utc)).total_seconds()
            advisory, mandatory = refresh_windows(max(lifetime, 0.0))
            creds._advisory_refresh_timeout = advisory
            creds._mandatory_refresh_timeout = mandatory

    def fetch_and_fit() -> Any:
        data = fetch()
        fit(data.get("expiry_time") if isinstance(data, dict) else None)
        return data

    creds._refresh_using = fetch_and_fit
    creds._sw_fitted = True
    fit(creds._expiry_time)
    return credentials


#: endpoint prefixes of the services streamworker calls, and a few its users' hooks commonly do
ENDPOINT_SERVICES = frozenset({
    "kinesis", "dynamodb", "streams.dynamodb", "sts", "sqs", "monitoring", "sns", "s3", "kms", "lambda",
    "firehose", "logs", "secretsmanager", "ssm", "sso", "oidc", "portal.sso", "iam",
})


def prune_endpoints(data: Any, keep: Iterable[str] = ENDPOINT_SERVICES) -> Any:
    """Drop, in place, the services not in ``keep`` from botocore's endpoint table."""
    wanted = set(keep)
    for partition in data.get("partitions", []):
        services = partition.get("services", {})
        for name in [n for n in services if n not in wanted]:
            del services[name]
    return data


def strip_documentation(model: Any) -> Any:
    """Drop, in place, the documentation strings of a service model (only ``help()`` reads them)."""
    todo = [model]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            node.pop("documentation", None)
            todo.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            todo.extend(v for v in node if isinstance(v, (dict, list)))
    return model


class _Loader(botocore.loaders.Loader):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sw_trimmed: set[str] = set()

    def load_data_with_path(self, name: str) -> Any:
        data, path = super().load_data_with_path(name)
        if name not in self._sw_trimmed:  # in place: the loader's cache holds these same dicts
            self._sw_trimmed.add(name)
            if name == "endpoints":
                prune_endpoints(data)
            elif name.endswith("/service-2"):
                strip_documentation(data)
        return data, path


def _loader(data_path: str | None) -> botocore.loaders.Loader:
    """botocore's ``create_loader``, pruning the endpoint table it loads."""
    if not data_path:
        return _Loader()
    return _Loader(extra_search_paths=[os.path.expanduser(os.path.expandvars(p))
                                       for p in data_path.split(os.pathsep)])


class _Session(botocore.session.Session):
    def get_credentials(self) -> Any:
        return fit_refresh_windows(super().get_credentials())


def botocore_session(profile: str | None = None) -> botocore.session.Session:
    """A botocore session that parses timestamps to UTC and fits refresh windows to lifetimes."""
    session = _Session(profile=profile)
    try:
        session.get_scoped_config()  # a profile that does not exist: one clear error now, not at the first call
    except botocore.exceptions.ProfileNotFound as exc:
        from streamworker.errors import ConfigError

        raise ConfigError(f"{exc} in ~/.aws/config or ~/.aws/credentials (aws configure list-profiles shows "
                          "them)") from None
    session.register_component("data_loader", _loader(session.get_config_variable("data_path")))
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


def region_of(session: botocore.session.Session, region: str | None = None) -> str | None:
    """The region to use: the one given, else botocore's (``AWS_DEFAULT_REGION``, the profile's),
    else ``AWS_REGION``, which the other AWS SDKs, the AWS CLI v2, ECS and Lambda use and botocore
    does not read."""
    return region or session.get_config_variable("region") or os.environ.get("AWS_REGION") or None


class EndpointSession(boto3.session.Session):
    """A boto3 session whose clients all go to ``endpoint_url`` unless a caller names another
    (``--endpoint-url``: what ``AWS_ENDPOINT_URL`` does, from the command line)."""

    def __init__(self, *, endpoint_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url

    def client(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("endpoint_url"):
            kwargs["endpoint_url"] = self.endpoint_url
        return super().client(*args, **kwargs)


def session_over(core: botocore.session.Session, region: str | None = None,
                 endpoint_url: str | None = None) -> boto3.session.Session:
    """A boto3 session over the botocore session ``core`` (with ``endpoint_url`` for every client)."""
    if endpoint_url:
        return EndpointSession(botocore_session=core, region_name=region, endpoint_url=endpoint_url)
    return boto3.session.Session(botocore_session=core, region_name=region)


def new_session(region: str | None = None, profile: str | None = None,
                endpoint_url: str | None = None) -> boto3.session.Session:
    """A boto3 session over ``botocore_session``: boto3's credential chain, region and endpoints
    (``profile``: a named profile of ~/.aws/config, as ``--profile`` / ``AWS_PROFILE`` choose one)."""
    core = botocore_session(profile)
    return session_over(core, region_of(core, region), endpoint_url)
