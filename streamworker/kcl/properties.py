"""Read a KCL MultiLangDaemon ``.properties`` file into streamworker settings.

Every KCL key maps to a setting or draws one warning naming it; nothing is silently dropped.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from streamworker.aws.credentials import CredentialSpec, parse_provider
from streamworker.errors import ConfigError


@dataclass
class KclProperties:
    """What a properties file says, in streamworker's terms."""

    settings: dict[str, Any] = field(default_factory=dict)
    #: The MultiLang child command (``executableName``), resolved against the file's folder.
    command: list[str] | None = None
    workdir: Path | None = None
    region: str | None = None
    kinesis_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    #: Per service: "default" (``AwsCredentialsProvider``, every client) and "dynamodb"
    #: (``AwsCredentialsProviderDynamoDB``, the lease table's client).
    credentials: dict[str, CredentialSpec] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def profile(self) -> str | None:
        """The default provider's profile, if it names one."""
        spec = self.credentials.get("default")
        return spec.profile if spec else None


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties`` syntax: ``key = value`` or ``key: value``, ``#``/``!`` comments,
    backslash line continuations and escapes."""
    out: dict[str, str] = {}
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.lstrip() if not buf else raw.lstrip()
        if not buf and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            buf += line[:-1]
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)
    for line in logical:
        m = re.match(r"((?:\\.|[^\s:=\\])+)\s*[:=]?\s*(.*)$", line)
        if not m:
            continue
        key = re.sub(r"\\(.)", r"\1", m.group(1))
        value = re.sub(r"\\(.)", lambda x: {"t": "\t", "n": "\n", "r": "\r"}.get(x.group(1), x.group(1)),
                       m.group(2).rstrip())
        out[key] = value
    return out


_MILLIS = {
    "failoverTimeMillis": "failover_time",
    "idleTimeBetweenReadsInMillis": "idle_time_between_reads",
    "shardSyncIntervalMillis": "shard_sync_interval",
    "parentShardPollIntervalMillis": "parent_poll_interval",
    "shutdownGraceMillis": "shutdown_timeout",
    "metricsBufferTimeMillis": "metrics_buffer_time",
}
_INTS = {
    "maxRecords": "max_records",
    "maxLeasesForWorker": "max_leases_for_worker",
    "maxLeasesToStealAtOneTime": "max_leases_to_steal_at_one_time",
    "maxPendingProcessRecordsInput": "max_pending_batches",
    "metricsMaxQueueSize": "metrics_max_queue_size",
}
_STRINGS = {"applicationName": "application_name", "tableName": "lease_table", "leaseTableName": "lease_table",
            "workerId": "worker_id"}
#: KCL 3's clientVersionConfig values (its MultiLangDaemon reads them in any case). Phase 1 of the
#: compatible mode writes no state either, as streamworker's 2x does.
_CLIENT_VERSIONS = {"CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X": "2x", "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X_PHASE1": "2x",
                    "CLIENT_VERSION_CONFIG_3X": "3x"}
#: Keys that are understood and need nothing: streamworker already behaves this way.
_NOTHING_TO_DO = {
    "processingLanguage": "informational",
    "validateSequenceNumberBeforeCheckpointing": "checkpoints are always validated",
    "maxLeaseRenewalThreads": "renewals run on the coordinator thread",
    "maxGetRecordsThreadPool": "one reader thread per shard",
}
#: Keys that are understood but not (yet) supported: each draws a warning naming it.
_UNSUPPORTED = {
    "taskBackoffTimeMillis": "processor retries use processor_retries with their own backoff",
    "AwsCredentialsProviderCloudWatch": "CloudWatch metrics are sent with the worker's credentials",
    "AWSCredentialsProviderCloudWatch": "CloudWatch metrics are sent with the worker's credentials",
    "billingMode": "the lease table is created PAY_PER_REQUEST",
    "leaseTableDeletionProtectionEnabled": "set it on the table directly",
    "leaseTablePitrEnabled": "set it on the table directly",
    "tags": "tag the table directly",
    "userAgent": "boto3's user agent is used",
    "retryGetRecordsInSeconds": "GetRecords is retried with jittered backoff",
    "maxCacheByteSize": "read-ahead is bounded by maxPendingProcessRecordsInput batches",
    "maxRecordsCount": "read-ahead is bounded by maxPendingProcessRecordsInput batches",
    "dataFetchingStrategy": "records are prefetched per shard",
    "idleMillisBetweenCalls": "use idleTimeBetweenReadsInMillis",
    "timeoutInSeconds": "GetRecords timeouts are boto3's",
    "listShardsBackoffTimeInMillis": "ListShards is retried with jittered backoff",
    "maxListShardsRetryAttempts": "ListShards is retried with jittered backoff",
    "kinesisClientConfig": "configure boto3 instead",
    "dynamoDbClientConfig": "configure boto3 instead",
    "cloudWatchClientConfig": "configure boto3 instead",
    "logicalProcessingTimeoutMillis": "not supported",
    "initialLeaseTableReadCapacity": "the lease table is created PAY_PER_REQUEST",
    "initialLeaseTableWriteCapacity": "the lease table is created PAY_PER_REQUEST",
    "skipShardSyncAtWorkerInitializationIfLeasesExist": "shards are always synced at start",
    "shardPrioritization": "not supported",
    "shutdownGraceMillisecond": "use shutdownGraceMillis",
}


def _bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "yes", "1"):
        return True
    if v in ("false", "no", "0"):
        return False
    raise ConfigError(f"KCL property {key}: expected true or false, got {value!r}")


def _number(key: str, value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ConfigError(f"KCL property {key}: expected a number, got {value!r}") from None


def _timestamp(value: str) -> datetime | None:
    v = value.strip()
    if re.fullmatch(r"\d{10,}", v):
        n = int(v)
        return datetime.fromtimestamp(n / 1000 if n > 10**11 else n, timezone.utc)
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None


def resolve_command(executable: str, base: Path) -> tuple[list[str], Path]:
    """``executableName`` as a command: a ``.py`` file runs with this Python, relative paths are
    taken from the properties file's folder (as the MultiLangDaemon does)."""
    parts = shlex.split(executable)
    if not parts:
        raise ConfigError("KCL property executableName is empty")
    first = Path(parts[0])
    if not first.is_absolute() and (base / first).exists():
        parts[0] = str((base / first).resolve())
    if parts[0].endswith(".py"):
        parts = [sys.executable, *parts]
    return parts, base


