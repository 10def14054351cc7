"""The HandoffPayload and the `handoff` tool, in the wire shapes of Twilio Agent Connect.

A Studio Flow built for TAC reads `{{flow.data.HandoffData.attributes.reason}}`; the payload
below produces exactly the JSON it expects (tests hold it to TAC's own pydantic model). It is a
plain dataclass because every function that hands off would otherwise import pydantic on its
cold start for four fields. Every payload built here, and every one handed to Studio or Flex,
carries no card number and fits Flex's task attributes (`payload_limits` has the rule).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .pan_redaction import redact_pans
from .payload_limits import fit, shorten

HANDOFF_TOOL_NAME = "handoff"
HANDOFF_TOOL_DESCRIPTION = (
    "Hand off the conversation to a human agent. Use this when the customer asks for a "
    "person, when you cannot resolve their issue after two attempts, for billing disputes "
    "or account security, or when the customer is frustrated."
)
HANDOFF_TOOL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {
            "type": "string",
            "description": "Why the conversation needs a human, in one sentence for the human agent.",
        },
        "summary": {
            "type": "string",
            "description": (
                "For the human agent, in a few sentences: what the customer needs and what has been tried so far."
            ),
        },
    },
    "required": ["reason"],
    "additionalProperties": False,
}

Channel = Literal["SMS", "VOICE"]
# The summary's own bound, before Flex's limit may shorten it further (payload_limits).
SUMMARY_MAX = 500
_BLANKS = re.compile(r"[\s\x00-\x1f\x7f]+")


class InvalidPayload(ValueError):
    """JSON that is not a HandoffPayload."""


@dataclass(frozen=True)
class HandoffPayload:
    """TAC's HandoffPayload: unknown values are empty strings, never null."""

    conversation_id: str
    store_id: str = ""
    profile_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """The payload under TAC's field names, in TAC's order."""
        return {
            "conversationId": self.conversation_id,
            "storeId": self.store_id,
            "profileId": self.profile_id,
            "attributes": self.attributes,
        }

    def to_json(self) -> str:
        return json.dumps(self.wire(), separators=(",", ":"), ensure_ascii=False)

    def studio_parameters(self, handoff_id: str = "") -> str:
        """The Studio Executions `Parameters` field: the flow reads it as `flow.data.HandoffData`.

        `handoff_id` rides beside it (`flow.data.handoffId`, which TAC flows never read), so that an
        execution whose creation was not confirmed can be found by the handoff that started it.
        """
        parameters: dict[str, Any] = {"HandoffData": self.fitted().wire()}
        if handoff_id:
            parameters["handoffId"] = handoff_id
        return json.dumps(parameters, separators=(",", ":"), ensure_ascii=False)

    def fitted(self, caller: str = "") -> HandoffPayload:
        """This payload without card numbers and within Flex's limit (an equal one when it already is)."""
        return HandoffPayload._of(fit(self.wire(), caller=caller))

    @classmethod
    def _of(cls, wire: dict[str, Any]) -> HandoffPayload:
        return cls(wire["conversationId"], wire["storeId"], wire["profileId"], wire["attributes"])

    @classmethod
    def from_json(cls, text: str | bytes) -> HandoffPayload:
        """Parse a payload we stored or sent, checking every field's type as TAC's model does."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidPayload("not JSON") from None
        if not isinstance(data, dict):
            raise InvalidPayload("not a JSON object")
        values = {
            name: data.get(key, data.get(name, default))  # TAC's model accepts either spelling
            for name, key, default in (
                ("conversation_id", "conversationId", None),
                ("store_id", "storeId", ""),
                ("profile_id", "profileId", ""),
            )
        }
        for name, value in values.items():
            if not isinstance(value, str):
                raise InvalidPayload(f"{name} must be a string")
        attributes = data.get("attributes", {})
        if not isinstance(attributes, dict):
            raise InvalidPayload("attributes must be an object")
        return cls(attributes=attributes, **values)


def build_payload(
    *,
    conversation_id: str,
    reason: str,
    routing_attributes: dict[str, Any],
    store_id: str = "",
    profile_id: str = "",
    summary: str = "",
    transcript_url: str = "",
) -> HandoffPayload:
    """TAC's payload: the routing attributes, `reason`, and for the human `summary` and `transcriptUrl` when known."""
    attributes = {**routing_attributes, "reason": reason}
    summary = bounded_summary(summary)
    if summary:
        attributes["summary"] = summary
    if transcript_url:
        attributes["transcriptUrl"] = transcript_url
    return HandoffPayload(
        conversation_id=conversation_id,
        store_id=store_id or "",
        profile_id=profile_id or "",
        attributes=attributes,
    ).fitted()


def bounded_summary(text: str) -> str:
    """One paragraph of at most SUMMARY_MAX characters, cut at a word, card numbers removed before the cut
    (a cut could leave part of a card number that no longer looks like one)."""
    return shorten(redact_pans(_BLANKS.sub(" ", text or "").strip()), SUMMARY_MAX)


def tool_result(channel: Channel, error: str | None = None) -> dict[str, str]:
    """What the LLM is told; it must never hear of a success that did not happen."""
    if error is not None:
        return {"status": "handoff_failed", "channel": channel, "error": error}
    return {"status": "handoff_initiated", "channel": channel}
