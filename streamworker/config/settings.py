"""Worker settings: flags > ``STREAMWORKER_*`` environment > TOML file (``--config``) > defaults.

Endpoints and credentials are not settings of ours: boto3 reads ``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_KINESIS``, ``AWS_ENDPOINT_URL_DYNAMODB`` and profiles itself. The region is
``region`` (``--region``, as the AWS CLI has it), else boto3's (``AWS_DEFAULT_REGION``, the
profile's), else ``AWS_REGION`` (what the other AWS SDKs, ECS and Lambda set, and botocore does
not read).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from streamworker.config.files import read_toml
from streamworker.config.problems import check_environment, describe_validation_error
from streamworker.config.secrets import redact
from streamworker.errors import ConfigError
from streamworker.records import InitialPosition

TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")

def default_worker_id() -> str:
    """host:pid:random — unique per process, readable in the lease table."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerConfig(BaseSettings):
    """Every setting of a worker. Durations are in seconds."""

    model_config = SettingsConfigDict(env_prefix="STREAMWORKER_", extra="forbid", validate_default=True)

    processor: str | None = Field(None, description="MODULE:CLASS or path/to/file.py:CLASS")
    source: Literal["kinesis", "kafka", "dynamodb-streams"] = Field("kinesis", description="where the records come from")
    table: str | None = Field(
        None, min_length=1, description="dynamodb-streams: the DynamoDB table whose stream is read (or give the stream ARN "
                                        "as stream)")
    coordinator: Literal["dynamodb", "kafka-group"] | None = Field(
        None, description="default: dynamodb for Kinesis, kafka-group for Kafka")
    stream: str | None = Field(None, min_length=1, description="Kinesis stream name or ARN")
    streams: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="further Kinesis streams for one worker and lease table (KCL multi-stream)")
    retrieval: Literal["polling", "fanout"] = Field(
        "polling", description="Kinesis reads: GetRecords polling, or enhanced fan-out (SubscribeToShard)")
    stream_pattern: str | None = Field(None, description="Kinesis stream-name regex, re-listed at every shard sync")
    delete_former_stream_leases_after: float | None = Field(
        None, ge=0, description="multi-stream: delete the leases of a stream gone this many seconds (unset: keep)")
    processors: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="per stream or topic: STREAM=MODULE:CLASS (others use processor)")
    topics: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Kafka topics")
    topic_pattern: str | None = Field(None, description="Kafka topic regex")
    bootstrap_servers: str | None = Field(None, description="Kafka bootstrap servers HOST:PORT[,HOST:PORT]")
    group_id: str | None = Field(None, description="Kafka consumer group (default: the application name)")
    kafka_properties: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="librdkafka properties passed through (-X key=value)")
    static_membership: bool = Field(False, description="group.instance.id = worker id")
    kafka_auth: Literal["aws-msk-iam"] | None = Field(
        None, description="aws-msk-iam: Amazon MSK with IAM (SASL_SSL, OAUTHBEARER, tokens signed and refreshed)")
    kafka_buffer_bytes: int = Field(4 << 20, ge=1024, description="per-partition read-ahead before pausing it")
    application_name: str = Field(
        ..., description="names the application: its lease table (DynamoDB) or consumer group (Kafka)")
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$", description=(
        "the AWS region (default: AWS_DEFAULT_REGION, the profile's, then AWS_REGION)"))
    profile: str | None = Field(None, description=(
        "a named profile of ~/.aws/config and ~/.aws/credentials, as the AWS CLI's --profile (default: AWS_PROFILE, "
        "else boto3's default chain)"))
    endpoint_url: str | None = Field(None, pattern=r"^https?://", description=(
        "send every AWS call here (Kinesis, DynamoDB, DynamoDB Streams, CloudWatch), as the AWS CLI's "
        "--endpoint-url; one service: AWS_ENDPOINT_URL_KINESIS / _DYNAMODB"))
    role_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$",
                                 description="assume this IAM role for every AWS call (refreshed for the life of the process)")
    role_session_name: str = Field("streamworker", description="the assumed role's session name (CloudTrail shows it)")
    external_id: str | None = Field(None, description="the external id the role's trust policy requires")
    lease_table: str | None = Field(None, description="the DynamoDB lease table (default: the application name)")
    initial_position: InitialPosition = Field(
        InitialPosition.LATEST, description="where a shard with no checkpoint starts")
    initial_timestamp: datetime | None = Field(None, description="ISO 8601 time, with initial_position AT_TIMESTAMP")
    worker_id: str = Field(default_factory=default_worker_id, min_length=1,
                           description="this worker in the lease table (default: host:pid:random)")
    failover_time: float = Field(10.0, gt=0, description="a lease whose holder stops renewing it expires after this long")
    client_version: Literal["2x", "3x"] = Field(
        "2x", description="a lease table with no KCL 3 state yet: 2x leaves it in today's format (KCL 2.x, KCL 3's "
                          "compatible mode); 3x puts it in KCL 3's default mode (owner index, Migration3.0, a leader "
                          "assigning leases), as KCL's clientVersionConfig=CLIENT_VERSION_CONFIG_3X does")
    max_records: int = Field(10000, ge=1, le=10000, description="Kinesis GetRecords limit")
    idle_time_between_reads: float = Field(1.5, ge=0.2, description="wait after an empty Kinesis read")
    take_interval: float = Field(1.0, gt=0, description="scan period for leases to take while leases move")
    shard_sync_interval: float = Field(60.0, gt=0, description="how often the shard listing is read again")
    max_leases_for_worker: int | None = Field(None, ge=1, description="hold at most this many leases")
    max_leases_to_steal_at_one_time: int | None = Field(None, ge=0, description="steals per take cycle (none: as many as the share needs)")
    steady_take_interval: float | None = Field(
        None, gt=0, description="scan period while no lease is moving (default: failover_time + 25 ms, which "
                                "reads the table at KCL's cost)")
    max_pending_batches: int = Field(4, ge=1, le=100, description="Kinesis batches read ahead per shard")
    parallelism: int = Field(
        1, ge=1, le=256, description="per shard, records of different keys processed at once (processors with "
                                     "process_record; records of one key stay in order)")
    processor_retries: int = Field(3, ge=0, description="redeliveries of a failing batch before on_error applies")
    checkpoint_interval: float | None = Field(
        None, gt=0, description="checkpoint processed batches every this many seconds (for processors that never call checkpoint())")
    checkpoint_every: int | None = Field(
        None, ge=1, description="checkpoint processed batches every this many records")
    on_error: Literal["halt", "dead-letter", "bisect"] = Field(
        "halt", description="after the retries: halt the shard, dead-letter the batch and go on, or bisect the "
                            "batch and dead-letter only the records that fail alone")
    dead_letter: str | None = Field(None, description="file:PATH.jsonl, kinesis:STREAM, kafka:TOPIC or sqs:QUEUE")
    max_record_age: float | None = Field(
        None, gt=0, description="dead-letter records older than this many seconds (arrival time) instead of processing them")
    dead_letter_max_consecutive: int | None = Field(
        None, ge=1, description="halt the shard rather than dead-letter more than this many records in a row")
    dead_letter_max_ratio: float | None = Field(
        None, gt=0, le=1, description="halt the shard rather than dead-letter more than this fraction of its last 1000 records")
    processor_timeout: float | None = Field(None, gt=0, description="report a processor call running longer")
    release_halted_after: float | None = Field(
        None, gt=0, description="release a halted shard's lease after this many seconds (unset: keep it)")
    shutdown_timeout: float = Field(20.0, gt=0, description="a graceful stop waits this long for processors to end")
    parent_poll_interval: float = Field(1.0, gt=0, description="a child shard checks its parents' SHARD_END this often")
    cleanup_finished_leases: bool = Field(
        True, description="delete a SHARD_END lease once its children's leases have checkpointed")
    call_process_records_even_for_empty_list: bool = Field(
        False, description="call process_records with empty batches too (KCL's callProcessRecordsEvenForEmptyRecordList)")
    multilang_protocol: Literal["v1", "v2"] = Field(
        "v2", description="--properties children: v2 (KCL 2.x/3.x, amazon-kclpy >= 2) or v1 (KCL 1.x, amazon-kclpy 1.x)")
    metrics_port: int | None = Field(None, ge=0, le=65535, description=(
        "serve /metrics (Prometheus), /healthz, /readyz and the status page at / on this port"))
    metrics_host: str = Field("0.0.0.0", description=(
        "the address the metrics port listens on (all interfaces, for a scraper on another host; 127.0.0.1: "
        "this host only)"))
    cloudwatch_metrics: bool = Field(False, description=(
        "also send KCL's metrics (RecordsProcessed, MillisBehindLatest, CurrentLeases, ...) to CloudWatch under "
        "KCL's names and dimensions, so dashboards and alarms built on KCL keep working"))
    metrics_namespace: str | None = Field(None, min_length=1, max_length=255, description=(
        "--cloudwatch-metrics: the CloudWatch namespace (default: the application name, as KCL)"))
    metrics_level: Literal["NONE", "SUMMARY", "DETAILED"] = Field("DETAILED", description=(
        "--cloudwatch-metrics: KCL's metricsLevel: SUMMARY leaves out the per-call DETAILED ones"))
    metrics_enabled_dimensions: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["Operation", "ShardId"], description=(
            "--cloudwatch-metrics: KCL's metricsEnabledDimensions: Operation (always), ShardId, StreamId, "
            "WorkerIdentifier, or ALL (comma-separated)"))
    metrics_buffer_time: float = Field(10.0, gt=0, description=(
        "--cloudwatch-metrics: seconds between sends (KCL's metricsBufferTimeMillis / 1000)"))
    metrics_max_queue_size: int = Field(10000, ge=1, description=(
        "--cloudwatch-metrics: distinct metric series held between sends; more are dropped (KCL's)"))
    status_page: bool = Field(True, description=(
        "serve the status page (/ and /status.json: the fleet's leases, owners and checkpoints) on the metrics "
        "port; --no-status-page leaves /metrics, /healthz and /readyz"))
    gc_threshold: int | None = Field(
        50_000, ge=1, description="streamworker run: first threshold of Python's cyclic GC (off: leave the interpreter's)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log lines at this level and above")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON lines otherwise")

    @field_validator("application_name", "lease_table")
    @classmethod
    def _table_name(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        kind = info.data.get("coordinator") or ("kafka-group" if info.data.get("source") == "kafka" else "dynamodb")
        if info.field_name == "application_name" and kind == "kafka-group":
            if not v.strip() or len(v) > 255:  # it names the consumer group (unless group_id does)
                raise ValueError("must be 1 to 255 characters, not only spaces (it names the Kafka consumer group)")
            return v
        if not TABLE_NAME.fullmatch(v):
            raise ValueError("must be 3 to 255 letters, digits, '_', '-' or '.' (it names the DynamoDB lease table, "
                             "and DynamoDB allows only those)")
        return v

    @field_validator("gc_threshold", mode="before")
    @classmethod
    def _gc_off(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("", "off", "none") else v

    @field_validator("topics", "streams", "metrics_enabled_dimensions", mode="before")
    @classmethod
    def _split_topics(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    @field_validator("metrics_enabled_dimensions", mode="after")
    @classmethod
    def _kcl_dimensions(cls, v: list[str]) -> list[str]:
        known = ("Operation", "ShardId", "StreamId", "WorkerIdentifier", "ALL")
        unknown = [d for d in v if d not in known]
        if unknown:
            raise ValueError(f"unknown dimension(s) {', '.join(unknown)}: KCL's are {', '.join(known)}")
        return v

    @field_validator("metrics_level", mode="before")
    @classmethod
    def _level_upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("kafka_properties", "processors", mode="before")
    @classmethod
    def _parse_properties(cls, v: Any) -> Any:
        from_string = isinstance(v, str)
        if from_string and v.strip().startswith("{"):  # a JSON object: values may hold commas
            try:
                v = json.loads(v)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a valid JSON object ({exc.msg} at position {exc.pos})") from None
        elif from_string:
            v = [p for p in v.split(",") if p.strip()]
        if isinstance(v, list):
            out: dict[str, str] = {}
            for n, item in enumerate(v, 1):
                key, eq, value = str(item).partition("=")
                if not eq or not key.strip():
                    if from_string:  # never echo it: it may be the tail of a value that held a comma
                        raise ValueError(f"expected comma-separated key=value pairs; item {n} has no '=' (a value "
                                         f"with a comma in it? use -X, a TOML table or a JSON object)")
                    raise ValueError(f"expected key=value, got {redact(str(item))!r}")
                out[key.strip()] = value.strip()
            return out
        if isinstance(v, dict):
            return {str(k): str(val).lower() if isinstance(val, bool) else str(val) for k, val in v.items()}
        return v

    @field_validator("kafka_properties", mode="after")
    @classmethod
    def _read_value_files(cls, v: dict[str, str]) -> dict[str, str]:
        """``KEY=@/path`` reads the value from a file (a secret kept off the command line)."""
        out = dict(v)
        for key, value in v.items():
            if value.startswith("@") and len(value) > 1:
                path = Path(value[1:]).expanduser()
                try:
                    out[key] = path.read_text().rstrip("\r\n")
                except OSError as exc:
                    raise ValueError(f"Kafka property {key}: cannot read {path}: {exc.strerror}") from None
        return out

    @model_validator(mode="after")
    def _check(self) -> WorkerConfig:
        if self.initial_position == InitialPosition.AT_TIMESTAMP and self.initial_timestamp is None:
            raise ValueError("initial_position AT_TIMESTAMP needs initial_timestamp")
        if self.on_error in ("dead-letter", "bisect"):
            if not self.dead_letter:
                raise ValueError(f"on_error {self.on_error} needs dead_letter (file:PATH.jsonl, kinesis:STREAM or "
                                 f"kafka:TOPIC)")
            from streamworker.dead_letter.sinks import parse_spec

            parse_spec(self.dead_letter)
        if self.max_record_age is not None and not self.dead_letter:
            raise ValueError("max_record_age needs dead_letter (file:PATH.jsonl, kinesis:STREAM or kafka:TOPIC): "
                             "records past the age go there")
        if self.max_record_age is not None:
            from streamworker.dead_letter.sinks import parse_spec

            parse_spec(self.dead_letter or "")
        if self.release_halted_after is not None and self.coordinator_kind != "dynamodb":
            raise ValueError("release_halted_after needs the dynamodb coordinator (the Kafka group decides "
                             "assignments itself)")
        if self.source == "dynamodb-streams":
            if not self.table and not (self.stream and "/stream/" in self.stream):
                raise ValueError("the dynamodb-streams source needs --table (or a stream ARN as --stream)")
            if self.streams or self.stream_pattern or self.retrieval != "polling":
                raise ValueError("the dynamodb-streams source reads one stream by polling (no --stream lists, "
                                 "patterns or fan-out)")
            if self.coordinator == "kafka-group":
                raise ValueError("coordinator kafka-group needs source kafka")
            if self.initial_position == InitialPosition.AT_TIMESTAMP:
                raise ValueError("DynamoDB Streams starts a shard at TRIM_HORIZON or LATEST only")
        elif self.source == "kinesis":
            if not self.stream and not self.streams and not self.stream_pattern:
                raise ValueError("stream is required for the Kinesis source (--stream or --stream-pattern)")
            if self.stream_pattern:
                try:
                    re.compile(self.stream_pattern)
                except re.error as exc:
                    raise ValueError(f"stream_pattern {self.stream_pattern!r}: {exc}") from None
            if self.coordinator == "kafka-group":
                raise ValueError("coordinator kafka-group needs source kafka")
        else:
            if not self.topics and not self.topic_pattern:
                raise ValueError("the Kafka source needs --topic or --topic-pattern")
            if not self.bootstrap_servers and "bootstrap.servers" not in self.kafka_properties:
                raise ValueError("the Kafka source needs --bootstrap-servers")
        return self

    @property
    def coordinator_kind(self) -> str:
        return self.coordinator or ("kafka-group" if self.source == "kafka" else "dynamodb")

    @property
    def stream_names(self) -> list[str]:
        """The Kinesis streams named in the configuration (the pattern adds more at run time)."""
        out = [self.stream] if self.stream else []
        return out + [s for s in self.streams if s not in out]

    @property
    def multi_stream(self) -> bool:
        """One worker over several streams, with KCL multi-stream lease keys."""
        return self.source == "kinesis" and (len(self.stream_names) > 1 or self.stream_pattern is not None)

    @property
    def stream_label(self) -> str:
        """What logs call the stream: the Kinesis stream(s), the table, or the Kafka topics."""
        if self.source == "dynamodb-streams":
            return self.table or self.stream or ""
        if self.source == "kinesis":
            label = ",".join(self.stream_names)
            return label + (f"/{self.stream_pattern}/" if self.stream_pattern else "")
        return ",".join(self.topics) if self.topics else f"/{self.topic_pattern}/"

    @property
    def table_name(self) -> str:
        return self.lease_table or self.application_name

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None, config_file: str | Path | None = None,
             file_values: dict[str, Any] | None = None) -> WorkerConfig:
        """Build the config from flags (``overrides``), environment and an optional TOML file
        (or ``file_values``, e.g. from a KCL properties file). Raises ConfigError with one line
        naming the bad setting."""
        check_environment(os.environ, cls.model_fields)
        merged = {**(file_values or {}), **(read_toml(config_file) if config_file else {})}
        flags = {k: v for k, v in (overrides or {}).items() if v is not None}

        class _Layered(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls_, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return (init_settings, env_settings, _DictSource(settings_cls, merged))

        try:
            layered = _Layered(**flags)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, cls.model_fields)) from None
        return cls.model_validate(layered.model_dump())


class _DictSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)
