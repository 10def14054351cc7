"""Ids that every log line of an invocation should carry, once the core has learnt them.

The handler knows the MessageSid or connection; the core learns the conversation id or the
CallSid halfway through. Binding them here puts them on every later line, core and handler
alike, without the core knowing about the logging library.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

_keys: ContextVar[dict[str, str]] = ContextVar("log_keys", default={})  # noqa: B039 - never mutated in place


def bind(**keys: str) -> None:
    _keys.set({**_keys.get(), **{k: v for k, v in keys.items() if v}})


def clear() -> None:
    _keys.set({})


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record, where structured formatters pick them up."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _keys.get().items():
            setattr(record, key, value)
        return True
