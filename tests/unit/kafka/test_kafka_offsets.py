"""Offsets as Kafka's own clients and tools read them: a committed 0 (a group reset to the
earliest offset), and commits past transaction markers so the lag reaches 0."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("confluent_kafka")

from confluent_kafka import Message, TopicPartition  # noqa: E402

from streamworker.kafka.client import KafkaClient  # noqa: E402
from streamworker.leases.kafka_group import KafkaGroupCoordinator  # noqa: E402
from streamworker.leases.lease import Lease  # noqa: E402
from streamworker.records import TRIM_HORIZON, ExtendedSequenceNumber, InitialPosition  # noqa: E402


def held(coordinator: Any, key: str) -> Lease:
    """The coordinator's current holding of ``key`` (which it must hold)."""
    holding = coordinator.holding(key)
    assert holding is not None, f"{key} is not held"
    return holding  # type: ignore[no-any-return]

def msg(offset: int, partition: int = 0) -> Message[bytes, bytes]:
    return Message(topic="t", partition=partition, offset=offset, key=b"k", value=str(offset).encode(),
                   timestamp=(1, 1_700_000_000_000))


class GroupConsumer:
    """A consumer whose committed offsets, positions and consume() answers a test scripts.
    ``position`` is what librdkafka reports: the application's position, which moves past a
    transaction's commit marker once everything before it was handed out."""

    def __init__(self, conf: Any) -> None:
        self.conf = conf
        self.committed_offsets: dict[int, int] = {}
        self.positions: dict[int, int] = {}
        self.script: list[list[Any]] = []
        self.commits: list[tuple[int, int]] = []
        self.assigned: list[tuple[int, int]] = []

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets.get(tp.partition, -1001))
                for tp in partitions]

    def assign(self, tps: list[Any]) -> None:
        self.assigned = [(tp.partition, tp.offset) for tp in tps]

    def consume(self, n: int, timeout: float) -> list[Any]:
        return self.script.pop(0) if self.script else []

    def position(self, tps: list[Any]) -> list[Any]:
        return [TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, -1001)) for tp in tps]

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> None:
        self.commits.extend((tp.partition, tp.offset) for tp in offsets)
        self.conf["on_commit"](None, offsets)

    def get_watermark_offsets(self, tp: Any, cached: bool = True) -> tuple[int, int]:
        return 0, self.positions.get(tp.partition, 0)


class Listener:
    def __init__(self) -> None:
        self.acquired: list[Lease] = []

    def lease_acquired(self, lease: Lease) -> None:
        self.acquired.append(lease)


def group(committed: dict[int, int]) -> tuple[KafkaGroupCoordinator, GroupConsumer, Listener]:
    client = KafkaClient({"group.id": "g"}, consumer_factory=GroupConsumer)
    consumer: Any = client.consumer
    consumer.committed_offsets = committed
    source: Any = type("Source", (), {"client": client})()
    listener = Listener()
    to: Any = listener  # only lease_acquired is called
    g = KafkaGroupCoordinator(source, "w", to, initial_position=InitialPosition.LATEST)
    client.on_position = g._position_moved
    g._on_assign(consumer, [TopicPartition("t", p) for p in committed])
    return g, consumer, listener


def test_a_group_reset_to_offset_0_replays_the_partition_from_its_first_record() -> None:
    """kafka-consumer-groups --reset-offsets --to-earliest commits 0: that is 'nothing processed'
    (TRIM_HORIZON), not a checkpoint at offset -1 that no reader can open."""
    g, consumer, listener = group({0: 0, 1: 255})
    checkpoints = {le.lease_key: le.checkpoint for le in listener.acquired}
    assert checkpoints == {"t:0": ExtendedSequenceNumber(TRIM_HORIZON), "t:1": ExtendedSequenceNumber("254")}
    assert consumer.assigned == [(0, 0), (1, 255)]  # read from offset 0 and 255: nothing skipped


