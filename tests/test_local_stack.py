"""End to end over loopback: the real local stack, driven by the SMS and voice simulators."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from devtools.local.stack import LocalStack
from devtools.phones import sms as sms_phone
from devtools.phones import voice as voice_phone
from devtools.phones.twilio_side import post_signed
from devtools.samples import sample
from devtools.samples.events import action_params, call_params, sms_params
from devtools.template import ROOT, resource


@pytest.fixture(scope="module")
def stack():
    # A developer's own settings would change what is under test: the stack gets none of them.
    from devtools.local.stack import PASS_THROUGH

    environ = {k: v for k, v in os.environ.items() if k not in PASS_THROUGH}
    with LocalStack(port=0, log_level="WARNING", environ=environ) as running:
        yield running


def test_tables_and_queues_come_from_the_template(stack):
    import boto3

    table = boto3.client("dynamodb").describe_table(TableName=stack.physical["SessionsTable"])["Table"]
    declared = resource("SessionsTable")["Properties"]
    assert table["KeySchema"] == declared["KeySchema"]
    assert table["StreamSpecification"]["StreamViewType"] == declared["StreamSpecification"]["StreamViewType"]
    assert stack.physical["DispatchDeadLetterQueue"].startswith("http://")


def test_sms_conversation_ends_in_exactly_one_studio_execution(stack):
    before = len(stack.studio.requests)
    out = io.StringIO()
    customer = "+14155550142"

    created = sms_phone.converse_remote(
        ["What are your opening hours?\n", "I want to talk to a real person\n", "hello??\n"],
        out,
        url=stack.url,
        customer=customer,
        prompt=False,
        account_sid=sample.ACCOUNT_SID,
        auth_token=sample.AUTH_TOKEN,
    )

    transcript = out.getvalue()
    assert "agent> We're open Monday to Friday" in transcript
    assert transcript.rstrip().endswith("(no reply: a person has this conversation)")
    mine = [r for r in stack.studio.requests[before:] if r.to == customer]
    assert [r.status for r in mine] == [201] and created >= 1
    execution = mine[0]
    assert execution.flow_sid == sample.FLOW_SID and execution.from_ == sample.AGENT_NUMBER
    assert execution.username == sample.ACCOUNT_SID
    data = json.loads(execution.parameters)["HandoffData"]
    assert set(data) == {"conversationId", "storeId", "profileId", "attributes"}
    assert data["attributes"]["reason"] == "The customer asked to speak with a human agent."
    assert [h["status"] for h in stack.handoffs() if h["to"] == customer] == ["delivered"]


def test_call_ends_with_handoff_data_and_routing_twiml(stack):
    out = io.StringIO()

    result = asyncio.run(
        voice_phone.place_call(
            ["What are your opening hours?", "press 0"],
            out,
            url=stack.url,
            account_sid=sample.ACCOUNT_SID,
            auth_token=sample.AUTH_TOKEN,
        )
    )

    assert result.handshake_status == 101
    texts = [f for f in result.frames if f["type"] == "text"]
    assert texts and all(isinstance(f["token"], str) for f in texts)
    assert result.frames[-1]["type"] == "end"
    payload = json.loads(result.end["handoffData"])
    assert payload["attributes"]["reason"] == "The caller pressed 0 to speak with a person."
    routing = result.twiml[-1]
    assert "<Redirect" in routing and f"Flows/{sample.FLOW_SID}" in routing


def test_bad_signatures_are_refused_at_every_entry_point(stack):
    wrong = "wrong_token_0123456789abcdef"
    sms = sms_params(account_sid=sample.ACCOUNT_SID, body="I need a human")
    call = call_params(account_sid=sample.ACCOUNT_SID, call_sid="CA" + "7" * 32, caller="+1415", agent="+1415")
    action = action_params(
        account_sid=sample.ACCOUNT_SID, call_sid="CA" + "7" * 32, caller="+1", agent="+1", session_status="failed"
    )
    for path, params in (("/sms", sms), ("/voice", call), ("/voice/action", action)):
        status, body = post_signed(stack.url + path, params, wrong)
        assert status == 403, (path, body)
        assert "Traceback" not in body
    out = io.StringIO()
    refused = asyncio.run(
        voice_phone.place_call(
            ["I need a human"],
            out,
            url=stack.url,
            account_sid=sample.ACCOUNT_SID,
            auth_token=sample.AUTH_TOKEN,
            handshake_signature=base64.b64encode(b"not the signature").decode(),
        )
    )
    assert refused.handshake_status == 403 and refused.frames == []


def test_make_local_prints_the_urls_and_stops_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    env["PYTHONPATH"] = f"{ROOT / 'layers' / 'core' / 'python'}:{ROOT}"
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.local.stack", "--port", "0", "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "make call URL=" in line:
            break
    banner = "".join(lines)
    assert "Messaging webhook  POST http://127.0.0.1:" in banner and "/voice" in banner
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert "Stopping the local stack" in process.stdout.read()


def test_a_setup_that_does_not_repeat_its_binding_has_its_socket_closed(stack):
    """Over a real WebSocket: the relay refuses the setup and the gateway closes the socket (DELETE @connections)."""
    import uuid
    import xml.etree.ElementTree as ET

    import aiohttp
    from twilio.request_validator import RequestValidator

    call_sid = "CA" + uuid.uuid4().hex
    params = call_params(account_sid=sample.ACCOUNT_SID, call_sid=call_sid, caller="+14155550123", agent="+14155550199")
    status, twiml = post_signed(stack.url + "/voice", params, sample.AUTH_TOKEN)
    assert status == 200
    relay = ET.fromstring(twiml).find("Connect/ConversationRelay")
    url, binding = relay.get("url"), {p.get("name"): p.get("value") for p in relay.findall("Parameter")}["binding"]
    assert url.endswith(f"?binding={binding}")

    async def call_with(setup_binding: str) -> list:
        signature = RequestValidator(sample.AUTH_TOKEN).compute_signature(url, {})
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, headers={"X-Twilio-Signature": signature}) as ws,
        ):
            await ws.send_json(
                {
                    "type": "setup",
                    "sessionId": "VX" + uuid.uuid4().hex,
                    "callSid": call_sid,
                    "accountSid": sample.ACCOUNT_SID,
                    "from": "+14155550123",
                    "to": "+14155550199",
                    "customParameters": {"binding": setup_binding},
                }
            )
            await ws.send_json({"type": "prompt", "voicePrompt": "What are your opening hours?", "last": True})
            received = []
            while True:
                message = await ws.receive(timeout=10)
                if message.type != aiohttp.WSMsgType.TEXT:
                    return [*received, message.type]
                received.append(json.loads(message.data))

    # Closed by the product, before any frame: the caller's real socket would carry on.
    assert asyncio.run(call_with(binding[:-1] + ("A" if binding[-1] != "A" else "B"))) == [aiohttp.WSMsgType.CLOSE]
