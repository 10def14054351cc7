"""The wire formats parse with the twilio-agent-connect package's own models."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TAC_ANALYTICS_DISABLED", "true")

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tac.models.handoff import HandoffPayload as TacHandoffPayload
from tac.models.handoff import PendingHandoffData
from tac.tools.base import function_tool
from tac.tools.handoff import DEFAULT_HANDOFF_TOOL_NAME, _handoff_impl

from agent_handoff.handoff import (
    HANDOFF_TOOL_NAME,
    HANDOFF_TOOL_PARAMETERS,
    HandoffPayload,
    InvalidPayload,
    build_payload,
    tool_result,
)

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


def test_tool_matches_tac_and_adds_only_an_optional_summary():
    tac_schema = function_tool(name=DEFAULT_HANDOFF_TOOL_NAME)(_handoff_impl).params_json_schema
    assert HANDOFF_TOOL_NAME == DEFAULT_HANDOFF_TOOL_NAME
    # A call TAC's model would make (reason only) is a valid call of ours; summary is extra and optional.
    assert HANDOFF_TOOL_PARAMETERS["required"] == tac_schema["required"] == ["reason"]
    assert HANDOFF_TOOL_PARAMETERS["properties"]["reason"]["type"] == tac_schema["properties"]["reason"]["type"]
    assert set(HANDOFF_TOOL_PARAMETERS["properties"]) - set(tac_schema["properties"]) == {"summary"}
    assert HANDOFF_TOOL_PARAMETERS["properties"]["summary"]["type"] == "string"
    assert tool_result("SMS") == {"status": "handoff_initiated", "channel": "SMS"}
    assert tool_result("SMS", error="boom") == {"status": "handoff_failed", "channel": "SMS", "error": "boom"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    conversation_id=st.text(max_size=40),
    store_id=st.text(max_size=20),
    reason=st.text(max_size=80),
    attributes=st.dictionaries(st.text(max_size=10).filter(lambda k: k != "reason"), json_values, max_size=4),
)
def test_any_payload_is_what_tac_would_send_and_reads_back(conversation_id, store_id, reason, attributes):
    payload = build_payload(
        conversation_id=conversation_id, reason=reason, routing_attributes=attributes, store_id=store_id
    )
    tac = TacHandoffPayload.model_validate_json(payload.to_json())
    assert json.loads(tac.model_dump_json(by_alias=True)) == json.loads(payload.to_json())
    assert HandoffPayload.from_json(payload.to_json()) == payload


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not JSON"),
        ("[1]", "not a JSON object"),
        ("{}", "conversation_id must be a string"),
        ('{"conversationId": 5}', "conversation_id must be a string"),
        ('{"conversationId": "c", "storeId": null}', "store_id must be a string"),
        ('{"conversationId": "c", "attributes": []}', "attributes must be an object"),
    ],
)
def test_what_is_not_a_payload_is_refused_by_us_and_by_tac(text, problem):
    with pytest.raises(InvalidPayload, match=problem):
        HandoffPayload.from_json(text)
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        TacHandoffPayload.model_validate_json(text)


def test_tac_spelling_and_python_spelling_both_read():
    assert HandoffPayload.from_json('{"conversation_id": "c", "profile_id": "p"}') == HandoffPayload("c", "", "p")


@settings(max_examples=150, deadline=None)
@given(
    reason=st.text(max_size=300),
    summary=st.text(max_size=800),
    token=st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=150),
)
def test_payloads_with_summary_and_transcript_link_are_tac_payloads_on_every_wire(reason, summary, token):
    payload = build_payload(
        conversation_id="conv_0123456789abcdef0123456789abcdef",
        reason=reason,
        routing_attributes={"department": "support", "priority": "normal"},
        summary=summary,
        transcript_url=f"https://abc.execute-api.us-east-1.amazonaws.com/handoff/transcript?t={token}",
    )
    wire = json.loads(payload.to_json())
    assert json.loads(TacHandoffPayload.model_validate(wire).model_dump_json(by_alias=True)) == wire
    studio = json.loads(payload.studio_parameters())["HandoffData"]
    assert TacHandoffPayload.model_validate(studio).attributes == payload.attributes
    end = PendingHandoffData.model_validate({"type": "end", "handoffData": payload.to_json()})
    assert TacHandoffPayload.model_validate_json(end.handoff_data).attributes == payload.attributes
    if "summary" in payload.attributes:
        assert 0 < len(payload.attributes["summary"]) <= 500