def test_a_checkpoint_at_the_last_record_before_a_commit_marker_commits_past_the_marker() -> None:
    """Records 40-43 of a transaction, its commit marker at 44: the consumer's position is 45
    once 43 is handed out, and Kafka's own clients commit 45 (committing 44 leaves a lag of 1)."""
    g, consumer, _ = group({0: 40})
    consumer.script = [[msg(o) for o in range(40, 44)]]
    consumer.positions[0] = 45
    g.client._poll_once()
    g.checkpoint(held(g, "t:0"), ExtendedSequenceNumber("43"))
    assert consumer.commits[-1] == (0, 45)


def test_a_checkpoint_before_the_last_fetched_record_never_commits_past_an_unprocessed_record() -> None:
    g, consumer, _ = group({0: 40})
    consumer.script = [[msg(o) for o in range(40, 44)], [msg(46)]]
    consumer.positions[0] = 45
    g.client._poll_once()
    consumer.positions[0] = 47
    g.client._poll_once()  # record 46 fetched after the marker: not processed yet
    g.checkpoint(held(g, "t:0"), ExtendedSequenceNumber("43"))
    assert consumer.commits[-1] == (0, 44)
    g.checkpoint(held(g, "t:0"), ExtendedSequenceNumber("46"))
    assert consumer.commits[-1] == (0, 47)


def test_a_marker_that_arrives_after_the_last_checkpoint_moves_the_commit_on_its_own() -> None:
    """The transaction's marker is written after its records: the processor checkpointed 43
    (commit 44) before the consumer saw it. Once it does, the commit moves to 45 by itself."""
    g, consumer, _ = group({0: 40})
    consumer.script = [[msg(o) for o in range(40, 44)]]
    consumer.positions[0] = 44
    g.client._poll_once()
    g.checkpoint(held(g, "t:0"), ExtendedSequenceNumber("43"))
    assert consumer.commits[-1] == (0, 44)
    consumer.positions[0] = 45
    g.client._poll_once()
    assert consumer.commits[-1] == (0, 45)
    g.checkpoint(held(g, "t:0"), ExtendedSequenceNumber("43"))  # the same checkpoint again
    assert consumer.commits[-1] == (0, 45)  # not moved back


def test_a_marker_is_not_committed_past_while_records_before_it_are_unprocessed() -> None:
    g, consumer, _ = group({0: 40})
    consumer.script = [[msg(o) for o in range(40, 44)]]
    consumer.positions[0] = 44
    g.client._poll_once()
    g.checkpoint(held(g, "t:0"), ExtendedSequenceNumber("41"))
    consumer.positions[0] = 45
    g.client._poll_once()
    assert consumer.commits == [(0, 42)]


def test_lag_reaches_0_after_a_commit_marker() -> None:
    from streamworker.kafka.lag import kafka_lag

    g, consumer, _ = group({0: 40})
    consumer.script = [[msg(o) for o in range(40, 44)]]
    consumer.positions[0] = 45
    g.client._poll_once()
    g.client._watermarks_at = -10.0
    g.client._refresh_watermarks()  # high watermark 45: the marker's offset + 1
    shard: Any = type("Shard", (), {"shard_id": "t:0", "lease": Lease("t:0", checkpoint=ExtendedSequenceNumber("39")),
                                    "progress": type("P", (), {"last_sequence": "43"})()})()
    assert kafka_lag(g.client, shard) == 0


def stats(rx: int, waiting: int = 0, state: str = "UP", group: str = "up", group_age_ms: int = 0,
          broker: str = "127.0.0.1:9092/1", coordinator_rx: int = 0, coordinator_waiting: int = 0,
          join_state: str = "steady") -> str:
    import json

    return json.dumps({"brokers": {broker: {"nodeid": 1, "state": state, "rx": rx,
                                            "waitresp_cnt": waiting, "outbuf_cnt": 0},
                                   "GroupCoordinator": {"nodeid": -1, "state": state, "rx": coordinator_rx,
                                                        "waitresp_cnt": coordinator_waiting, "outbuf_cnt": 0}},
                       "cgrp": {"state": group, "stateage": group_age_ms, "join_state": join_state}})


