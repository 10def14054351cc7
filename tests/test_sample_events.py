"""events/: current, correctly signed, and served by each function the way sam local invoke would."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from agent_handoff import wiring
from conftest import load_handler
from devtools.samples import make_events, sample
from devtools.template import ROOT

EVENTS = ROOT / "events"


def event(name):
    return json.loads((EVENTS / name).read_text())


def test_events_are_up_to_date():
    assert make_events.main(["--check"]) == 0


@pytest.fixture
def sam_env(aws, monkeypatch):
    """The environment `--env-vars events/env.json` gives every function."""
    for key, value in event("env.json")["Parameters"].items():
        monkeypatch.setenv(key, value)
    wiring.reset()
    return aws


def test_env_json_holds_the_credentials_the_samples_were_signed_with():
    params = event("env.json")["Parameters"]
    assert params["TWILIO_AUTH_TOKEN"] == sample.AUTH_TOKEN and params["TWILIO_ACCOUNT_SID"] == sample.ACCOUNT_SID


def test_sms_samples(sam_env, lambda_context):
    app = load_handler("inbound_sms")
    ordinary = app.handler(event("sms-message.json"), lambda_context)
    human = app.handler(event("sms-human.json"), lambda_context)
    assert ordinary["statusCode"] == human["statusCode"] == 200
    assert "Monday" in ET.fromstring(ordinary["body"]).find("Message").text
    assert "person" in ET.fromstring(human["body"]).find("Message").text


def test_dispatch_sample(sam_env, studio, lambda_context):
    from agent_handoff.storage.dynamo import plain_item

    image = event("dispatch-stream.json")["Records"][0]["dynamodb"]["NewImage"]
    sam_env.dynamodb.put_item(TableName=sample.TABLE_NAME, Item=image)  # the record the sample points at

    result = load_handler("handoff_dispatch").handler(event("dispatch-stream.json"), lambda_context)

    assert result == {"batchItemFailures": []}
    (execution,) = studio.created
    assert execution.handoff_data == json.loads(plain_item(image)["payload"])


def test_voice_samples_play_a_whole_call(sam_env, lambda_context, monkeypatch):
    from devtools.fakes.connections import ConnectionsEndpoint

    incoming, relay, action = (load_handler(d) for d in ("incoming_call", "voice_relay", "voice_action"))
    with ConnectionsEndpoint() as connections:
        monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", connections.url)
        wiring.reset()
        answer = incoming.handler(event("voice-incoming-call.json"), lambda_context)
        assert answer["statusCode"] == 200 and "<ConversationRelay" in answer["body"]
        assert relay.handler(event("relay-connect.json"), lambda_context) == {"statusCode": 200}
        for name in (
            "relay-setup.json",
            "relay-prompt.json",
            "relay-interrupt.json",
            "relay-dtmf.json",
            "relay-disconnect.json",
        ):
            assert relay.handler(event(name), lambda_context) == {"statusCode": 200}, name
        connection = event("relay-connect.json")["requestContext"]["connectionId"]
        frames = connections.messages(connection)
        assert frames[0]["type"] == "text" and frames[-1]["type"] == "end"  # the prompt's answer, then 0 pressed

    for name, expected in (
        ("voice-action-handoff.json", "<Redirect"),
        ("voice-action-hangup.json", "<Response />"),
        ("voice-action-failed.json", "<Redirect"),
    ):
        response = action.handler(event(name), lambda_context)
        assert response["statusCode"] == 200 and expected in response["body"], (name, response["body"])


def test_relay_prompt_for_a_human_sample(sam_env, lambda_context, monkeypatch):
    from devtools.fakes.connections import ConnectionsEndpoint

    incoming, relay = load_handler("incoming_call"), load_handler("voice_relay")
    with ConnectionsEndpoint() as connections:
        monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", connections.url)
        wiring.reset()
        incoming.handler(event("voice-incoming-call.json"), lambda_context)
        for name in ("relay-connect.json", "relay-setup.json", "relay-prompt-human.json"):
            relay.handler(event(name), lambda_context)
        connection = event("relay-connect.json")["requestContext"]["connectionId"]
        assert [f["type"] for f in connections.messages(connection)][-1] == "end"
