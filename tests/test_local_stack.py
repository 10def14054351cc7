"""End to end over loopback: the real local stack, driven by the SMS and voice simulators."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
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
    assert transcript.rstrip().endswith("so the agent stays silent until the hold ends; /release gives it back)")
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


def test_release_with_the_session_token_gives_the_conversation_back(stack):
    from devtools.phones import release as releasing

    customer = "+14155550143"
    out = io.StringIO()
    lines = ["I want a human\n", "/release\n", "What are your opening hours?\n", "/release\n"]

    started = sms_phone.converse_remote(
        lines,
        out,
        url=stack.url,
        customer=customer,
        prompt=False,
        account_sid=sample.ACCOUNT_SID,
        auth_token=sample.AUTH_TOKEN,
        release_token=stack.release_token,
    )

    transcript = out.getvalue()
    assert started == 1
    assert f"[release] released: {customer}'s next message goes to the agent again" in transcript
    assert "agent> We're open Monday to Friday" in transcript.split("[release] released", 1)[1]
    assert f"[release] {customer} has no conversation with a person: nothing to release" in transcript
    assert len(stack.release_token) >= 24  # what the release function requires
    status, _ = releasing.release(stack.url, customer, token="wrong" * 8, agent=sample.AGENT_NUMBER)
    assert status == 403


def test_a_session_counts_its_own_executions_not_the_stack_s(stack):
    def session(customer: str) -> int:
        return sms_phone.converse_remote(
            ["I want a human\n"],
            io.StringIO(),
            url=stack.url,
            customer=customer,
            prompt=False,
            account_sid=sample.ACCOUNT_SID,
            auth_token=sample.AUTH_TOKEN,
        )

    assert [session("+14155550144"), session("+14155550145")] == [1, 1]
    assert len(stack.studio.created) >= 2


def start_stack(tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    """`make local`'s process; returns it and its banner once it listens."""
    from devtools.local.stack import PASS_THROUGH

    # Not even what the module's running stack put in this process's environment (PUBLIC_BASE_URL...).
    env = {k: v for k, v in os.environ.items() if k not in PASS_THROUGH and not k.startswith("TWILIO_")}
    env["PYTHONPATH"] = f"{ROOT / 'layers' / 'core' / 'python'}:{ROOT}"
    env["LOCAL_STATE_DIR"] = str(tmp_path / "state")
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.local.stack", "--port", "0", *args],
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
        if "The functions' logs follow" in line:
            break
    return process, "".join(lines)


def test_make_local_prints_the_urls_and_stops_on_ctrl_c(tmp_path):
    process, banner = start_stack(tmp_path, "--log-level", "WARNING")

    assert "Messaging webhook  POST http://127.0.0.1:" in banner and "/voice" in banner
    token = re.search(r"Release token: +(\S+)", banner).group(1)
    saved = json.loads((tmp_path / "state" / "stack.json").read_text())
    assert saved["release_token"] == token and banner.count(saved["url"]) >= 1  # make sms and make release find it
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert "Stopping the local stack" in process.stdout.read()
    assert not (tmp_path / "state" / "stack.json").exists()


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


@pytest.mark.parametrize("raw", [False, True], ids=["for-people", "json"])
def test_make_local_shows_the_functions_logs_one_line_per_event(tmp_path, raw):
    process, banner = start_stack(tmp_path, *(["--json"] if raw else []))
    try:
        url = re.search(r"Gateway: +(\S+)", banner).group(1)
        params = sms_params(account_sid=sample.ACCOUNT_SID, body="What are your opening hours?")
        assert post_signed(f"{url}/sms", params, sample.AUTH_TOKEN)[0] == 200
        line = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and " replied" not in line and '"replied"' not in line:
            line = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    if raw:
        record = json.loads(line)
        assert record["message"] == "replied" and record["service"] == "inbound-sms"
    else:
        assert re.match(r"^\d\d:\d\d:\d\d\.\d{3} inbound-sms +replied  message_sid=SM", line), line
        assert "customer=+14*******00" in line and "{" not in line


def test_the_simulators_views_are_not_served_through_a_tunnel(stack):
    import urllib.error
    import urllib.request

    from devtools.local.stack import HANDOFFS_PATH, STUDIO_PATH
    from devtools.phones.twilio_side import get_json

    for path in (STUDIO_PATH, HANDOFFS_PATH):
        assert isinstance(get_json(stack.url + path), list)
        tunnelled = urllib.request.Request(  # noqa: S310 - the local stack's own http URL
            stack.url + path, headers={"X-Forwarded-For": "203.0.113.7"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(tunnelled, timeout=10)  # noqa: S310
        assert refused.value.code == 404


def test_a_scripted_interrupt_is_sent_while_the_agent_answers_and_quiet_frames_are_said(stack):
    out = io.StringIO()

    result = asyncio.run(
        voice_phone.place_call(
            ["How do I track my order?", "interrupt You can track", "press 5", "hangup"],
            out,
            url=stack.url,
            account_sid=sample.ACCOUNT_SID,
            auth_token=sample.AUTH_TOKEN,
        )
    )

    transcript = out.getvalue()
    first_words = transcript.index('[frame] {"type":"text"')
    interrupted = transcript.index("you> interrupt You can track\n   [interrupt] sent while the agent was speaking")
    assert first_words < interrupted < transcript.index("agent> You can track an order")
    assert "you> press 5\n   (nothing came back within 3 s)" in transcript
    assert result.end is None and transcript.count("you> ") == 4  # each line once, hangup too
