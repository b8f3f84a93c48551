"""Checkpoint commits from the poll loop: asynchronous requests, answered through on_commit."""

from __future__ import annotations

from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaError, KafkaException, TopicPartition  # noqa: E402

from streamworker.kafka.client import KafkaClient  # noqa: E402
from streamworker.leases.lease import Lease  # noqa: E402


def held(coordinator: Any, key: str) -> Lease:
    """The coordinator's current holding of ``key`` (which it must hold)."""
    holding = coordinator.holding(key)
    assert holding is not None, f"{key} is not held"
    return holding  # type: ignore[no-any-return]

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


class _RefusingClient:
    """Refuses commits with ``code`` until ``ok_after`` seconds of the fake clock passed."""

    def __init__(self, clock: Any, code: int, ok_after: float) -> None:
        self.conf: dict[str, str] = {}
        self.clock, self.code, self.ok_after = clock, code, ok_after
        self.start = clock.monotonic()
        self.attempts = 0

    def next_offset(self, topic: str, partition: int, last: int) -> int:
        return last + 1  # nothing but records follow: the commit is the next offset

    def commit_offsets(self, offsets: list[Any]) -> None:
        from confluent_kafka import KafkaError, KafkaException

        self.attempts += 1
        self.clock.advance(2.0)  # an attempt answered while the rebalance goes on
        if self.clock.monotonic() - self.start < self.ok_after:
            raise KafkaException(KafkaError(self.code))


def _group(client: Any, clock: Any) -> Any:
    from streamworker.leases.kafka_group import KafkaGroupCoordinator, _Assigned
    from streamworker.leases.lease import Lease
    from streamworker.records import InitialPosition

    source: Any = type("Source", (), {"client": client})()
    listener: Any = object()
    g = KafkaGroupCoordinator(source, "w", listener, initial_position=InitialPosition.TRIM_HORIZON, clock=clock)
    g._held["t:0"] = _Assigned(Lease("t:0"))
    return g


def test_a_commit_refused_by_a_long_rebalance_waits_for_it_to_end() -> None:
    """A cooperative rebalance outlasting commit_timeout (15 s) used to give up the checkpoint:
    the processor's batch was then delivered again though it had been processed."""
    from confluent_kafka import KafkaError

    from streamworker.clock import FakeClock
    from streamworker.records import ExtendedSequenceNumber as ESN

    clock = FakeClock()
    client = _RefusingClient(clock, KafkaError.REBALANCE_IN_PROGRESS, ok_after=40.0)
    g = _group(client, clock)
    g.checkpoint(held(g, "t:0"), ESN("9"))  # no CheckpointThrottledError
    assert client.attempts > 10


def test_other_refusals_still_give_up_after_commit_timeout() -> None:
    from confluent_kafka import KafkaError

    from streamworker.clock import FakeClock
    from streamworker.errors import CheckpointThrottledError
    from streamworker.records import ExtendedSequenceNumber as ESN

    clock = FakeClock()
    start = clock.monotonic()
    client = _RefusingClient(clock, KafkaError.COORDINATOR_NOT_AVAILABLE, ok_after=40.0)
    g = _group(client, clock)
    with pytest.raises(CheckpointThrottledError, match="COORDINATOR_NOT_AVAILABLE"):
        g.checkpoint(held(g, "t:0"), ESN("9"))
    assert clock.monotonic() - start < 20


def test_a_partition_revoked_during_the_rebalance_ends_the_wait_as_lost() -> None:
    from confluent_kafka import KafkaError

    from streamworker.clock import FakeClock
    from streamworker.errors import LeaseLostError
    from streamworker.records import ExtendedSequenceNumber as ESN

    clock = FakeClock()
    client = _RefusingClient(clock, KafkaError.REBALANCE_IN_PROGRESS, ok_after=1000.0)
    g = _group(client, clock)
    real = client.commit_offsets

    def revoke_after_a_while(offsets: list[Any]) -> None:
        if client.attempts == 5:
            g._held.clear()  # on_revoke took it
        real(offsets)

    client.commit_offsets = revoke_after_a_while  # type: ignore[method-assign]
    with pytest.raises(LeaseLostError):
        g.checkpoint(held(g, "t:0"), ESN("9"))


def test_a_commit_refused_while_its_partition_is_being_revoked_gives_up_within_half_the_revoke_timeout() -> None:
    """on_revoke waits for the revoked partition's last checkpoint and the rebalance waits for
    on_revoke: a refusal then cannot end by waiting, so the commit gives up before the callback
    does (and the new owner redelivers from the last commit made)."""
    from confluent_kafka import KafkaError

    from streamworker.clock import FakeClock
    from streamworker.errors import CheckpointThrottledError
    from streamworker.records import ExtendedSequenceNumber as ESN

    clock = FakeClock()
    start = clock.monotonic()
    client = _RefusingClient(clock, KafkaError.REBALANCE_IN_PROGRESS, ok_after=1000.0)
    g = _group(client, clock)
    g._held["t:0"].revoking = True
    with pytest.raises(CheckpointThrottledError, match="REBALANCE_IN_PROGRESS"):
        g.checkpoint(held(g, "t:0"), ESN("9"))
    assert clock.monotonic() - start <= g.revoke_timeout / 2 + 2.0


@pytest.mark.parametrize("code", ["ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"])
def test_a_commit_of_a_generation_that_is_over_gives_up_at_once_while_its_partition_is_revoked(code: str) -> None:
    """Within a revoke such a refusal cannot end by retrying, and a revoke callback held past the
    session timeout gets the member evicted with every partition it kept."""
    from confluent_kafka import KafkaError

    from streamworker.clock import FakeClock
    from streamworker.errors import CheckpointThrottledError
    from streamworker.records import ExtendedSequenceNumber as ESN

    clock = FakeClock()
    start = clock.monotonic()
    client = _RefusingClient(clock, getattr(KafkaError, code), ok_after=1000.0)
    g = _group(client, clock)
    g._held["t:0"].revoking = True
    with pytest.raises(CheckpointThrottledError, match=code):
        g.checkpoint(held(g, "t:0"), ESN("9"))
    assert client.attempts == 1 and clock.monotonic() - start == 2.0  # the one attempt's own answer


def test_a_commit_begun_before_a_loss_is_refused_though_the_partition_came_straight_back() -> None:
    """A worker woken from SIGSTOP: its processor's commit starts, the group reports the partition
    lost and assigns it straight back while the commit waits for the freeze to settle; the commit
    belongs to the old assignment and is refused, not made under the new one."""
    from streamworker.clock import FakeClock
    from streamworker.errors import LeaseLostError
    from streamworker.leases.kafka_group import _Assigned
    from streamworker.leases.lease import Lease
    from streamworker.records import ExtendedSequenceNumber as ESN

    clock = FakeClock()
    client = _RefusingClient(clock, 0, ok_after=0.0)  # accepts every commit
    g = _group(client, clock)

    class Freeze:
        def unsettled(self) -> bool:
            return True

        def wait_until_settled(self, timeout: float) -> None:  # meanwhile: lost, then back
            g._held["t:0"] = _Assigned(Lease("t:0"))

        threshold = settle = 1.0

    g.freeze = Freeze()
    with pytest.raises(LeaseLostError):
        g.checkpoint(held(g, "t:0"), ESN("9"))
    assert client.attempts == 0
