"""Reading a model's answer: every field's shape is checked, and anything else is a ProviderError.

A provider's JSON is untrusted input: a wrong type anywhere must end in the apology and handoff
that ProviderError leads to, never in an AttributeError that answers the customer with a 5xx.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ProviderError
from .messages import ToolCall


def loads(raw: str | bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        raise ProviderError(f"{what} is not JSON") from None


def obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProviderError(f"{what} is not an object")
    return value


def items(value: Any, what: str) -> list[Any]:
    """A JSON array; absent or null is an empty one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProviderError(f"{what} is not an array")
    return value


def text(value: Any, what: str) -> str:
    """A JSON string; absent or null is empty."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProviderError(f"{what} is not a string")
    return value


def first(value: Any, what: str) -> dict[str, Any]:
    """The first object of a non-empty array."""
    entries = items(value, what)
    if not entries:
        raise ProviderError(f"{what} is empty")
    return obj(entries[0], f"{what}[0]")


def json_arguments(value: Any) -> dict[str, Any] | None:
    """OpenAI's tool arguments, a JSON string (some servers send the object); None when not an object."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def tool_call(call_id: Any, name: Any, args: dict[str, Any] | None, *, index: int, what: str) -> ToolCall:
    return ToolCall(id=text(call_id, f"{what}.id") or f"call_{index}", name=text(name, f"{what}.name"), arguments=args)
