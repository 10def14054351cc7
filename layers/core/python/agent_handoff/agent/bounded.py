"""A model call bounded by the turn's deadline as a whole, whatever its transport does.

Socket timeouts bound each read, not a call: a model that trickles its answer, or a read that
starts just before the deadline, outlives them. So the blocking work (an HTTP request, the lines
of a stream) runs on a worker thread and the turn waits for it only until its deadline; the
abandoned worker stops at its next item, or at its own socket timeout, and nothing waits for it.
Hand-written because neither httpx nor botocore can bound a whole call; a thread and a queue
from the standard library are all it takes (concurrent.futures would add imports for nothing).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ProviderError

if TYPE_CHECKING:
    from ..deadline import Deadline

T = TypeVar("T")

_ITEM, _END, _FAILED = "item", "end", "failed"


def iterate(produce: Callable[[], Iterator[T]], deadline: Deadline, *, what: str = "LLM call") -> Iterator[T]:
    """The items `produce()` yields on a worker thread, handed over until `deadline`.

    An exception in the worker is raised here, in the caller's thread, as it was. When the
    deadline passes first, ProviderError; the worker is told to stop and left to finish alone.
    """
    inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in produce():
                if stop.is_set():
                    return  # leaving the generator closes the response it holds
                inbox.put((_ITEM, item))
            inbox.put((_END, None))
        except BaseException as exc:  # handed to the caller, whatever it is
            inbox.put((_FAILED, exc))

    threading.Thread(target=work, name="bounded-llm-call", daemon=True).start()
    try:
        while True:
            if deadline.expired():
                raise ProviderError(f"{what} ran past the turn's deadline")
            try:
                kind, value = inbox.get(timeout=deadline.remaining())
            except queue.Empty:
                raise ProviderError(f"{what} ran past the turn's deadline") from None
            if kind is _END:
                return
            if kind is _FAILED:
                raise value
            yield value
    finally:
        stop.set()


def call(fn: Callable[[], T], deadline: Deadline, *, what: str = "LLM call") -> T:
    """`fn()` on a worker thread; its result, its exception, or ProviderError at the deadline."""

    def once() -> Iterator[T]:
        yield fn()

    for result in iterate(once, deadline, what=what):
        return result
    raise ProviderError(f"{what} returned nothing")  # unreachable: `once` always yields or raises


# A call with less time than this left is not started: no model answers that fast, and the
# fallback is better served by the time.
MIN_CALL_SECONDS = 0.5


def call_deadline(deadline: Deadline | None, cap_seconds: float) -> Deadline:
    """One model call's deadline: the turn's, and never more than the per-call cap (LLM_TIMEOUT_SECONDS)."""
    from ..deadline import Deadline

    bounded = deadline.within(cap_seconds) if deadline is not None else Deadline.after(cap_seconds)
    if bounded.remaining() < MIN_CALL_SECONDS:
        raise ProviderError(f"no time left for a model call ({bounded.remaining():.2f} s)")
    return bounded
