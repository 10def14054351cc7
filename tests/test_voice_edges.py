"""Voice promises at their edges: one lost write, one replayed request, two frames at once.

Each test began as an adversarial reviewer's proof that a promise broke (issues #12 and #13); they
stay as regression tests. Faults are injected where the other suites inject them: at the SDK
boundary (the DynamoDB client's methods raising botocore errors, or an exception no `except
Exception` catches, standing for the runtime ending the invocation), by replaying signed requests
as they were captured, and through the loopback @connections endpoint.
"""

from __future__ import annotations

import json
import re
import threading
import time
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from agent_handoff import wiring
from agent_handoff.agent.turn import TRY_AGAIN
from agent_handoff.voice.calls import STORE_PATIENCE_SECONDS
from agent_handoff.voice.relay import SETUP_GRACE_SECONDS, TROUBLE_LINE
from devtools.phones.voice_caller import VoiceCall
from devtools.samples.events import action_params, http_api_event

ASKED = "The customer asked to speak with a human agent."
PRESSED = "The caller pressed 0 to speak with a person."


class InvocationKilled(BaseException):
    """The runtime ending an invocation (timeout, crash): no handler code may catch it."""


def throttled(operation: str) -> ClientError:
    error = {"Code": "ThrottlingException", "Message": "Rate of requests exceeds the allowed throughput."}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


def unavailable(operation: str) -> ClientError:
    """A failure that is not "busy": not worth sending again (the SDK has retried it already)."""
    error = {"Code": "InternalServerError", "Message": "Internal server error"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}, operation)


def ends(call: VoiceCall) -> list[dict]:
    return [f for f in call.frames if f["type"] == "end"]


def record(aws, call_sid: str) -> dict:
    return next(item for item in aws.items("CALL#") if item["callSid"] == call_sid)


def fail_next(monkeypatch, client, operation: str, fault: BaseException, when=lambda kwargs: True) -> list[dict]:
    """The next call of `operation` on the DynamoDB client for which `when(kwargs)` holds raises
    `fault`; every other call goes through."""
    real = getattr(client, operation)
    seen: list[dict] = []

    def once(**kwargs):
        if not seen and when(kwargs):
            seen.append(kwargs)
            raise fault
        return real(**kwargs)

    monkeypatch.setattr(client, operation, once)
    return seen


def fail_always(monkeypatch, client, operations: tuple[str, ...], fault_for) -> list[str]:
    """DynamoDB down: every call of `operations` fails (the SDK's retries are spent)."""
    failed: list[str] = []
    for operation in operations:

        def broken(_operation=operation, **kwargs):
            failed.append(_operation)
            raise fault_for(_operation)

        monkeypatch.setattr(client, operation, broken)
    return failed


def action_event(call: VoiceCall, status: str, *, session_id: str | None = None, **extra) -> dict:
    """The signed POST ConversationRelay makes to the action URL when a session ends."""
    url = urlsplit(call.action_url)
    params = action_params(
        account_sid=call.account_sid,
        call_sid=call.call_sid,
        caller=call.caller,
        agent=call.agent,
        session_status=status,
        session_id=call.session_id if session_id is None else session_id,
        **extra,
    )
    return http_api_event(url.path, params, auth_token=call.auth_token, host=url.netloc, query=url.query)


def metrics_of(function_logs) -> list[tuple[str, dict]]:
    from test_observability import emitted, lines

    return [(name, dims) for name, dims, _ in emitted(lines(function_logs.readouterr().out))]


@pytest.fixture
def metrics_on(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "AiHandoffTest")


# -- 1. a setup whose write was lost (#12: DTMF 0 always works) ------------------------------------


