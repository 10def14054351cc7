"""Deadlines come from the runtime's remaining time, less the fallback's reserve."""

from agent_handoff.deadline import Deadline


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class LambdaContextLeft:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_the_runtime_remaining_time_less_the_reserve():
    clock = FakeClock()
    deadline = Deadline.from_context(LambdaContextLeft(10_000), reserve_seconds=2.5, clock=clock)
    assert deadline.remaining() == 7.5
    clock.now += 7.0
    assert not deadline.expired() and round(deadline.remaining(), 6) == 0.5
    clock.now += 1.0
    assert deadline.expired() and deadline.remaining() == 0.0


def test_a_cap_bounds_a_long_function_timeout():
    clock = FakeClock()
    deadline = Deadline.from_context(LambdaContextLeft(60_000), reserve_seconds=2, cap_seconds=12, clock=clock)
    assert deadline.remaining() == 12


def test_less_time_than_the_reserve_is_already_expired():
    deadline = Deadline.from_context(LambdaContextLeft(1_000), reserve_seconds=2, clock=FakeClock())
    assert deadline.expired() and deadline.remaining() == 0.0


def test_without_a_runtime_context_the_cap_applies():
    clock = FakeClock()
    assert Deadline.from_context(None, reserve_seconds=2, cap_seconds=5, clock=clock).remaining() == 5
    assert Deadline.from_context(object(), reserve_seconds=2, clock=clock).remaining() == 30


def test_within_takes_the_earlier_of_the_two():
    clock = FakeClock()
    deadline = Deadline.after(10, clock=clock)
    assert deadline.within(3).remaining() == 3
    assert deadline.within(30).remaining() == 10
    assert deadline.remaining() == 10  # narrowing gives a new deadline
