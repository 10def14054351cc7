"""A cold start without garbage collections.

A function's first invocation allocates its imports, the SDK's service models and its clients,
and CPython collects its young objects every 2,000 allocations: about 30 collections, 15 to 20 ms
(some 5% of a minimal function's cold start, see `make bench`), finding next to nothing to free.
Importing this module (each handler does, first) stops collecting; the end of the first
invocation starts it again, after `gc.freeze()` has set what is alive then (modules, models,
clients: they live as long as the container) beyond the reach of every later collection.

Only in Lambda (wiring.in_lambda): where handlers share a process with other code (tests, the
local stack), collection goes on as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from functools import wraps
from typing import Any

from . import wiring

_held = False


def hold() -> None:
    """Stop collecting until the first invocation ends (see `released_after`)."""
    global _held
    if wiring.in_lambda() and gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def released_after(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """The handler, collecting again once its first invocation is over (whatever its outcome)."""

    @wraps(handler)
    def run(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            release()

    return run


hold()