def watched(clock: Any) -> KafkaClient:
    """A client of group ``g`` on ``b:9092`` whose health turns false after 10 s without replies."""
    return KafkaClient({"group.id": "g", "bootstrap.servers": "b:9092"}, consumer_factory=GroupConsumer,
                       clock=clock, unreachable_after=10.0)


def test_health_turns_false_when_requests_go_unanswered_for_the_failover_time_and_back_when_answered() -> None:
    from streamworker.clock import FakeClock

    clock = FakeClock()
    client = watched(clock)
    client.reach.on_stats(stats(rx=5))
    for _ in range(9):  # a blackhole: requests wait, nothing answers
        clock.advance(1.0)
        client.reach.on_stats(stats(rx=5, waiting=3))
    assert client.health() == (True, "ok")
    clock.advance(1.0)
    client.reach.on_stats(stats(rx=5, waiting=3))
    ok, why = client.health()
    assert not ok and why == "no reply from Kafka (b:9092) for 10 s"
    clock.advance(1.0)
    client.reach.on_stats(stats(rx=6, waiting=1))  # answered again
    assert client.health() == (True, "ok")


def test_an_idle_client_is_not_unreachable_and_a_held_up_poll_thread_counts_no_silence() -> None:
    from streamworker.clock import FakeClock

    clock = FakeClock()
    client = KafkaClient({"group.id": "g"}, consumer_factory=GroupConsumer, clock=clock, unreachable_after=10.0)
    client.reach.on_stats(stats(rx=5))
    for _ in range(30):  # nothing to fetch, nothing asked: no reply is due
        clock.advance(1.0)
        client.reach.on_stats(stats(rx=5, waiting=0))
    assert client.health() == (True, "ok")
    client.reach.on_stats(stats(rx=5, waiting=2))
    clock.advance(60.0)  # no statistics at all (the poll thread waits in a rebalance callback)
    assert client.health() == (True, "ok")


def test_a_group_coordinator_lost_for_the_failover_time_is_unhealthy() -> None:
    from streamworker.clock import FakeClock

    clock = FakeClock()
    client = KafkaClient({"group.id": "orders"}, consumer_factory=GroupConsumer, clock=clock, unreachable_after=10.0)
    client.reach.on_stats(stats(rx=5, group="wait-coord", group_age_ms=4000))
    assert client.health() == (True, "ok")
    client.reach.on_stats(stats(rx=9, group="wait-coord", group_age_ms=12000))
    ok, why = client.health()
    assert not ok and why == "the group coordinator of 'orders' unreachable for 12 s (librdkafka group state 'wait-coord')"


def test_a_rebalance_the_coordinator_holds_open_is_not_silence_but_a_silent_coordinator_is() -> None:
    from streamworker.clock import FakeClock

    clock = FakeClock()
    client = watched(clock)
    client.reach.on_stats(stats(rx=5, coordinator_rx=3))
    for _ in range(30):  # a JoinGroup parked by the coordinator until the other members rejoin
        clock.advance(1.0)
        client.reach.on_stats(stats(rx=5, coordinator_rx=3, coordinator_waiting=1, join_state="wait-join"))
    assert client.health() == (True, "ok")
    for _ in range(10):  # a heartbeat in a steady group that is never answered
        clock.advance(1.0)
        client.reach.on_stats(stats(rx=5, coordinator_rx=3, coordinator_waiting=1))
    ok, why = client.health()
    assert not ok and why == "no reply from Kafka (b:9092) for 10 s"


def test_replies_on_a_new_broker_handle_are_heard_though_the_sum_of_replies_fell() -> None:
    from streamworker.clock import FakeClock

    clock = FakeClock()
    client = watched(clock)
    client.reach.on_stats(stats(rx=500, waiting=1, broker="b:9092/bootstrap"))
    for rx in range(1, 15):  # librdkafka replaced the handle: its counters start again, and grow
        clock.advance(1.0)
        client.reach.on_stats(stats(rx=rx, waiting=1))
    assert client.health() == (True, "ok")
