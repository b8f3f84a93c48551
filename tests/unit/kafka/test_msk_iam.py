"""--kafka-auth aws-msk-iam: the librdkafka settings and the token callback, with AWS's real signer
(offline: it presigns locally). Not tested against Amazon MSK itself."""

from __future__ import annotations

import base64
import sys
import time
from urllib.parse import unquote

import pytest

from streamworker.config import WorkerConfig
from streamworker.errors import ConfigError
from streamworker.kafka.conf import kafka_conf
from streamworker.kafka.msk_iam import oauth_callback


def config(**kw: object) -> WorkerConfig:
    return WorkerConfig.load({"application_name": "app", "source": "kafka", "topics": ["t"],
                              "bootstrap_servers": "b-1.msk:9098", "kafka_auth": "aws-msk-iam", **kw})


def test_the_real_signer_through_the_callback(aws_env: None) -> None:
    cb = oauth_callback("eu-west-1")
    token, expiry = cb("")
    url = unquote(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    assert url.startswith("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster:Connect")
    assert "X-Amz-Credential=testing/" in url and "X-Amz-Expires=900" in url
    assert time.time() + 800 < expiry <= time.time() + 901  # seconds since the epoch, as librdkafka wants
    assert cb("")[0] != "" and cb("")[1] >= expiry  # every call signs afresh


def test_kafka_conf_sets_sasl_ssl_oauthbearer_and_the_callback_but_x_wins(aws_env: None) -> None:
    conf = kafka_conf(config())
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanisms"] == "OAUTHBEARER"
    assert callable(conf["oauth_cb"])
    local = kafka_conf(config(kafka_properties={"security.protocol": "SASL_PLAINTEXT"}))
    assert local["security.protocol"] == "SASL_PLAINTEXT"
    assert "oauth_cb" not in kafka_conf(config(kafka_auth=None))


def test_no_region_and_no_signer_are_one_line(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigError, match="needs the cluster's region: pass --region, or set AWS_REGION"):
        kafka_conf(config())
    monkeypatch.setenv("AWS_REGION", "eu-west-3")  # what ECS, Lambda and the other SDKs set: botocore alone ignores it
    assert kafka_conf(config())["oauth_cb"] is not None
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", None)  # not installed
    with pytest.raises(ConfigError, match=r"pip install 'streamworker\[msk-iam\]'"):
        oauth_callback("eu-west-1")
