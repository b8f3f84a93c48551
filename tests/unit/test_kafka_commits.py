"""Checkpoint commits from the poll loop: asynchronous requests, answered through on_commit."""

from __future__ import annotations

from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaError, KafkaException, TopicPartition  # noqa: E402

from streamworker.kafka.client import KafkaClient  # noqa: E402


class CommitRecorder:
    def __init__(self, conf: Any) -> None:
        self.on_commit = conf["on_commit"]
        self.requests: list[Any] = []

    def commit(self, offsets: Any, asynchronous: Any) -> None:
        self.requests.append(([(t.topic, t.partition, t.offset) for t in offsets], asynchronous))


def ask(client: Any, *offsets: Any) -> Any:
    """What a shard thread's checkpoint queues for the poll thread."""
    return client.commits.ask([TopicPartition(t, p, o) for t, p, o in offsets])


class Answered:
    """A TopicPartition as on_commit gets it (its error is read-only on the real class)."""

    def __init__(self, topic: Any, partition: Any, offset: Any, error: Any=None) -> None:
        self.topic, self.partition, self.offset, self.error = topic, partition, offset, error


def answer(client: Any, *offsets: Any, err: Any=None, bad: Any=()) -> None:
    client.commits.on_commit(err, [Answered(t, p, o, KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE)
                                     if (t, p) in bad else None) for t, p, o in offsets])


def make() -> tuple[KafkaClient, Any]:
    client = KafkaClient({"group.id": "g"}, consumer_factory=CommitRecorder)
    return client, client.consumer


def test_one_request_per_pass_sent_without_waiting_and_answered_by_the_callback() -> None:
    client, consumer = make()
    a, b = ask(client, ("t", 0, 10)), ask(client, ("t", 1, 7))
    client.drain_control()
    assert consumer.requests == [([("t", 0, 10), ("t", 1, 7)], True)]  # one asynchronous request
    assert not a.done() and not b.done()  # a checkpoint returns only once the broker answered
    answer(client, ("t", 0, 10), ("t", 1, 7))
    assert a.result(0) is None and b.result(0) is None


def test_a_partition_the_broker_refused_fails_only_its_caller() -> None:
    client, _ = make()
    a, b = ask(client, ("t", 0, 10)), ask(client, ("t", 1, 7))
    client.drain_control()
    answer(client, ("t", 0, 10), ("t", 1, 7), bad={("t", 1)})
    assert a.result(0) is None
    with pytest.raises(KafkaException):
        b.result(0)


def test_answers_to_other_commits_are_ignored_and_unanswered_requests_fail() -> None:
    client, _ = make()
    first = ask(client, ("t", 0, 5))
    client.drain_control()
    second = ask(client, ("t", 0, 9))
    client.drain_control()
    answer(client, ("x", 3, 1))  # a mirror or synchronous commit's answer: not ours
    assert not first.done() and not second.done()
    answer(client, ("t", 0, 9))  # the later request answered: the earlier one never will be
    assert second.result(0) is None
    with pytest.raises(RuntimeError, match="no answer"):
        first.result(0)


def test_a_failed_request_fails_every_caller_and_inside_a_rebalance_commits_are_synchronous() -> None:
    client, consumer = make()
    a = ask(client, ("t", 0, 10))
    client.drain_control()
    answer(client, ("t", 0, 10), err=KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    with pytest.raises(KafkaException):
        a.result(0)
    b = ask(client, ("t", 0, 11))
    client.drain_control(in_callback=True)  # no poll can serve a reply inside on_revoke
    assert consumer.requests[-1] == ([("t", 0, 11)], False) and b.result(0) is None