@pytest.mark.parametrize(
    "fault",
    [throttled("TransactWriteItems"), InvocationKilled()],
    ids=["dynamodb-throttled-past-the-sdk-retries", "invocation-killed"],
)
def test_a_setup_whose_write_failed_once_still_leaves_the_caller_answered_on_dtmf_0(
    voice_call, aws, connections, monkeypatch, fault
):
    """Twilio sends `setup` once. A throttled write is sent again; a write lost with its invocation
    is made up for by the next prompt, which binds the socket through its `$connect` binding."""
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
    # action callback (SessionStatus=failed) reconnects or routes the call.
    assert ends(call) or call.connection_id in connections.deleted, (
        f"caller pressed 0 twice and got {heard!r}; socket still open, no action callback will come"
    )
    assert len(ends(call)) == 1 and "stay on the line" in VoiceCall.spoken(heard)
    item = record(aws, call.call_sid)
    assert item["connectionId"] == call.connection_id and item["handoffState"] == "end_sent"
    if isinstance(fault, InvocationKilled):
        assert "sessionId" not in item  # only `setup` knows it: no callback is judged against a guess
        twiml = call.finish()  # and the callback of the session it never recorded routes the call
        assert "<Redirect" in twiml and record(aws, call.call_sid)["handoffState"] == "routed"


def test_a_setup_the_store_keeps_refusing_closes_the_socket_and_the_callback_reconnects(
    voice_call, aws, connections, monkeypatch, function_logs, metrics_on
):
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200
    fail_next(monkeypatch, wiring.call_store()._client, "transact_write_items", unavailable("TransactWriteItems"))
    function_logs.readouterr()

    assert call.setup() == []

    assert call.connection_id in connections.deleted  # Twilio now posts the action callback
    assert ("VoiceStoreFaults", {"step": "setup"}) in metrics_of(function_logs)
    twiml = call.session_ends("failed", error_code="64105")
    assert "<ConversationRelay" in twiml
    call.reconnect_from(twiml)
    assert call.connect() == 200 and call.setup() == []
    assert "Monday" in VoiceCall.spoken(call.say("What are your opening hours?"))


def test_a_prompt_on_a_socket_without_setup_is_answered_only_for_the_call_its_binding_named(voice_call, aws):
    """Binding without `setup` is no way around its check: after `setup`'s grace, the socket is
    bound to the CallSid its `$connect` binding was signed for, nothing else."""
    victim, attacker = voice_call(), voice_call()
    assert victim.dial()["statusCode"] == 200 and victim.connect() == 200 and victim.setup() == []
    assert attacker.dial()["statusCode"] == 200 and attacker.connect() == 200  # a call of its own
    started = time.monotonic()

    frames = attacker.send(
        {"type": "prompt", "voicePrompt": "What are your opening hours?", "lang": "en-US", "last": True}
    )

    assert time.monotonic() - started >= SETUP_GRACE_SECONDS  # a setup still on its way had its chance
    assert "Monday" in VoiceCall.spoken(frames)
    assert record(aws, attacker.call_sid)["connectionId"] == attacker.connection_id
    assert record(aws, victim.call_sid)["connectionId"] == victim.connection_id
    assert "Monday" in VoiceCall.spoken(victim.say("What are your opening hours?"))


def test_a_socket_without_setup_never_takes_a_call_that_has_its_own(voice_call, aws, connections):
    """A second socket that got in with another valid binding of a live call (a replay race) and
    sends no `setup`: its prompts bind nothing, and the call stays on its own socket."""
    call, intruder = voice_call(), voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    spare = wiring.relay_bindings().issue(call.call_sid)
    intruder.call_sid, intruder.relay_url = call.call_sid, f"{call.relay_url.split('?')[0]}?binding={spare}"
    assert intruder.connect() == 200
    before = aws.items()

    assert intruder.say("agent please") == [] and intruder.press("0") == []

    assert aws.items() == before
    assert "Monday" in VoiceCall.spoken(call.say("What are your opening hours?"))


