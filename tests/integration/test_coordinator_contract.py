"""One contract, three coordinators: the DynamoDB lease table (on the moto server), the Kafka
consumer group (on the test broker) and ``MemoryLeases`` (the unit tests' and the harness's fake,
held to the same contract so that what passes against it holds against the real ones).

The contract (``streamworker.leases.base``): a lease taken is told to the listener and held as
one holding; a checkpoint that returns is what the next owner starts from; another worker asks
for a lease by a handoff, during which the holder may still checkpoint, and after its release
that holding's writes are refused; a lease that comes back is a new holding, the old one stays
fenced; a forgotten lease is not held and writes nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

from streamworker.clock import FakeClock
from streamworker.errors import LeaseLostError
from streamworker.leases.base import Coordinator
from streamworker.leases.lease import Lease
from streamworker.leases.memory import MemoryLeases
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import InitialPosition
from streamworker.sources.base import ShardInfo
from tests.integration.conftest import KafkaTopics

pytestmark = pytest.mark.integration


class Events:
    """A listener that records, and lets the test wait on what it records (the Kafka group calls
    it from its poll thread)."""

    def __init__(self) -> None:
        self.acquired: list[Lease] = []
        self.lost: list[str] = []
        self.handoff: list[str] = []
        self.failed: list[str] = []
        self._changed = threading.Condition()

    def _add(self, to: list[Any], item: Any) -> None:
        with self._changed:
            to.append(item)
            self._changed.notify_all()

    def lease_acquired(self, lease: Lease) -> None:
        self._add(self.acquired, lease)

    def lease_lost(self, lease_key: str) -> None:
        self._add(self.lost, lease_key)

    def handoff_requested(self, lease_key: str) -> None:
        self._add(self.handoff, lease_key)

    def coordinator_failed(self, error: str) -> None:
        self._add(self.failed, error)

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
        with self._changed:
            if not self._changed.wait_for(cond, timeout):
                raise AssertionError(f"timed out waiting for {what}")


class Backend(Protocol):
    """How a test drives one coordinator kind: the worker under test (``coordinator``, its
    ``events``) and another worker of the same application."""

    coordinator: Coordinator
    events: Events
    keys: tuple[str, str]

    def hold_all(self) -> dict[str, Lease]:
        """The worker under test holds both keys; their holdings."""

    def hand_one_off(self) -> str:
        """Another worker asks for one lease; its key, once the worker under test was told."""

    def taken_from(self, key: str) -> ESN:
        """After the release: the other worker holds ``key``; the checkpoint it starts from."""

    def give_back(self, key: str) -> Lease:
        """The other worker goes away; the worker under test holds ``key`` again: the holding."""

    def stored(self, key: str) -> ESN:
        """The checkpoint as the store has it (what a new owner would start from)."""


# -- the backends ---------------------------------------------------------------------------------


class Memory:
    keys = ("shard-1", "shard-2")

    def __init__(self) -> None:
        self.events = Events()
        self.leases = MemoryLeases("A", listener=self.events)
        self.coordinator: Coordinator = self.leases

    def hold_all(self) -> dict[str, Lease]:
        return {k: self.leases.acquire(k) for k in self.keys}

    def hand_one_off(self) -> str:
        self.leases.request_handoff(self.keys[0])
        return self.keys[0]

    def taken_from(self, key: str) -> ESN:
        return self.leases.checkpoint_of(key)

    def give_back(self, key: str) -> Lease:
        return self.leases.acquire(key)

    def stored(self, key: str) -> ESN:
        return self.leases.checkpoint_of(key)


class DynamoDB:
    keys = ("shardId-000000000000", "shardId-000000000001")

    def __init__(self, app: str) -> None:
        import boto3

        from streamworker.leases.dynamodb.coordinator import DynamoDBCoordinator
        from streamworker.leases.dynamodb.table import LeaseTable

        self.clock = FakeClock()
        self.table = LeaseTable(boto3.client("dynamodb"), app, clock=self.clock)
        self.table.ensure_table()
        self.events, self.other_events = Events(), Events()
        self.a = DynamoDBCoordinator(self.table, "A", self.events, failover_time=10, clock=self.clock)
        self.b = DynamoDBCoordinator(self.table, "B", self.other_events, failover_time=10, clock=self.clock)
        self.coordinator: Coordinator = self.a
        self.a.ensure_leases([ShardInfo(k) for k in self.keys], InitialPosition.TRIM_HORIZON)

    def hold_all(self) -> dict[str, Lease]:
        self.a.take_cycle()
        return {k: self._holding(self.a, k) for k in self.keys}

    def hand_one_off(self) -> str:
        self.b.take_cycle()  # B's fair share is one: it asks for it
        self.clock.advance(self.a.renewer.interval)  # A's next renewal is due, and sees the request
        self.a.renew_all()
        assert len(self.events.handoff) == 1, self.events.handoff
        return self.events.handoff[0]

    def taken_from(self, key: str) -> ESN:
        self.b.take_cycle()
        return self._holding(self.b, key).checkpoint

    def give_back(self, key: str) -> Lease:
        assert self.b.release(self._holding(self.b, key))
        self.a.take_cycle()
        return self._holding(self.a, key)

    def stored(self, key: str) -> ESN:
        lease = self.table.get(key)
        assert lease is not None
        return lease.checkpoint

    @staticmethod
    def _holding(coordinator: Any, key: str) -> Lease:
        lease = coordinator.holding(key)
        assert lease is not None, f"{coordinator.worker_id} does not hold {key}"
        return lease  # type: ignore[no-any-return]


class KafkaGroup:
    def __init__(self, kafka: KafkaTopics, name: str) -> None:
        self.kafka, self.topic, self.group = kafka, kafka.create(name, partitions=2), f"group-{name}"
        kafka.produce(self.topic, 0, 40, partitions=2)
        self.keys = (f"{self.topic}:0", f"{self.topic}:1")
        self.events, self.other_events = Events(), Events()
        self.a = self._member("A", self.events)
        self.coordinator: Coordinator = self.a
        self.b: Any = None

    def _member(self, name: str, events: Events) -> Any:
        from streamworker.kafka.client import KafkaClient
        from streamworker.kafka.source import KafkaSource
        from streamworker.leases.kafka_group import KafkaGroupCoordinator

        conf = {"bootstrap.servers": self.kafka.bootstrap, "group.id": self.group, "client.id": name,
                "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
        source = KafkaSource(KafkaClient(conf), [self.topic], None)
        return KafkaGroupCoordinator(source, name, events, initial_position=InitialPosition.TRIM_HORIZON)

    def hold_all(self) -> dict[str, Lease]:
        self.a.start()
        self.events.wait(lambda: {le.lease_key for le in self.events.acquired} == set(self.keys), "assignment")
        return {k: self.a.holding(k) for k in self.keys}

    def hand_one_off(self) -> str:
        self.b = self._member("B", self.other_events)
        self.b.start()  # joins: cooperative-sticky moves one partition to it
        self.events.wait(lambda: bool(self.events.handoff), "the revocation")
        return self.events.handoff[0]

    def taken_from(self, key: str) -> ESN:
        self.other_events.wait(lambda: any(le.lease_key == key for le in self.other_events.acquired), "B's assignment")
        return next(le for le in self.other_events.acquired if le.lease_key == key).checkpoint

    def give_back(self, key: str) -> Lease:
        before = len(self.events.acquired)
        self.b.stop()  # leaves the group: its partition comes back
        self.b = None
        self.events.wait(lambda: len(self.events.acquired) > before, "the partition back")
        lease = self.events.acquired[-1]
        assert lease.lease_key == key
        return lease

    def stored(self, key: str) -> ESN:
        partition = int(key.rpartition(":")[2])
        return ESN(str(self.kafka.committed(self.group, self.topic, 2)[partition] - 1))

    def close(self) -> None:
        for member in (self.b, self.a):
            if member is not None:
                member.stop()


@pytest.fixture(params=["memory", "dynamodb", "kafka-group"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    name = f"contract-{uuid.uuid4().hex[:8]}"
    if request.param == "memory":
        yield Memory()
    elif request.param == "dynamodb":
        request.getfixturevalue("aws_env")
        yield DynamoDB(name)
    else:
        b = KafkaGroup(request.getfixturevalue("kafka"), name)
        try:
            yield b
        finally:
            b.close()


# -- the contract ---------------------------------------------------------------------------------


def test_a_lease_taken_is_told_and_held_as_one_holding(backend: Backend) -> None:
    holdings = backend.hold_all()
    c = backend.coordinator
    assert sorted(le.lease_key for le in backend.events.acquired) == sorted(backend.keys)
    for key, lease in holdings.items():
        assert c.holding(key) is lease and c.is_held(lease)
        assert lease.lease_key == key and lease.checkpoint == ESN("TRIM_HORIZON")
    assert sorted(c.held_keys()) == sorted(backend.keys)


def test_a_checkpoint_that_returns_is_stored(backend: Backend) -> None:
    lease = backend.hold_all()[backend.keys[1]]
    backend.coordinator.checkpoint(lease, ESN("7"))
    assert backend.stored(backend.keys[1]) == ESN("7")
    backend.coordinator.checkpoint(lease, ESN("9"))
    assert backend.stored(backend.keys[1]) == ESN("9")


def test_a_handoff_lets_the_holder_checkpoint_then_the_next_owner_starts_there(backend: Backend) -> None:
    holdings = backend.hold_all()
    key = backend.hand_one_off()
    lease, c = holdings[key], backend.coordinator
    assert c.is_held(lease)  # until it lets go
    c.checkpoint(lease, ESN("11"))  # the final checkpoint of shutdown_requested
    assert c.release(lease)
    assert not c.is_held(lease) and c.holding(key) is None and key not in c.held_keys()
    assert backend.taken_from(key) == ESN("11")
    with pytest.raises(LeaseLostError):
        c.checkpoint(lease, ESN("12"))
    assert not c.release(lease)
    assert backend.stored(key) == ESN("11")


def test_a_lease_that_comes_back_is_a_new_holding_and_the_old_one_stays_fenced(backend: Backend) -> None:
    holdings = backend.hold_all()
    key = backend.hand_one_off()
    old, c = holdings[key], backend.coordinator
    c.checkpoint(old, ESN("5"))
    assert c.release(old)
    backend.taken_from(key)
    new = backend.give_back(key)
    assert new is not old and c.holding(key) is new and c.is_held(new) and not c.is_held(old)
    assert new.checkpoint == ESN("5")
    with pytest.raises(LeaseLostError):
        c.checkpoint(old, ESN("6"))
    assert backend.stored(key) == ESN("5")
    c.checkpoint(new, ESN("8"))
    assert backend.stored(key) == ESN("8")


def test_a_forgotten_lease_is_not_held_and_writes_nothing(backend: Backend) -> None:
    lease = backend.hold_all()[backend.keys[0]]
    c = backend.coordinator
    c.checkpoint(lease, ESN("3"))
    c.forget(lease, "a test")
    assert not c.is_held(lease) and c.holding(backend.keys[0]) is None
    with pytest.raises(LeaseLostError):
        c.checkpoint(lease, ESN("4"))
    assert backend.stored(backend.keys[0]) == ESN("3")


def test_the_other_lease_is_untouched_by_a_handoff(backend: Backend) -> None:
    holdings = backend.hold_all()
    key = backend.hand_one_off()
    other = next(k for k in backend.keys if k != key)
    c = backend.coordinator
    assert c.release(holdings[key])
    backend.taken_from(key)
    assert c.holding(other) is holdings[other] and c.is_held(holdings[other])
    c.checkpoint(holdings[other], ESN("21"))
    assert backend.stored(other) == ESN("21")
