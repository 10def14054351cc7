"""What of a HandoffPayload reaches a Flex task, and the rule that keeps it within 1,024 characters.

Flex task attributes set through Studio's Send to Flex widget hold at most 1,024 characters.
A payload becomes task attributes by one of three routes, and each copies some of it twice:

- SMS, Studio's `sms_to_flex`: `{"name", "channelType", "reason", "conversationId", "HandoffData"}`;
- voice through Studio, `voice_to_flex`: the same with `"type": "inbound"` (two characters shorter);
- voice straight to Flex, `<Enqueue><Task>`: the routing attributes and `reason` at the top level
  (TaskRouter workflows filter on them), then `type`, `name`, `conversationId` and `HandoffData`.

`name` is the customer's address, which Studio fills in: CALLER_RESERVE characters are kept for it.
Sizes are measured in the widest form any hop may give the JSON (ASCII-escaped, `", "` and `": "`
separators), so what Flex receives is never longer than what was measured, whether Flex counts
characters or UTF-8 bytes. Floors count the same way: an ASCII character is one, others six or twelve.

The rule, applied until the attributes of every route fit (values are shortened, the JSON is never
cut): the agent's free text is cleaned first (card numbers removed; in `reason`, quotes, backslashes
and line breaks that Studio's template would copy unescaped into its JSON replaced); then

1. `summary` is shortened, at a word boundary with an ellipsis, down to SUMMARY_FLOOR characters;
2. `reason` is shortened down to REASON_FLOOR characters;
3. optional attributes are dropped, in DROP_ORDER (`summary`, then `transcriptUrl`, never cut: a
   cut URL is useless), `reason` regaining the room at each step;
4. `reason` is shortened below its floor, down to the ellipsis alone;
5. only if the operator configured more than config allows: the operator's routing attributes are
   dropped, the last one first. Until then they keep their values, untouched.

Ids longer than ID_MAX characters (ours are 37) are cut to it first, so step 5 always ends the search.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .pan_redaction import redact_pans

FLEX_ATTRIBUTES_LIMIT = 1024
CALLER_RESERVE = 64
ID_MAX = 128
REASON = "reason"
REASON_FLOOR = 120
SUMMARY_FLOOR = 80
ELLIPSIS = "\u2026"
# Attributes the agent or the product writes (all others are the operator's routing attributes):
# shortened in this order, each down to its floor, before anything is dropped.
SHORTENED = (("summary", SUMMARY_FLOOR), (REASON, REASON_FLOOR))
# Dropped in this order when shortening is not enough; they travel only inside HandoffData.
DROP_ORDER = ("summary", "transcriptUrl")
# The agent's free text: card numbers are removed from these.
FREE_TEXT = ("summary", REASON)
# The largest routing attributes config accepts (widest JSON of the object): with them, our ids and
# the caller reserve, `reason` still keeps its floor (tests/test_payload_limits.py holds it).
ROUTING_ATTRIBUTES_MAX = 200

_IDS = ("conversationId", "storeId", "profileId")
_BLANKS = re.compile(r"[\s\x00-\x1f\x7f]+")
_RAW_UNSAFE = str.maketrans({'"': "'", "\\": "/"})

Fits = Callable[[dict[str, Any]], bool]


def width(value: Any) -> int:
    """Characters of `value` as JSON in the widest form a hop may give it."""
    return len(json.dumps(value, ensure_ascii=True))


def enqueue_task_attributes(wire: Mapping[str, Any], caller: str) -> dict[str, Any]:
    """The `<Enqueue><Task>` attributes: routing and reason on top for TaskRouter, the payload inside."""
    top = {k: v for k, v in wire["attributes"].items() if k not in DROP_ORDER}
    return {
        **top,
        "type": "inbound",
        "name": within_width(caller, ID_MAX),
        "conversationId": wire["conversationId"],
        "HandoffData": dict(wire),
    }


def studio_task_attributes(wire: Mapping[str, Any], caller: str) -> dict[str, Any]:
    """What the shipped flow's `sms_to_flex` widget builds (`voice_to_flex` builds less)."""
    return {
        "name": caller,
        "channelType": "sms",
        "reason": str(wire["attributes"].get(REASON, "")),
        "conversationId": wire["conversationId"],
        "HandoffData": dict(wire),
    }


