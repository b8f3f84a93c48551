"""Clients streamworker makes parse response timestamps straight to UTC (botocore's default goes
through dateutil's tzlocal, ~30 % of a Kinesis worker's CPU): the same instants, faster. And
their temporary credentials are refreshed as their lifetime asks, not on every call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.utils
import pytest
from botocore.credentials import CredentialProvider, CredentialResolver, DeferredRefreshableCredentials

from streamworker.aws.session import botocore_session, fit_refresh_windows, parse_timestamp, refresh_windows
from streamworker.coordinator.builder import make_client


@pytest.mark.parametrize("value", [1700000000.123, 1700000000, "2024-01-01T10:00:00Z", "2024-01-01T10:00:00+02:00"])
def test_the_same_instant_as_botocore(value: float | str) -> None:
    ours, theirs = parse_timestamp(value), botocore.utils.parse_timestamp(value)  # type: ignore[arg-type]
    assert ours == theirs
    if isinstance(value, (int, float)):
        assert ours.utcoffset() == timedelta(0)


def test_a_client_of_ours_parses_get_records_timestamps_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps({"Records": [{"Data": "aGk=", "PartitionKey": "k", "SequenceNumber": "1",
                                    "ApproximateArrivalTimestamp": 1700000000.5}],
                       "NextShardIterator": "it", "MillisBehindLatest": 0}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    try:
        client = make_client("kinesis", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}")
        record = client.get_records(ShardIterator="it")["Records"][0]
    finally:
        server.shutdown()
    ts = record["ApproximateArrivalTimestamp"]
    assert ts.utcoffset() == timedelta(0) and ts.timestamp() == 1700000000.5
    assert record["Data"] == b"hi"


def test_refresh_windows_are_botocores_for_long_credentials_and_fractions_of_short_ones() -> None:
    assert refresh_windows(6 * 3600) == (900, 600)
    assert refresh_windows(3600) == (900, 600)
    assert refresh_windows(900) == (450, 225)  # an assumed role's shortest duration
    assert refresh_windows(10) == (5, 2.5)


def _short_lived(life: float, fetches: list[datetime]) -> Callable[[], dict[str, str]]:
    def fetch() -> dict[str, str]:
        fetches.append(datetime.now(timezone.utc))
        return {"access_key": "ASIA", "secret_key": "s", "token": "t",
                "expiry_time": (datetime.now(timezone.utc) + timedelta(seconds=life)).isoformat()}
    return fetch


def test_credentials_lasting_fifteen_minutes_are_not_fetched_on_every_call() -> None:
    """botocore alone fetches credentials that last ≤ 15 min on every call (boto/botocore#2189):
    100 calls, 100 fetches (an STS AssumeRole or a credential_process each). Fitted: one."""
    plain: list[datetime] = []
    creds = DeferredRefreshableCredentials(_short_lived(900, plain), "test")
    for _ in range(100):
        creds.get_frozen_credentials()
    assert len(plain) == 100  # the defect being worked around; if botocore fixes it, this says so

    fitted: list[datetime] = []
    creds = fit_refresh_windows(DeferredRefreshableCredentials(_short_lived(900, fitted), "test"))
    for _ in range(100):
        creds.get_frozen_credentials()
    assert len(fitted) == 1
    assert (creds._advisory_refresh_timeout, creds._mandatory_refresh_timeout) == pytest.approx((450, 225), abs=1)


def test_fitted_credentials_are_refreshed_inside_the_window() -> None:
    fetches: list[datetime] = []
    creds = fit_refresh_windows(DeferredRefreshableCredentials(_short_lived(60, fetches), "test"))
    creds.get_frozen_credentials()
    later = datetime.now(timezone.utc) + timedelta(seconds=45)  # 15 s left: inside the 30 s window
    creds._time_fetcher = lambda: later
    creds.get_frozen_credentials()
    assert len(fetches) == 2


def test_every_session_streamworker_makes_fits_its_credentials() -> None:
    fetches: list[datetime] = []

    class ShortLived(CredentialProvider):
        METHOD = CANONICAL_NAME = "short-lived"

        def load(self) -> DeferredRefreshableCredentials:
            return DeferredRefreshableCredentials(_short_lived(600, fetches), "short-lived")

    session = botocore_session()
    session.register_component("credential_provider", CredentialResolver([ShortLived()]))
    for _ in range(20):
        creds = session.get_credentials()
        assert creds is not None
        creds.get_frozen_credentials()
    assert len(fetches) == 1
    assert session.get_credentials() is session.get_credentials()


@pytest.mark.parametrize("service", ["kinesis", "dynamodb", "dynamodbstreams", "sts", "sqs", "cloudwatch", "ec2"])
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1", "ap-southeast-7"])
def test_a_pruned_endpoint_table_resolves_as_botocores(service: str, region: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The services streamworker keeps, and one it drops (ec2), resolve to the same URL and
    signing region as with botocore's whole table, in the commercial, China and GovCloud partitions."""
    import botocore.session

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    kw: dict[str, Any] = {"region_name": region, "aws_access_key_id": "k", "aws_secret_access_key": "s"}
    ours: Any = botocore_session().create_client(service, **kw)
    theirs: Any = botocore.session.Session().create_client(service, **kw)
    assert ours.meta.endpoint_url == theirs.meta.endpoint_url
    assert ours.meta.config.signature_version == theirs.meta.config.signature_version
    assert ours._request_signer._region_name == theirs._request_signer._region_name
    assert ours._request_signer._signing_name == theirs._request_signer._signing_name


def test_sessions_keep_only_the_endpoints_and_no_documentation_of_what_they_call() -> None:
    session = botocore_session()
    session.create_client("kinesis", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    loader = session.get_component("data_loader")
    endpoints, _ = loader.load_data_with_path("endpoints")
    services = {name for p in endpoints["partitions"] for name in p["services"]}
    assert "kinesis" in services and "dynamodb" in services
    assert "ec2" not in services and len(services) <= 20
    model = loader.load_service_model("kinesis", "service-2")
    assert "documentation" not in model["operations"]["GetRecords"]
    assert "documentation" not in json.dumps(model)
    assert model["operations"]["GetRecords"]["input"] == {"shape": "GetRecordsInput"}


def test_a_kinesis_client_keeps_a_connection_per_shard_reader(aws_env: None) -> None:
    """Each shard reads on its own thread: with botocore's pool of 10 (or our former 50) a worker
    holding hundreds of shards opened a new connection for most reads and logged "Connection
    pool is full, discarding connection" (benchmarks/scale.py at 1,000 shards)."""
    assert make_client("kinesis")._client_config.max_pool_connections >= 1000
    assert make_client("dynamodb")._client_config.max_pool_connections == 50
