"""Faults sprinkled over the local stack, behind an option: `LocalStack(faults=FaultPlan(...))`.

- throttling: one AWS SDK call in `throttle_every` made by the functions raises a
  ThrottlingException ClientError from botocore's `before-send` hook. Raised there, it skips
  the SDK's own retries: it stands for throttling that outlasted them, what the product sees;
- Studio: one request in `studio_5xx_every` answers 503 (the Studio recorder);
- killed invocations: one invocation in `kill_every` raises InvocationKilled, a BaseException
  that no `except Exception` in the product sees, at a random point: before the handler, at
  one of its AWS calls, or after its work but before its answer, as a Lambda timeout cuts an
  invocation short. The event source then sees what Lambda reports: an error.

Faults come at a fixed cadence from a seeded phase (every Nth call, not a coin flip), so a run
of a given size always meets each fault the same number of times.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class FaultPlan:
    throttle_every: int = 20
    studio_5xx_every: int = 50
    kill_every: int = 100
    seed: int = 12


class InvocationKilled(BaseException):
    """The runtime ending an invocation at its timeout: invisible to `except Exception`."""


class LambdaTimeout(Exception):
    """What the event source or API Gateway sees of a killed invocation: the function failed."""


class Cadence:
    """True once every `every` calls, from a seeded phase; thread-safe."""

    def __init__(self, every: int, rng: random.Random) -> None:
        self._every = every
        self._counter = itertools.count(rng.randrange(every) if every > 0 else 0)
        self._lock = threading.Lock()
        self.hits = 0

    def __call__(self) -> bool:
        if self._every <= 0:
            return False
        with self._lock:
            hit = next(self._counter) % self._every == self._every - 1
            self.hits += hit
        return hit


class Faults:
    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._throttle = Cadence(plan.throttle_every, self._rng)
        self._kill = Cadence(plan.kill_every, self._rng)
        self._local = threading.local()
        self.invocations = 0

    @property
    def throttled(self) -> int:
        return self._throttle.hits

    @property
    def killed(self) -> int:
        return self._kill.hits

    def install(self, clients: Iterable[Any]) -> None:
        """Throttle (and possibly kill at) the calls these clients make: the functions' own clients."""
        for client in clients:
            client.meta.events.register("before-send", self._before_send)

    def wrap(self, function: str, handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
        def invoke(event: dict, context: Any) -> Any:
            self.invocations += 1
            # How many kill points to pass before dying: 0 is before the handler runs.
            self._local.countdown = self._rng.randrange(4) if self._kill() else None
            try:
                self._kill_point()
                result = handler(event, context)
                self._kill_point(last=True)
                return result
            except InvocationKilled as exc:
                raise LambdaTimeout(f"{function} was killed (injected fault)") from exc
            finally:
                self._local.countdown = None

        return invoke

    def _before_send(self, request: Any, **kwargs: Any) -> None:
        self._kill_point()
        if self._throttle():
            operation = kwargs.get("event_name", "").rpartition(".")[2] or "Unknown"
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded (injected)"}}, operation
            )

    def _kill_point(self, *, last: bool = False) -> None:
        countdown = getattr(self._local, "countdown", None)
        if countdown is None:
            return
        if countdown == 0 or last:
            self._local.countdown = None
            raise InvocationKilled
        self._local.countdown = countdown - 1