def test_a_socket_whose_setup_was_refused_is_never_bound_later(voice_call, aws, connections, monkeypatch):
    """Even when closing it failed: its next frames find the refusal on record."""
    victim, attacker = voice_call(), voice_call()
    assert victim.dial()["statusCode"] == 200 and victim.connect() == 200 and victim.setup() == []
    assert attacker.dial()["statusCode"] == 200 and attacker.connect() == 200
    from agent_handoff.voice.sender import ApiGatewaySender

    monkeypatch.setattr(ApiGatewaySender, "close", lambda self: None)  # DeleteConnection lost
    attacker.parameters["binding"] = victim.parameters["binding"]  # a setup naming another binding

    assert attacker.setup() == []

    assert attacker.say("agent please") == [] and attacker.press("0") == []
    assert "connectionId" not in record(aws, attacker.call_sid)  # its own call was never bound either
    assert record(aws, victim.call_sid)["connectionId"] == victim.connection_id


# -- 2. a replayed action callback (#13; README: "a replayed request is harmless") --------------------


def test_a_replayed_action_callback_leaves_the_live_call_on_its_new_socket_answered(voice_call, aws, connections):
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
    assert response["body"] == twiml  # the answer that session's end got, nothing new

    # The real caller, still on the line on the new socket, is still answered.
    heard = call.say("What are your opening hours?") + call.say("I want to speak to a person") + call.press("0")
    assert heard, (
        f"after one replayed action callback the live call is {record(aws, call.call_sid)['handoffState']!r} "
        "and every frame gets silence"
    )
    assert record(aws, call.call_sid)["reconnects"] == 1 and len(ends(call)) == 1


def test_a_callback_for_a_session_that_is_not_the_calls_changes_nothing(
    voice_call, aws, connections, function_logs, metrics_on
):
    """A session end never answered (its record lost, say) that is not the call's current session."""
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    before = record(aws, call.call_sid)
    function_logs.readouterr()

    for status, extra in (("failed", {"error_code": "64105"}), ("completed", {}), ("ended", {})):
        event = action_event(call, status, session_id="VX" + "0" * 32, **extra)
        response = call.functions.voice_action.handler(event, call.context)
        assert response["statusCode"] == 200 and "<Connect" not in response["body"]
        assert "<Redirect" not in response["body"] and "<Enqueue" not in response["body"]

    assert record(aws, call.call_sid) == before
    ignored = [dims for name, dims in metrics_of(function_logs) if name == "VoiceCallbacksIgnored"]
    assert ignored == [{"reason": "stale_session"}] * 3
    assert "Monday" in VoiceCall.spoken(call.say("What are your opening hours?"))


def test_twilios_retry_of_a_reconnecting_callback_gets_the_same_answer(voice_call, aws, connections):
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    connections.gone.add(call.connection_id)
    event = action_event(call, "failed", error_code="64105")

    first = call.functions.voice_action.handler(event, call.context)
    again = call.functions.voice_action.handler(json.loads(json.dumps(event)), call.context)

    assert first["statusCode"] == again["statusCode"] == 200 and "<ConversationRelay" in first["body"]
    assert again["body"] == first["body"] and record(aws, call.call_sid)["reconnects"] == 1
    call.reconnect_from(first["body"])
    assert call.connect() == 200 and call.setup() == []
    assert "Monday" in VoiceCall.spoken(call.say("What are your opening hours?"))


def test_a_replayed_voice_webhook_does_not_mark_a_call_routed_while_its_end_is_owed(voice_call, aws, connections):
    """A turn stored the handoff and died before its `end`: the /voice request seen once, posted
    again, gets the route but must not close the promise the caller's next frame keeps."""
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    wiring.call_store().store_handoff(call.call_sid, payload_json=_payload(call, ASKED), reason=ASKED, due=1)

    assert call.dial()["statusCode"] == 200

    assert record(aws, call.call_sid)["handoffState"] == "pending"
    assert [f["type"] for f in call.press("0")] == ["end"]
    assert json.loads(ends(call)[0]["handoffData"])["attributes"]["reason"] == ASKED


