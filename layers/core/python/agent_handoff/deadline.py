"""How long an invocation may still work: the runtime's deadline, less what its fallback needs.

Every handler makes one from `context.get_remaining_time_in_millis()` and passes it down; the
LLM call, Studio requests and retry sleeps take what remains, so the fallback (apologise and
hand off, or hand the record back) always has its reserve left to run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]


class Deadline:
    """A point on the monotonic clock. Immutable: narrowing gives a new one."""

    __slots__ = ("_at", "_clock")

    def __init__(self, at: float, *, clock: Clock = time.monotonic) -> None:
        self._at = at
        self._clock = clock

    @classmethod
    def after(cls, seconds: float, *, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + max(0.0, seconds), clock=clock)

    @classmethod
    def from_context(
        cls,
        context: Any,
        *,
        reserve_seconds: float,
        cap_seconds: float | None = None,
        clock: Clock = time.monotonic,
    ) -> Deadline:
        """The runtime's remaining time less `reserve_seconds`, and never more than `cap_seconds`.

        A context without `get_remaining_time_in_millis` (a script, a test) gets the cap, or 30 s.
        """
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        available = remaining_ms() / 1000.0 if callable(remaining_ms) else (cap_seconds or 30.0) + reserve_seconds
        budget = available - reserve_seconds
        if cap_seconds is not None:
            budget = min(budget, cap_seconds)
        return cls.after(budget, clock=clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._at - self._clock())

    def expired(self) -> bool:
        return self._clock() >= self._at

    def within(self, seconds: float) -> Deadline:
        """The earlier of this deadline and `seconds` from now."""
        return Deadline(min(self._at, self._clock() + max(0.0, seconds)), clock=self._clock)

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"
