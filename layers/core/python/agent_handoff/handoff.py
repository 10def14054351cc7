"""The HandoffPayload and the `handoff` tool, in the wire shapes of Twilio Agent Connect.

A Studio Flow built for TAC reads `{{flow.data.HandoffData.attributes.reason}}`; these
models produce exactly the JSON it expects.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
        }
    },
    "required": ["reason"],
    "additionalProperties": False,
}

Channel = Literal["SMS", "VOICE"]


class HandoffPayload(BaseModel):
    """TAC's HandoffPayload: unknown values are empty strings, never null."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    conversation_id: str = Field(alias="conversationId")
    store_id: str = Field("", alias="storeId")
    profile_id: str = Field("", alias="profileId")
    attributes: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    def studio_parameters(self) -> str:
        """The Studio Executions `Parameters` field: the flow reads it as `flow.data.HandoffData`."""
        return json.dumps({"HandoffData": self.model_dump(by_alias=True)}, separators=(",", ":"))


def build_payload(
    *,
    conversation_id: str,
    reason: str,
    routing_attributes: dict[str, Any],
    store_id: str = "",
    profile_id: str = "",
) -> HandoffPayload:
    return HandoffPayload(
        conversation_id=conversation_id,
        store_id=store_id or "",
        profile_id=profile_id or "",
        attributes={**routing_attributes, "reason": reason},
    )


def tool_result(channel: Channel, error: str | None = None) -> dict[str, str]:
    """What the LLM is told; it must never hear of a success that did not happen."""
    if error is not None:
        return {"status": "handoff_failed", "channel": channel, "error": error}
    return {"status": "handoff_initiated", "channel": channel}
