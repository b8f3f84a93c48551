"""Clients streamworker makes parse response timestamps straight to UTC (botocore's default goes
through dateutil's tzlocal, ~30 % of a Kinesis worker's CPU): the same instants, faster."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.utils
import pytest

from streamworker.aws_session import parse_timestamp
from streamworker.builder import make_client


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
