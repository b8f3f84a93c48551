"""Shared by the benchmarks."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """Peak RSS of this process. VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a
    benchmark's child process would report its parent's peak (the servers)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def read_events(path: Path, ev: str | None = None) -> list[dict[str, Any]]:
    """The JSON-lines events a benchmark's processors logged (``ev`` picks one kind); a line cut
    short by a process killed mid-write is skipped."""
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if ev is None or e.get("ev") == ev:
                out.append(e)
    return out


def write_results(path: str | Path, results: Any) -> Path:
    """Write a benchmark's figures as JSON (creating the folder) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")
    return out


def run_variant(name: str, cmd: list[str], timeout: float) -> dict[str, Any] | None:
    """Run one variant's child process; its figures are the last JSON line it prints. On failure
    say why in one line and return None."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    line = next((ln for ln in reversed(r.stdout.splitlines()) if ln.startswith("{")), None)
    if r.returncode != 0 or line is None:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"{name}: failed ({tail[0][:200]}); skipped")
        return None
    return dict(json.loads(line))


def backlog(endpoint: str, prefix: str, shards: int, records: int, data: Any, key: Any) -> tuple[Any, str]:
    """A new Kinesis stream at ``endpoint`` holding ``records`` records (``data(n)``,
    ``key(n)``): the backlog a benchmark reads. Returns the client and the stream name."""
    import uuid

    import boto3

    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    stream = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.5})
    for i in range(0, records, 500):
        kinesis.put_records(StreamName=stream, Records=[{"Data": data(n), "PartitionKey": key(n)}
                                                        for n in range(i, min(i + 500, records))])
    return kinesis, stream