def _payload(call: VoiceCall, reason: str) -> str:
    return json.dumps(
        {
            "conversationId": call.parameters["conversationId"],
            "storeId": "",
            "profileId": "",
            "attributes": {"reason": reason},
        }
    )


# -- 3. DynamoDB faults in the voice webhooks (#12) --------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "fault"),
    [("get_item", throttled("GetItem")), ("update_item", throttled("UpdateItem"))],
    ids=["reading-the-call", "marking-it-routed"],
)
def test_an_action_callback_carrying_handoff_data_is_routed_when_dynamodb_throttles_once(
    voice_call, aws, connections, monkeypatch, operation, fault
):
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    frames = call.say("I want to speak to a person")
    assert "stay on the line" in VoiceCall.spoken(frames) and frames[-1]["type"] == "end"  # the promise

    # Twilio ends the session and POSTs the action URL with HandoffData: everything needed to
    # route the call is in the request. One DynamoDB call of the callback is throttled past the SDK's retries.
    fail_next(monkeypatch, wiring.call_store()._client, operation, fault)
    event = action_event(call, "ended", handoff_data=frames[-1]["handoffData"])
    response = call.functions.voice_action.handler(event, call.context)

    # Twilio does not retry an action URL that answered 5xx: the caller who was told a person is
    # coming would hear "an application error has occurred" and the call would end.
    assert response["statusCode"] == 200 and re.search(r"<(Redirect|Enqueue)", response["body"]), (
        f"action callback answered {response['statusCode']}: the caller promised a person is hung up on"
    )
    assert record(aws, call.call_sid)["handoffState"] == "routed"  # the throttle was sent again


def test_an_action_callback_carrying_handoff_data_is_routed_while_dynamodb_is_down(
    voice_call, aws, connections, monkeypatch, function_logs, metrics_on
):
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    frames = call.say("I want to speak to a person")
    assert frames[-1]["type"] == "end"
    fail_always(monkeypatch, wiring.call_store()._client, ("get_item", "update_item"), throttled)
    function_logs.readouterr()

    started = time.monotonic()
    response = call.functions.voice_action.handler(
        action_event(call, "ended", handoff_data=frames[-1]["handoffData"]), call.context
    )

    assert response["statusCode"] == 200 and "<Redirect" in response["body"]
    assert ASKED.split(".")[0].replace(" ", "+") in response["body"]  # the reason, from HandoffData
    assert time.monotonic() - started < STORE_PATIENCE_SECONDS + 1  # the caller waits seconds, not the timeout
    found = metrics_of(function_logs)
    assert ("VoiceStoreFaults", {"step": "read_call"}) in found
    assert ("VoiceStoreFaults", {"step": "mark_routed"}) in found


def test_a_dropped_socket_goes_to_a_person_when_dynamodb_cannot_count_the_reconnect(
    voice_call, aws, connections, monkeypatch
):
    """A reconnect could not be bound while DynamoDB refuses: the caller gets a person, not silence."""
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    fail_always(monkeypatch, wiring.call_store()._client, ("get_item", "update_item"), unavailable)
    connections.gone.add(call.connection_id)

    response = call.functions.voice_action.handler(action_event(call, "failed", error_code="64105"), call.context)

    assert response["statusCode"] == 200 and "<Redirect" in response["body"]
    assert "connection+to+the+AI+agent+failed" in response["body"]


@pytest.mark.parametrize("fault", [throttled, unavailable], ids=["throttled-once", "down"])
def test_a_new_call_is_answered_with_conversation_relay_whatever_dynamodb_does(
    voice_call, aws, connections, monkeypatch, fault
):
    """Throttled once, the call is opened on the next try; down, it is answered all the same and
    `setup` opens the call's record once DynamoDB is back (had it not come back, the socket would be
    refused and the action callback would route the caller to a person)."""
    call = voice_call()
    client = wiring.call_store()._client
    real = client.put_item
    if fault is throttled:
        fail_next(monkeypatch, client, "put_item", fault("PutItem"))
    else:
        fail_always(monkeypatch, client, ("put_item",), fault)

    answer = call.dial()

    assert answer["statusCode"] == 200 and "<ConversationRelay" in answer["body"]
    monkeypatch.setattr(client, "put_item", real)  # DynamoDB is back
    assert call.connect() == 200 and call.setup() == []
    assert "Monday" in VoiceCall.spoken(call.say("What are your opening hours?"))
    assert record(aws, call.call_sid)["conversationId"] == call.parameters["conversationId"]


