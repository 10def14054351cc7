"""events/: current, correctly signed, and served by each function the way sam local invoke would."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from agent_handoff import wiring
from conftest import load_handler
from devtools import make_events, sample
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
    from agent_handoff.dynamo import plain_item

    image = event("dispatch-stream.json")["Records"][0]["dynamodb"]["NewImage"]
    sam_env.dynamodb.put_item(TableName=sample.TABLE_NAME, Item=image)  # the record the sample points at

    result = load_handler("handoff_dispatch").handler(event("dispatch-stream.json"), lambda_context)

    assert result == {"batchItemFailures": []}
    (execution,) = studio.created
    assert execution.handoff_data == json.loads(plain_item(image)["payload"])
