from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from streamworker.errors import ConfigError
from streamworker.kcl.properties import load_properties, parse_properties


def test_java_properties_syntax() -> None:
    text = "# comment\n! also\nkey1 = value one\nkey2:value2\nkey3 value3\nlong = a\\\n    b\\\n  c\nesc = tab\\there\n"
    assert parse_properties(text) == {"key1": "value one", "key2": "value2", "key3": "value3", "long": "abc",
                                      "esc": "tab\there"}


def write(tmp_path: Path, body: Any) -> Any:
    p = tmp_path / "app.properties"
    p.write_text(body)
    (tmp_path / "app.py").write_text("")
    return p


def test_every_supported_key_maps_to_a_setting(tmp_path: Path) -> None:
    props = load_properties(write(tmp_path, """
executableName = app.py
streamName = orders
streamArn = arn:aws:kinesis:us-east-1:123456789012:stream/orders
applicationName = OrdersApp
tableName = orders-leases
initialPositionInStream = AT_TIMESTAMP
initialPositionInStreamExtended = 1700000000000
regionName = eu-west-1
kinesisEndpoint = kinesis.eu-west-1.amazonaws.com
dynamoDBEndpoint = http://localhost:8000
workerId = w-1
failoverTimeMillis = 20000
maxRecords = 500
idleTimeBetweenReadsInMillis = 750
maxLeasesForWorker = 10
maxLeasesToStealAtOneTime = 2
shardSyncIntervalMillis = 30000
callProcessRecordsEvenForEmptyRecordList = true
parentShardPollIntervalMillis = 5000
shutdownGraceMillis = 15000
maxPendingProcessRecordsInput = 3
processingLanguage = python/3.11
AwsCredentialsProvider = DefaultCredentialsProvider
AwsCredentialsProviderDynamoDB = ProfileCredentialsProvider|prod
RetrievalMode = POLLING
validateSequenceNumberBeforeCheckpointing = true
"""))
    assert props.settings == {
        "stream": "orders", "application_name": "OrdersApp", "lease_table": "orders-leases",
        "initial_position": "AT_TIMESTAMP", "initial_timestamp": datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc),
        "worker_id": "w-1", "failover_time": 20.0, "max_records": 500, "idle_time_between_reads": 0.75,
        "max_leases_for_worker": 10, "max_leases_to_steal_at_one_time": 2, "retrieval": "polling", "shard_sync_interval": 30.0,
        "call_process_records_even_for_empty_list": True, "parent_poll_interval": 5.0, "shutdown_timeout": 15.0,
        "max_pending_batches": 3}
    assert props.region == "eu-west-1" and props.profile is None  # the Kinesis (default) provider: the chain
    assert props.credentials["dynamodb"].profile == "prod"  # its own, not collapsed into one profile
    assert props.kinesis_endpoint == "https://kinesis.eu-west-1.amazonaws.com"
    assert props.dynamodb_endpoint == "http://localhost:8000"
    assert props.command is not None
    assert props.command[-1] == str((tmp_path / "app.py").resolve()) and props.command[0] == sys.executable
    assert props.warnings == []


def test_unsupported_and_unknown_keys_each_draw_one_warning_naming_them(tmp_path: Path) -> None:
    props = load_properties(write(tmp_path, """
streamName = s
applicationName = app
cleanupLeasesUponShardCompletion = false
billingMode = PROVISIONED
userAgent = my-app
metricsLevel = SUMMARY
RetrievalMode = FANOUT
idleTimeBetweenReadsInMillis = 50
someFutureKey = 1
AwsCredentialsProvider = com.example.CustomProvider
"""))
    joined = "\n".join(props.warnings)
    for key in ("billingMode", "userAgent",
                "idleTimeBetweenReadsInMillis=50", "unknown KCL property someFutureKey",
                "AwsCredentialsProvider=com.example.CustomProvider"):
        assert key in joined
    assert len(props.warnings) == 5
    assert props.settings["idle_time_between_reads"] == 0.2
    assert props.settings["retrieval"] == "fanout"  # the properties ask for enhanced fan-out
    assert props.settings["cleanup_finished_leases"] is False  # supported: no warning
    assert props.settings["metrics_level"] == "SUMMARY"  # supported since KCL's metrics go to CloudWatch


def test_stream_arn_alone_is_used_and_bad_values_are_errors(tmp_path: Path) -> None:
    props = load_properties(write(tmp_path, "streamArn = arn:aws:kinesis:us-east-1:1:stream/s\napplicationName = a\n"))
    assert props.settings["stream"] == "arn:aws:kinesis:us-east-1:1:stream/s"
    with pytest.raises(ConfigError, match="failoverTimeMillis"):
        load_properties(write(tmp_path, "failoverTimeMillis = soon\n"))
    with pytest.raises(ConfigError, match="initialPositionInStream"):
        load_properties(write(tmp_path, "initialPositionInStream = EARLIEST\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_properties(tmp_path / "missing.properties")


@pytest.mark.parametrize(("value", "version"), [("CLIENT_VERSION_CONFIG_3X", "3x"),
                                                ("client_version_config_compatible_with_2x", "2x"),
                                                ("CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X_PHASE1", "2x")])
def test_kcl_3s_client_version_config_is_client_version(tmp_path: Path, value: str, version: str) -> None:
    props = load_properties(write(tmp_path, f"clientVersionConfig = {value}\n"))  # the MultiLangDaemon ignores case
    assert props.settings["client_version"] == version and props.warnings == []


def test_an_unknown_client_version_config_is_an_error_naming_the_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="clientVersionConfig: expected one of CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X"):
        load_properties(write(tmp_path, "clientVersionConfig = 3X\n"))
