"""Credentials as KCL users write them: the provider forms, per-service providers, and an assumed
role whose credentials refresh (moto's STS, in-process)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from moto import mock_aws

from streamworker.aws.credentials import CredentialSpec, parse_provider, session_for
from streamworker.errors import ConfigError
from streamworker.kcl.properties import load_properties

ROLE = "arn:aws:iam::123456789012:role/orders-consumer"


def test_the_provider_forms() -> None:
    assert parse_provider("DefaultCredentialsProvider") == CredentialSpec()
    assert parse_provider("com.amazonaws.auth.DefaultAWSCredentialsProviderChain") == CredentialSpec()
    assert parse_provider("ProfileCredentialsProvider|prod") == CredentialSpec(profile="prod")
    assert parse_provider(f"KclStsAssumeRoleCredentialsProvider|{ROLE}|orders|endpointRegion=eu-west-1|externalId=x7") \
        == CredentialSpec(role_arn=ROLE, session_name="orders", sts_region="eu-west-1", external_id="x7")
    assert parse_provider(f"KclSTSAssumeRoleSessionCredentialsProvider|{ROLE}|sess") == CredentialSpec(
        role_arn=ROLE, session_name="sess")  # the older KCL 1.x / kclpy name (kclpy #173)
    assert parse_provider("com.example.CustomProvider") is None
    with pytest.raises(ConfigError, match=r"expected KclStsAssumeRoleCredentialsProvider\|ROLE_ARN"):
        parse_provider("KclStsAssumeRoleCredentialsProvider|orders")
    with pytest.raises(ConfigError, match="unknown option.*region"):
        parse_provider(f"KclStsAssumeRoleCredentialsProvider|{ROLE}|s|region=x")


def test_per_service_providers_stay_apart(tmp_path: Any) -> None:
    f = tmp_path / "app.properties"
    f.write_text(f"streamName = s\napplicationName = app\n"
                 f"AwsCredentialsProvider = KclStsAssumeRoleCredentialsProvider|{ROLE}|kinesis-side\n"
                 f"AwsCredentialsProviderDynamoDB = ProfileCredentialsProvider|ddb\n"
                 f"AwsCredentialsProviderCloudWatch = ProfileCredentialsProvider|cw\n")
    props = load_properties(str(f))
    assert props.credentials["default"].role_arn == ROLE and props.credentials["default"].session_name == "kinesis-side"
    assert props.credentials["dynamodb"] == CredentialSpec(profile="ddb")
    assert any("AwsCredentialsProviderCloudWatch" in w for w in props.warnings)  # metrics are not published


def test_an_assumed_role_signs_every_call_and_refreshes(aws_env: None) -> None:
    with mock_aws():
        s = session_for(CredentialSpec(role_arn=ROLE, session_name="orders", external_id="x7", duration_seconds=900))
        creds = s.get_credentials()
        assert creds is not None and creds.method == "assume-role"
        assert s.client("sts").get_caller_identity()["Arn"] == \
            "arn:aws:sts::123456789012:assumed-role/orders-consumer/orders"
        first = creds.get_frozen_credentials().access_key
        assert first is not None and first.startswith("ASIA")  # STS credentials, not the environment's "testing"
        assert creds.get_frozen_credentials().access_key == first  # not fetched on every use
        # 900 s credentials are refreshed once fewer than 450 s are left (botocore's own window,
        # 15 minutes, would refresh them on every call)
        later = datetime.now(timezone.utc) + timedelta(seconds=500)
        creds._time_fetcher = lambda: later  # type: ignore[attr-defined]
        assert creds.get_frozen_credentials().access_key != first
        assert s.client("kinesis").list_streams()["StreamNames"] == []  # and they sign service calls


def test_the_worker_config_takes_role_flags() -> None:
    from streamworker.config import WorkerConfig

    cfg = WorkerConfig.load({"application_name": "app", "stream": "s", "role_arn": ROLE, "external_id": "x7"})
    assert cfg.role_arn == ROLE and cfg.role_session_name == "streamworker"
    with pytest.raises(ConfigError, match="role_arn"):
        WorkerConfig.load({"application_name": "app", "stream": "s", "role_arn": "orders-consumer"})