# -- 4. "agent please" and 0 at once (#12) --------------------------------------------------------


@pytest.mark.parametrize("speech_frame", ["killed-after-its-store", "finishes"])
def test_pressing_0_while_another_frame_stores_the_handoff_sends_its_end_and_never_says_try_again(
    voice_call, aws, connections, monkeypatch, speech_frame
):
    """Two frames of one call run at once, as API Gateway invokes them: the caller says "agent please"
    and presses 0. Both claim their turn before either stores its handoff; the speech frame's store
    lands first and its invocation is then ended by the runtime (killed right after the write), or
    goes on to its goodbye and `end`. The 0 frame's own store finds the handoff already there."""
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
            response = real_update(**kwargs)
            if speech_frame == "killed-after-its-store":
                raise InvocationKilled()  # the write landed; the invocation ends before it says or sends anything
            return response
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

    item = record(aws, call.call_sid)
    assert item["handoffReason"] == ASKED  # the speech frame's handoff is the one a person is owed
    spoken = VoiceCall.spoken(heard)
    assert "try again in a few minutes" not in spoken and ends(call), (
        f"the caller pressed 0 and heard {spoken!r}, and no `end` was sent: they hang up to call back later"
    )
    (end,) = ends(call)
    assert json.loads(end["handoffData"])["attributes"]["reason"] == ASKED
    assert item["handoffState"] == "end_sent" and call.frames[-1]["type"] == "end"
    assert TRY_AGAIN not in VoiceCall.spoken(call.frames)


# -- 5. the `end` posted, its record lost --------------------------------------------------------------


def test_an_end_posted_but_not_recorded_is_followed_by_nothing(voice_call, aws, connections, monkeypatch):
    """`end_sent` fails after the post went out: the turn must not apologise after the `end` nor post a second one."""
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    fail_next(
        monkeypatch,
        wiring.call_store()._client,
        "update_item",
        unavailable("UpdateItem"),
        when=lambda kwargs: "handoffState = :sent" in kwargs.get("UpdateExpression", ""),
    )

    frames = call.say("I want to speak to a person")

    assert [f["type"] for f in frames] == ["text", "text", "end"]
    assert TROUBLE_LINE not in VoiceCall.spoken(frames)


# -- 6. the fallback inside its reserve ------------------------------------------------------------------


def test_the_fallback_finishes_inside_the_invocation_when_the_socket_endpoint_is_slow(
    voice_call, aws, connections, monkeypatch
):
    """The model outlives the turn's deadline and @connections is slow to answer the apology's post:
    the fallback's posts are bounded by the reserve, so the invocation returns before the runtime
    would end it (API Gateway would send Twilio an "Internal server error" frame)."""
    from test_voice_promises import RESERVE, Deadlined

    from agent_handoff.agent.messages import Completion

    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []

    class Ignores:
        def complete(self, system, messages, tools, *, deadline=None):
            time.sleep(RESERVE + 1.5)  # past the whole invocation
            return Completion(text="We're open Monday to Friday, nine to five.")

    def slow_apology(connection_id, data):
        if TROUBLE_LINE in data.decode():
            time.sleep(4)  # past the client's read timeout, and past the reserve
        return True

    monkeypatch.setattr(wiring.voice_relay()._agent, "_provider", Ignores())
    connections.on_frame = slow_apology
    call.context = Deadlined(seconds=RESERVE + 0.8)

    call.say("What are your opening hours?")

    assert time.monotonic() < call.context.ends_at
    assert len(ends(call)) == 1
