"""Adversarial review of the voice side of issues #12 and #13: each test shows a promise that does not hold.

Faults are injected where the other suites inject them: at the SDK boundary (the DynamoDB client's
methods raising botocore errors, or an exception no `except Exception` catches, standing for the
runtime ending the invocation), by replaying signed requests as they were captured, and by callers
whose addresses the product does not expect.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError

from agent_handoff import wiring
from devtools.phones.voice_caller import VoiceCall
from devtools.samples.events import action_params, http_api_event


class InvocationKilled(BaseException):
    """The runtime ending an invocation (timeout, crash): no handler code may catch it."""


def throttled(operation: str) -> ClientError:
    error = {"Code": "ThrottlingException", "Message": "Rate of requests exceeds the allowed throughput."}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


def ends(call: VoiceCall) -> list[dict]:
    return [f for f in call.frames if f["type"] == "end"]


def record(aws, call_sid: str) -> dict:
    return next(item for item in aws.items("CALL#") if item["callSid"] == call_sid)


def fail_next(monkeypatch, client, operation: str, fault: BaseException) -> list[dict]:
    """The next call of `operation` on the DynamoDB client raises `fault`; later ones go through."""
    real = getattr(client, operation)
    seen: list[dict] = []

    def once(**kwargs):
        if not seen:
            seen.append(kwargs)
            raise fault
        return real(**kwargs)

    monkeypatch.setattr(client, operation, once)
    return seen


# -- 1. a setup that failed once leaves the call deaf for good (#12: DTMF 0 always works) -------------


@pytest.mark.parametrize(
    "fault",
    [throttled("TransactWriteItems"), InvocationKilled()],
    ids=["dynamodb-throttled-past-the-sdk-retries", "invocation-killed"],
)
def test_a_setup_whose_write_failed_once_leaves_the_caller_unanswered_even_on_dtmf_0(
    voice_call, aws, connections, monkeypatch, fault
):
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200
    failed = fail_next(monkeypatch, wiring.call_store()._client, "transact_write_items", fault)

    if isinstance(fault, InvocationKilled):
        with pytest.raises(InvocationKilled):
            call.setup()
    else:
        assert call.setup() == []
    assert failed, "the setup's write was not reached"

    # The caller heard the welcome greeting (Twilio speaks it) and now asks for a person, then presses 0.
    heard = call.say("I want to speak to a person please") + call.press("0") + call.press("0")

    # What the caller is owed: a person (an `end`), or at least the socket closed so that Twilio's
    # action callback (SessionStatus=failed) reconnects or routes the call. Neither happens: every
    # frame is dropped as "before setup", for as long as the caller stays on the line.
    assert ends(call) or call.connection_id in connections.deleted, (
        f"caller pressed 0 twice and got {heard!r}; socket still open, no action callback will come"
    )



# -- 2. a replayed action callback drives a live call into silence (#13; README: "a replayed request is harmless")


def test_a_replayed_action_callback_silences_the_live_call_on_its_new_socket(voice_call, aws, connections):
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    assert "Monday" in VoiceCall.spoken(call.say("What are your opening hours?"))

    # The socket drops once (64105); Twilio posts the signed action callback and the product reconnects.
    captured: list[dict] = []
    real_handler = call.functions.voice_action.handler

    def recording(event, context):
        captured.append(json.loads(json.dumps(event)))
        return real_handler(event, context)

    call.functions.voice_action.handler = recording
    try:
        twiml = call.drop()
    finally:
        call.functions.voice_action.handler = real_handler
    assert "<ConversationRelay" in twiml
    call.reconnect_from(twiml)
    assert call.connect() == 200 and call.setup() == []
    assert "Monday" in VoiceCall.spoken(call.say("When are you open on Saturday?"))  # the call goes on

    # Someone who saw that one signed request (a proxy log, a debug dump) posts it again, byte for byte.
    (replayed,) = captured
    response = call.functions.voice_action.handler(replayed, call.context)
    assert response["statusCode"] == 200  # accepted: the signature is Twilio's own

    # The real caller, still on the line on the new socket, is answered no more: not a question,
    # not "a person please", not 0. The TwiML that would have routed the call went to the replayer.
    heard = call.say("What are your opening hours?") + call.say("I want to speak to a person") + call.press("0")
    assert heard, (
        f"after one replayed action callback the live call is {record(aws, call.call_sid)['handoffState']!r} "
        "and every frame gets silence"
    )


# -- 3. the action callback after the `end`: one DynamoDB throttle hangs up on the caller (#12) ---------


@pytest.mark.parametrize(
    ("operation", "fault"),
    [("get_item", throttled("GetItem")), ("update_item", throttled("UpdateItem"))],
    ids=["reading-the-call", "marking-it-routed"],
)
def test_an_action_callback_carrying_handoff_data_is_not_routed_when_dynamodb_throttles_once(
    voice_call, aws, connections, monkeypatch, operation, fault
):
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    frames = call.say("I want to speak to a person")
    assert "stay on the line" in VoiceCall.spoken(frames) and frames[-1]["type"] == "end"  # the promise

    # Twilio ends the session and POSTs the action URL with HandoffData: everything needed to
    # route the call is in the request. One DynamoDB call of the callback is throttled past the SDK's retries.
    fail_next(monkeypatch, wiring.call_store()._client, operation, fault)
    url = urlsplit(call.action_url)
    params = action_params(
        account_sid=call.account_sid,
        call_sid=call.call_sid,
        caller=call.caller,
        agent=call.agent,
        session_status="ended",
        handoff_data=frames[-1]["handoffData"],
        session_id=call.session_id,
    )
    event = http_api_event(url.path, params, auth_token=call.auth_token, host=url.netloc, query=url.query)
    response = call.functions.voice_action.handler(event, call.context)

    # Twilio does not retry an action URL that answered 5xx: the caller who was told a person is
    # coming hears "an application error has occurred" and the call ends.
    assert response["statusCode"] == 200 and re.search(r"<(Redirect|Enqueue)", response["body"]), (
        f"action callback answered {response['statusCode']}: the caller promised a person is hung up on"
    )


# -- 4. "agent please" and 0 at once: the caller who pressed 0 is told to try again later (#12) ----------

import threading  # noqa: E402

ASKED = "The customer asked to speak with a human agent."
PRESSED = "The caller pressed 0 to speak with a person."


def test_pressing_0_while_another_frame_stores_the_handoff_and_dies_tells_the_caller_to_try_again_later(
    voice_call, aws, connections, monkeypatch
):
    """Two frames of one call run at once, as API Gateway invokes them: the caller says "agent please"
    and presses 0. Both claim their turn before either stores its handoff; the speech frame's store
    lands first and its invocation is then ended by the runtime (killed right after the write).
    The 0 frame's own store finds the handoff already there."""
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    client = wiring.call_store()._client
    real_update = client.update_item
    speech_at_store, zero_at_store = threading.Event(), threading.Event()
    speech_done = threading.Event()

    def update_item(**kwargs):
        reason = (kwargs.get("ExpressionAttributeValues") or {}).get(":reason", {}).get("S")
        if reason == ASKED:  # the speech frame storing its handoff
            speech_at_store.set()
            assert zero_at_store.wait(10)
            real_update(**kwargs)
            raise InvocationKilled()  # the write landed; the invocation ends before it says or sends anything
        if reason == PRESSED:  # the 0 frame storing its handoff, a moment later
            zero_at_store.set()
            assert speech_done.wait(10)
        return real_update(**kwargs)

    monkeypatch.setattr(client, "update_item", update_item)

    def speech():
        try:
            call.say("agent please")
        except InvocationKilled:
            pass
        finally:
            speech_done.set()

    speaker = threading.Thread(target=speech)
    speaker.start()
    assert speech_at_store.wait(10)

    heard = call.press("0")
    speaker.join(10)

    assert record(aws, call.call_sid)["handoffState"] == "pending"  # a person is owed to this caller
    spoken = VoiceCall.spoken(heard)
    assert "try again in a few minutes" not in spoken and ends(call), (
        f"the caller pressed 0 and heard {spoken!r}, and no `end` was sent: they hang up to call back later"
    )
