"""What the watchdog asks of each kind of promise, and what a keeper reports back.

Apart from the watchdog (delivery/) so that every channel can keep its own kind of promise
(voice keeps "voice_end") without a channel importing another.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from .deadline import Deadline

Item = TypeVar("Item")


@dataclass
class KeeperReport:
    """What one keeper did in one run. `recovered` and `failed` are the alarmed figures."""

    overdue: int = 0
    recovered: int = 0  # kept late: delivered by the watchdog, after the normal path missed it
    failed: int = 0  # could not be kept: failed loudly (dead letter, hold lifted, customer told)
    retried: int = 0  # attempted, handed back for a later run (a transient failure)
    settled: int = 0  # nothing was owed after all, or only a failure's aftermath was left
    errors: int = 0  # raised: left overdue for the next run
    left: int = 0  # not reached before the deadline
    outcomes: list[str] = field(default_factory=list)

    def in_time(self, overdue: Sequence[Item], deadline: Deadline, min_seconds: float) -> Iterator[Item]:
        """The overdue promises, one by one while one more fits before the deadline; counts both."""
        self.overdue = len(overdue)
        for index, item in enumerate(overdue):
            if deadline.remaining() < min_seconds:
                self.left = len(overdue) - index
                return
            yield item


class PromiseKeeper(Protocol):
    """Keeps the overdue promises of one kind (the index's `promise` value)."""

    kind: str

    def keep_overdue(self, *, now: int, deadline: Deadline) -> KeeperReport: ...
