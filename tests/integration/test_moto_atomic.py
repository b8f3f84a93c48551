"""The local moto answers conditional writes as DynamoDB does: one item's conditional writes are
atomic. moto's threaded server checked a condition and wrote in two steps, so two workers taking
the same free lease at once both succeeded (both processed the shard until one's checkpoint was
refused: records twice where the tests expect none)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import boto3
import pytest

from streamworker.local import MotoServer

pytestmark = pytest.mark.integration


def take(client: Any, table: str, key: str, me: str, start: threading.Barrier, won: list[str]) -> None:
    """A lease take as the coordinators write it: fenced on the counter read."""
    start.wait(10)
    try:
        client.update_item(TableName=table, Key={"leaseKey": {"S": key}},
                           UpdateExpression="SET leaseCounter = :c1, leaseOwner = :me",
                           ConditionExpression="leaseCounter = :c",
                           ExpressionAttributeValues={":c": {"N": "0"}, ":c1": {"N": "1"}, ":me": {"S": me}})
        won.append(me)
    except client.exceptions.ConditionalCheckFailedException:
        pass


def test_of_many_racing_takes_of_one_lease_exactly_one_wins(moto_server: MotoServer, names: dict[str, str],
                                                            aws_env: dict[str, str], request: Any) -> None:
    ddb = boto3.client("dynamodb")
    table = names["app"]
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # thread switches as often as a loaded machine makes them (two won, before)
    request.addfinalizer(lambda: sys.setswitchinterval(interval))
    workers = 8
    clients = [boto3.client("dynamodb") for _ in range(workers)]
    for round_ in range(40):
        key = f"shardId-{round_:012d}"
        ddb.put_item(TableName=table, Item={"leaseKey": {"S": key}, "leaseCounter": {"N": "0"}})
        start, won = threading.Barrier(workers), []  # type: ignore[var-annotated]
        threads = [threading.Thread(target=take, args=(clients[i], table, key, f"w{i}", start, won))
                   for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        owner = ddb.get_item(TableName=table, Key={"leaseKey": {"S": key}}, ConsistentRead=True)["Item"]["leaseOwner"]
        assert len(won) == 1 and owner == {"S": won[0]}, (round_, won, owner)
