"""The Studio Flow in the repository: current, well-formed, and reading what the product sends."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from devtools.samples import studio_flow


def test_committed_flow_is_current():
    assert studio_flow.FLOW_FILE.read_text() == studio_flow.render()


def test_flow_is_well_formed():
    definition = json.loads(studio_flow.render())
    names = {state["name"] for state in definition["states"]}
    assert definition["initial_state"] == "Trigger" and len(names) == len(definition["states"])
    for state in definition["states"]:
        for transition in state["transitions"]:
            assert transition.get("next", "Trigger") in names, (state["name"], transition)


def test_sms_reads_the_rest_trigger_payload_and_voice_reads_the_redirect_return():
    states = {s["name"]: s for s in json.loads(studio_flow.render(workflow="WW" + "1" * 32))["states"]}
    trigger = {t["event"]: t.get("next") for t in states["Trigger"]["transitions"]}
    assert trigger["incomingRequest"] == "sms_to_flex" and trigger["incomingCall"] == "ai_agent"
    assert "{{flow.data.HandoffData.attributes.reason | to_json}}" in states["sms_to_flex"]["properties"]["attributes"]
    redirect = states["ai_agent"]
    assert redirect["properties"]["url"].endswith("/voice?FlowSid={{flow.flow_sid}}")
    assert {t["event"]: t.get("next") for t in redirect["transitions"]}["return"] == "voice_to_flex"
    voice = states["voice_to_flex"]["properties"]
    # The product's resume_studio_flow puts exactly these names in the return URL's query.
    for name in ("HandoffData", "reason", "conversationId"):
        assert f"widgets.ai_agent.{name}" in voice["attributes"]
    assert voice["workflow"] == "WW" + "1" * 32


def test_product_return_url_carries_what_the_flow_reads():
    from urllib.parse import parse_qs, urlsplit

    from agent_handoff.handoff import build_payload
    from agent_handoff.voice.twiml import resume_studio_flow

    payload = build_payload(conversation_id="conv_1", reason="Billing dispute", routing_attributes={})
    twiml = resume_studio_flow(account_sid="AC" + "0" * 32, flow_sid="FW" + "0" * 32, payload=payload)
    url = twiml.split('<Redirect method="POST">')[1].split("</Redirect>")[0].replace("&amp;", "&")
    query = parse_qs(urlsplit(url).query)
    assert set(query) == {"FlowEvent", "HandoffData", "reason", "conversationId"}


def test_every_value_enters_the_task_attributes_through_to_json():
    """No template copies a value between quotes by hand (the customer's address aside, which Twilio fills)."""
    import re

    states = {s["name"]: s for s in json.loads(studio_flow.render())["states"]}
    for name in ("sms_to_flex", "voice_to_flex"):
        template = states[name]["properties"]["attributes"]
        raw = re.findall(r'"\{\{([^}]*)\}\}"', template)
        assert raw in (["contact.channel.address"], ["trigger.call.From"]), (name, raw)


@given(st.text(max_size=400))
def test_a_reason_reads_the_same_through_to_json_and_through_a_hand_quoted_tac_template(reason):
    """Flows built for TAC quote `{{...reason}}` by hand; ours use to_json: both read the payload's reason alike."""
    from agent_handoff.handoff import build_payload

    cleaned = build_payload(conversation_id="conv_1", reason=reason, routing_attributes={}).attributes["reason"]
    assert json.loads(f'"{cleaned}"') == json.loads(json.dumps(cleaned)) == cleaned