def load_properties(path: str | Path) -> KclProperties:
    p = Path(path)
    try:
        raw = parse_properties(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"properties file {p} not found") from None
    out = KclProperties(workdir=p.resolve().parent)
    s = out.settings
    for key, value in raw.items():
        if key == "executableName":
            out.command, out.workdir = resolve_command(value, p.resolve().parent)
        elif key == "streamName":
            s["stream"] = value
        elif key == "streamArn":
            s.setdefault("_stream_arn", value)
        elif key in _STRINGS:
            s[_STRINGS[key]] = value
        elif key == "initialPositionInStream":
            pos = value.strip().upper()
            if pos not in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
                raise ConfigError(f"KCL property initialPositionInStream: unknown position {value!r}")
            s["initial_position"] = pos
        elif key in ("initialPositionInStreamExtended", "initialPositionInStreamTimestamp", "timestampAtInitialPositionInStream"):
            ts = _timestamp(value)
            if ts is None:
                out.warnings.append(f"KCL property {key}={value!r} ignored: expected epoch millis or ISO 8601")
            else:
                s["initial_position"] = "AT_TIMESTAMP"
                s["initial_timestamp"] = ts
        elif key == "clientVersionConfig":
            version = _CLIENT_VERSIONS.get(value.strip().upper())
            if version is None:
                raise ConfigError(f"KCL property clientVersionConfig: expected one of {', '.join(_CLIENT_VERSIONS)}, "
                                  f"got {value!r}")
            s["client_version"] = version
        elif key in _MILLIS:
            seconds = _number(key, value) / 1000
            if key == "idleTimeBetweenReadsInMillis" and seconds < 0.2:
                out.warnings.append(f"KCL property {key}={value} raised to 200 ms (Kinesis allows 5 reads/s/shard)")
                seconds = 0.2
            s[_MILLIS[key]] = seconds
        elif key in _INTS:
            s[_INTS[key]] = int(_number(key, value))
        elif key == "metricsLevel":
            if value.strip().upper() not in ("NONE", "SUMMARY", "DETAILED"):
                raise ConfigError(f"KCL property metricsLevel: expected NONE, SUMMARY or DETAILED, got {value!r}")
            s["metrics_level"] = value.strip().upper()
        elif key == "metricsEnabledDimensions":
            s["metrics_enabled_dimensions"] = [d.strip() for d in re.split(r"[,|]", value) if d.strip()]
        elif key == "callProcessRecordsEvenForEmptyRecordList":
            s["call_process_records_even_for_empty_list"] = _bool(key, value)
        elif key == "cleanupLeasesUponShardCompletion":
            s["cleanup_finished_leases"] = _bool(key, value)
        elif key == "regionName":
            out.region = value.strip()
        elif key == "kinesisEndpoint":
            out.kinesis_endpoint = _endpoint(value)
        elif key in ("dynamoDBEndpoint", "dynamoDbEndpoint"):
            out.dynamodb_endpoint = _endpoint(value)
        elif key in ("AwsCredentialsProvider", "AWSCredentialsProvider", "AwsCredentialsProviderDynamoDB",
                     "AWSCredentialsProviderDynamoDB"):
            _credentials(out, key, value)
        elif key in ("RetrievalMode", "retrievalMode"):
            if value.strip().upper() not in ("POLLING", "FANOUT"):
                raise ConfigError(f"KCL property {key}: expected POLLING or FANOUT, got {value!r}")
            s["retrieval"] = value.strip().lower()
        elif key in _NOTHING_TO_DO:
            continue
        elif key in _UNSUPPORTED:
            out.warnings.append(f"KCL property {key} ignored: {_UNSUPPORTED[key]}")
        else:
            out.warnings.append(f"unknown KCL property {key} ignored")
    arn = s.pop("_stream_arn", None)
    if arn and "stream" not in s:
        s["stream"] = arn  # KCL prefers the ARN; a name given beside it is what we resolve in the region
    return out


def _endpoint(value: str) -> str:
    v = value.strip()
    return v if "://" in v else f"https://{v}"


def _credentials(out: KclProperties, key: str, value: str) -> None:
    spec = parse_provider(value)
    if spec is None:
        out.warnings.append(f"KCL property {key}={value.strip()}: not a provider streamworker knows; boto3's "
                            "default credential chain is used")
        return
    out.credentials["dynamodb" if key.lower().endswith("dynamodb") else "default"] = spec
