"""The one place that speaks DynamoDB's wire types and error codes.

AWS error codes become the domain's exceptions here: ConcurrentUpdate for a failed
condition (with the item as it was, when DynamoDB returns it), StoreError for the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from ..errors import ConcurrentUpdate, StoreBusy, StoreError, StoreNoAnswer
from ..pan_redaction import redact_pans
from .records import Turn


# boto3's TypeSerializer would do this too, but importing boto3.dynamodb.types pulls in
# the resource layer's modules; these four shapes are all the table holds.
def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def typed(value: Any) -> dict[str, Any]:
    """A plain str/int/bool as a DynamoDB attribute; an attribute already typed passes through."""
    if isinstance(value, dict):
        return value
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return n(value)
    if isinstance(value, str):
        return s(value)
    raise TypeError(f"no DynamoDB type for {type(value).__name__}")


_PLACEHOLDER = re.compile(r"#(\w+)")


# DynamoDB refuses an item over 400 KB, and a conversation that grew past it would fail on every
# turn. History (the only part that grows) keeps to this much; the rest of an item (keys, ids, a
# hold, a payload, one prompt appended before the history is rewritten) fits many times in the
# other 100 KB.
ITEM_LIMIT_BYTES = 400 * 1024
HISTORY_MAX_BYTES = 300 * 1024


def attribute_size(value: Mapping[str, Any]) -> int:
    """A typed value's size as DynamoDB counts it toward the item limit (its name not included).

    Hand-written: boto3 has no such function. Rules from DynamoDB's "Item sizes and formats":
    strings and binaries their bytes, numbers 1 byte per two significant digits plus 1, a
    list or map 3 bytes plus 1 per element, a map's keys their UTF-8 bytes.
    """
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        return _number_size(raw)
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_size(element) for element in raw)
    if kind == "M":
        return 3 + sum(1 + len(key.encode()) + attribute_size(element) for key, element in raw.items())
    if kind == "SS":
        return sum(len(member.encode()) for member in raw)
    if kind == "NS":
        return sum(_number_size(member) for member in raw)
    if kind == "BS":
        return sum(len(member) for member in raw)
    raise StoreError(f"unexpected DynamoDB attribute type {kind}")


def _number_size(raw: str) -> int:
    mantissa = raw.lower().split("e")[0].lstrip("+-").replace(".", "").strip("0")
    return (len(mantissa) + 1) // 2 + 1


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size as DynamoDB counts it: each attribute's UTF-8 name plus its value."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def history_attribute(turns: Iterable[Turn], *, max_bytes: int = HISTORY_MAX_BYTES) -> dict[str, Any]:
    """A conversation's history as a DynamoDB list of {role, text} maps, at most `max_bytes` of it.

    The newest turns are kept; when even the newest alone is too big, its text is cut to fit.
    """
    kept: list[dict[str, Any]] = []
    size = 3
    for turn in reversed(tuple(turns)):
        element = _turn_element(turn, turn.text)
        cost = 1 + attribute_size(element)
        if size + cost > max_bytes:
            if not kept:
                room = max(0, max_bytes - size - (cost - len(turn.text.encode())))
                # Card numbers out before the cut: a cut inside one would keep digits that no longer pass Luhn.
                kept.append(_turn_element(turn, _cut(redact_pans(turn.text), room)))
            break
        kept.append(element)
        size += cost
    kept.reverse()
    return {"L": kept}


def _turn_element(turn: Turn, text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"role": s(turn.role), "text": s(text)}
    if turn.interrupted:
        fields["interrupted"] = {"BOOL": True}
    return {"M": fields}


def _cut(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character."""
    return text.encode()[:max_bytes].decode("utf-8", "ignore")


def history_from(items: Iterable[Mapping[str, Any]]) -> tuple[Turn, ...]:
    return tuple(Turn(role=t["role"], text=t["text"], interrupted=bool(t.get("interrupted"))) for t in items)  # type: ignore[arg-type]