def flex_width(wire: Mapping[str, Any], caller: str = "") -> int:
    """The longest task attributes any route makes of this payload, for a caller of this address."""
    name = within_width(caller, ID_MAX) if width(caller) - 2 > CALLER_RESERVE else "x" * CALLER_RESERVE
    return max(width(enqueue_task_attributes(wire, name)), width(studio_task_attributes(wire, name)))


def fit(wire: Mapping[str, Any], *, caller: str = "") -> dict[str, Any]:
    """The payload (TAC wire shape) cleaned and trimmed by the rule above; unchanged when it fits."""
    ids = {key: within_width(str(wire.get(key) or ""), ID_MAX) for key in _IDS}
    attributes = _cleaned(wire.get("attributes") or {})

    def fits(attrs: dict[str, Any]) -> bool:
        return flex_width({**ids, "attributes": attrs}, caller) <= FLEX_ATTRIBUTES_LIMIT

    for dropped in range(len(DROP_ORDER) + 1):
        attrs = {k: v for k, v in attributes.items() if k not in DROP_ORDER[:dropped]}
        if _shorten_to_fit(attrs, SHORTENED, fits):
            return {**ids, "attributes": attrs}
    kept = [k for k in attributes if k not in DROP_ORDER and k != REASON]
    while True:
        attrs = {k: v for k, v in attributes.items() if k in kept or k == REASON}
        if _shorten_to_fit(attrs, ((REASON, 1),), fits) or not kept:
            return {**ids, "attributes": attrs}
        kept.pop()  # only with routing attributes larger than config accepts


def shorten(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut at a word boundary when one is near, with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit < 1:
        return ""
    head = text[: limit - 1]
    if not text[limit - 1].isspace():
        space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
        if space >= len(head) // 2:
            head = head[:space]
    return head.rstrip() + ELLIPSIS


def _shorten_to_fit(attrs: dict[str, Any], floors: tuple[tuple[str, int], ...], fits: Fits) -> bool:
    """Shortens `attrs` in place, field by field in order, each as little as fitting allows."""
    if fits(attrs):
        return True
    for key, floor in floors:
        value = attrs.get(key)
        if not isinstance(value, str):
            continue
        floor = len(within_width(value, floor))  # the floor counts widths: non-ASCII text keeps fewer
        if len(value) <= floor:
            continue
        low, high = floor, len(value) - 1
        if not fits({**attrs, key: shorten(value, low)}):
            attrs[key] = shorten(value, floor)
            continue
        while low < high:  # the longest cut that fits; a cut's size grows with its limit
            middle = (low + high + 1) // 2
            if fits({**attrs, key: shorten(value, middle)}):
                low = middle
            else:
                high = middle - 1
        attrs[key] = shorten(value, low)
        return True
    return fits(attrs)


def _cleaned(attributes: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = dict(attributes)
    for key in FREE_TEXT:
        value = cleaned.get(key)
        if isinstance(value, str):
            if key == REASON:
                # Studio's template copies reason into its JSON as is.
                value = _BLANKS.sub(" ", value).strip().translate(_RAW_UNSAFE)
            cleaned[key] = redact_pans(value)
    return cleaned


def within_width(text: str, limit: int) -> str:
    """The longest start of `text` whose widest JSON string content is at most `limit` characters."""
    if len(text) <= limit // 12 or width(text) - 2 <= limit:  # a character escapes to at most 12
        return text
    used = 0
    for index, char in enumerate(text):
        used += width(char) - 2
        if used > limit:
            return text[:index]
    return text
