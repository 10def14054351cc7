"""The wire formats parse with the twilio-agent-connect package's own models."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TAC_ANALYTICS_DISABLED", "true")

from tac.models.handoff import HandoffPayload as TacHandoffPayload
from tac.tools.handoff import DEFAULT_HANDOFF_TOOL_NAME

from agent_handoff.handoff import HANDOFF_TOOL_NAME, HANDOFF_TOOL_PARAMETERS, build_payload, tool_result

PAYLOAD = build_payload(
    conversation_id="conv_123",
    reason="Billing dispute",
    routing_attributes={"department": "billing", "priority": "high"},
)


def test_payload_json_is_a_tac_handoff_payload():
    tac = TacHandoffPayload.model_validate_json(PAYLOAD.to_json())
    assert tac.conversation_id == "conv_123"
    assert tac.memory_store_id == "" and tac.profile_id == ""
    assert tac.attributes == {"department": "billing", "priority": "high", "reason": "Billing dispute"}
    # And byte for byte what TAC itself would send.
    assert json.loads(tac.model_dump_json(by_alias=True)) == json.loads(PAYLOAD.to_json())


def test_studio_parameters_carry_handoff_data_like_tac():
    parameters = json.loads(PAYLOAD.studio_parameters())
    assert list(parameters) == ["HandoffData"]
    tac = TacHandoffPayload.model_validate(parameters["HandoffData"])
    assert tac.attributes["reason"] == "Billing dispute"
    expected = json.loads(json.dumps({"HandoffData": tac.model_dump(by_alias=True)}))
    assert parameters == expected


def test_tool_matches_tac():
    assert HANDOFF_TOOL_NAME == DEFAULT_HANDOFF_TOOL_NAME
    assert list(HANDOFF_TOOL_PARAMETERS["properties"]) == ["reason"]
    assert tool_result("SMS") == {"status": "handoff_initiated", "channel": "SMS"}
    assert tool_result("SMS", error="boom") == {"status": "handoff_failed", "channel": "SMS", "error": "boom"}