def _plain(attr: Mapping[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "L":
        return [_plain(v) for v in value]
    if kind == "M":
        return {k: _plain(v) for k, v in value.items()}
    raise StoreError(f"unexpected DynamoDB attribute type {kind}")


def plain_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item (or stream image) as plain Python values."""
    return {name: _plain(attr) for name, attr in item.items()}


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))


# Refusals that say "not now" rather than "no": the same request may succeed after a pause. The
# SDK has retried them already; a caller with time left may try again (the SMS commit does).
BUSY_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)
# The same, as a cancelled transaction's per-item reasons.
BUSY_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


# Failures with no answer from DynamoDB, by class name (botocore's HTTPClientError covers read
# timeouts and closed connections; its ConnectionError, refused or timed-out connects), so that
# this module need not import botocore.
NO_ANSWER = frozenset({"HTTPClientError", "ConnectionError", "TimeoutError"})


class TransactionCancelled(StoreError):
    def __init__(self, reasons: list[str | None]) -> None:
        super().__init__("transaction cancelled")
        self.reasons = reasons

    @property
    def busy(self) -> bool:
        """Cancelled only by conflicts or throttling: no condition failed, so the same write may succeed."""
        return any(r in BUSY_REASONS for r in self.reasons) and all(
            r in BUSY_REASONS or r in (None, "None") for r in self.reasons
        )


class DynamoTable:
    """Base of the stores: a low-level client, one table, error mapping."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _request(
        self,
        key: str,
        *,
        update: str | None = None,
        condition: str | None = None,
        projection: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One item's request: every `#name` placeholder stands for the attribute `name`; values are plain."""
        request: dict[str, Any] = {"TableName": self._table, "Key": {"pk": s(key)}}
        expressions = {"UpdateExpression": update, "ConditionExpression": condition, "ProjectionExpression": projection}
        request.update({name: text for name, text in expressions.items() if text})
        names = {f"#{name}" for text in expressions.values() if text for name in _PLACEHOLDER.findall(text)}
        if names:
            request["ExpressionAttributeNames"] = {placeholder: placeholder[1:] for placeholder in sorted(names)}
        if values:
            request["ExpressionAttributeValues"] = {name: typed(value) for name, value in values.items()}
        return request

    def _update(self, key: str, update: str, **request: Any) -> dict[str, Any]:
        """UpdateItem on one item: `condition`, `values` as for `_request`; other keywords go to DynamoDB."""
        shaped = self._request(
            key, update=update, condition=request.pop("condition", None), values=request.pop("values", None)
        )
        return self._call("update_item", **shaped, **request)

    def _get(self, key: str) -> dict[str, Any] | None:
        response = self._call("get_item", TableName=self._table, Key={"pk": s(key)}, ConsistentRead=True)
        item = response.get("Item")
        return plain_item(item) if item else None

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(**kwargs)
        except Exception as exc:
            code = _error_code(exc)
            if code == "ConditionalCheckFailedException":
                item = (getattr(exc, "response", None) or {}).get("Item")
                raise ConcurrentUpdate(f"{operation}: condition failed", item) from None
            if code == "TransactionCanceledException":
                reasons = [r.get("Code") for r in (exc.response.get("CancellationReasons") or [])]  # type: ignore[attr-defined]
                raise TransactionCancelled(reasons) from None
            if code in BUSY_CODES:
                raise StoreBusy(f"DynamoDB {operation} failed: {code}") from exc
            if code:
                raise StoreError(f"DynamoDB {operation} failed: {code}") from exc
            if any(kind.__name__ in NO_ANSWER for kind in type(exc).__mro__):
                raise StoreNoAnswer(f"DynamoDB {operation} failed: {type(exc).__name__}") from exc
            if type(exc).__module__.startswith(("botocore", "urllib3")):
                raise StoreError(f"DynamoDB {operation} failed: {type(exc).__name__}") from exc
            raise
