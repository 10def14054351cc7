"""Whole calls, from the Voice webhook through the ConversationRelay socket to the action callback.

AWS is moto; the frames the relay posts land in a loopback @connections endpoint and are
decoded one by one; every webhook and the handshake are signed with twilio's RequestValidator.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from tac.models.handoff import HandoffPayload as TacHandoffPayload
from tac.models.handoff import PendingHandoffData

from agent_handoff import wiring
from agent_handoff.storage.records import Turn
from agent_handoff.voice.speaker import CONFIRMATION_WINDOW_SECONDS
from conftest import RELAY_URL
from devtools.phones.voice_caller import Functions, VoiceCall
from devtools.samples import sample
from relay_schema import End, Text, validate_outbound

FUNCTIONS = Functions.load()


@pytest.fixture
def call(voice_call):
    return voice_call()


def answered(call: VoiceCall) -> VoiceCall:
    assert call.dial()["statusCode"] == 200
    assert call.connect() == 200
    assert call.setup() == []
    return call


def assert_protocol(call: VoiceCall) -> None:
    """Every frame is a valid ConversationRelay message; an end comes once, last, after last: true."""
    messages = [validate_outbound(frame) for frame in call.raw_frames]
    ends = [i for i, m in enumerate(messages) if isinstance(m, End)]
    assert len(ends) <= 1
    if ends:
        assert ends[0] == len(messages) - 1
        texts = [m for m in messages if isinstance(m, Text)]
        assert not texts or texts[-1].last


def stored_call(aws, call_sid):
    return next(item for item in aws.items("CALL#") if item["callSid"] == call_sid)


def query_of(twiml: str) -> dict[str, str]:
    url = ET.fromstring(twiml).find("Redirect").text
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_incoming_call_gets_conversation_relay(call, aws):
    response = call.dial()

    assert response["headers"]["Content-Type"].startswith("text/xml")
    binding = call.parameters["binding"]  # the socket binding: in the wss query and as a <Parameter>
    assert call.relay_url == f"{RELAY_URL}?binding={binding}"
    assert wiring.relay_bindings().verify(binding).subject == call.call_sid
    assert call.action_url == "https://abcdef1234.execute-api.us-east-1.amazonaws.com/voice/action"
    assert call.greeting.startswith("Hi!")
    relay = ET.fromstring(response["body"]).find("Connect/ConversationRelay")
    assert relay.get("dtmfDetection") == "true" and relay.get("language") == "en-US"
    record = stored_call(aws, call.call_sid)
    assert call.parameters == {"conversationId": record["conversationId"], "binding": binding}
    assert record["status"] == "ringing" and record["caller"] == call.caller


def test_retried_voice_webhook_answers_the_same_call(call, aws):
    first = call.dial()
    second = call.dial()
    assert first["body"] == second["body"]
    assert len(aws.items("CALL#")) == 1


def test_caller_who_asks_for_a_person(call, aws):
    answered(call)

    hours = call.say("What are your opening hours?")
    assert "Monday to Friday" in VoiceCall.spoken(hours) and hours[-1]["last"] is True

    goodbye = call.say("I'd like to talk to a real person please")

    assert [f["type"] for f in goodbye] == ["text", "text", "end"]
    assert "stay on the line" in VoiceCall.spoken(goodbye)
    end = PendingHandoffData.model_validate(goodbye[-1])  # TAC's own model of the end message
    payload = TacHandoffPayload.model_validate_json(end.handoff_data)
    assert payload.attributes == {
        "department": "support",
        "priority": "normal",
        "reason": "The customer asked to speak with a human agent.",
        # No model summary (the policy decided): the last turns, for the human.
        "summary": "The caller said, latest last: \u201cWhat are your opening hours?\u201d / \u201cI'd like to "
        "talk to a real person please\u201d. The AI agent last answered: \u201cWe're open Monday to Friday, "
        "8am to 6pm, and Saturday 9am to 1pm.\u201d",
    }
    assert payload.conversation_id == call.parameters["conversationId"]
    assert_protocol(call)
    assert stored_call(aws, call.call_sid)["handoffState"] == "end_sent"

    twiml = call.finish()

    query = query_of(twiml)  # no workflow configured: into the handoff flow's incoming-call trigger
    assert twiml.count("<Redirect") == 1 and f"/Flows/{sample.FLOW_SID}?" in twiml
    assert query["Trigger"] == "incomingCall"
    assert json.loads(query["HandoffData"]) == json.loads(end.handoff_data)
    record = stored_call(aws, call.call_sid)
    assert record["handoffState"] == "routed" and record["routedTo"] == f"studio:{sample.FLOW_SID}"


def test_after_the_end_message_the_ai_stays_silent(call):
    answered(call)
    call.say("agent please")

    assert call.say("hello?") == []
    assert [f["type"] for f in call.frames].count("end") == 1


def test_pressing_zero_hands_off(call, aws):
    answered(call)

    frames = call.press("0")

    assert frames[-1]["type"] == "end"
    payload = json.loads(frames[-1]["handoffData"])
    assert payload["attributes"]["reason"] == "The caller pressed 0 to speak with a person."
    assert call.press("5") == []
    assert_protocol(call)


def test_other_digits_do_nothing(call):
    answered(call)
    assert call.press("7") == []


def test_interrupted_reply_stops_and_history_keeps_what_was_heard(call, connections, aws, monkeypatch):
    from agent_handoff.agent.messages import Completion

    long_reply = (
        "Our plans start at ten dollars a month. Every plan includes a free trial. "
        "You can upgrade at any time from your account page. Annual plans get two months free."
    )

    class Talkative:
        def complete(self, system, messages, tools, *, deadline=None):
            return Completion(text=long_reply)

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Talkative())
    wiring.reset()
    answered(call)
    heard = "Our plans start at ten dollars"

    def barge_in(connection_id, data):
        # Twilio sends the interrupt while the prompt's invocation is still posting, once the
        # caller has heard the first clause: longer than the speaker's confirmation window.
        if json.loads(data)["type"] == "text" and not connections.frames.get(connection_id):
            call.interrupt(heard)
            time.sleep(CONFIRMATION_WINDOW_SECONDS + 0.02)
        return True

    connections.on_frame = barge_in
    frames = call.say("tell me about pricing")
    connections.on_frame = None

    assert len(frames) == 1 and frames[0]["last"] is False  # the rest of the reply was never sent
    history = stored_call(aws, call.call_sid)["history"]
    assert history[-2:] == [
        {"role": "user", "text": "tell me about pricing"},
        {"role": "assistant", "text": heard, "interrupted": True},  # the transcript page marks it
    ]
    assert_protocol(call)

    after = call.say("what are your hours")  # the call goes on normally
    assert after[-1]["last"] is True


# -- an interrupt that runs late: API Gateway does not order frames ---------------------------------

HOURS = "We're open Monday to Friday, 8am to 6pm, and Saturday 9am to 1pm."


def two_turns_in(call, aws):
    """Answer A (the opening hours) stored, then the caller's next prompt B claimed, its answer in flight."""
    answered(call)
    call.say("What are your opening hours?")
    store = wiring.call_store()
    claimed = store.start_turn(call.call_sid, call.connection_id, "Do you deliver to Canada?")
    assert [t.text for t in claimed.history][-2:] == [HOURS, "Do you deliver to Canada?"]
    return store, claimed


def test_a_late_interrupt_rewrites_the_answer_it_was_for_and_leaves_the_newer_turn_running(call, aws):
    store, claimed = two_turns_in(call, aws)

    turn = store.record_interrupt(call.call_sid, "we're open monday to", history_limit=20)  # case aside

    assert turn == claimed.turn and store.get_call(call.call_sid).turn == claimed.turn  # B goes on speaking
    assert store.finish_turn(claimed, Turn("assistant", "Yes, we do."), unresolved_attempts=0, history_limit=20)
    assert stored_call(aws, call.call_sid)["history"][-3:] == [
        {"role": "assistant", "text": "we're open monday to", "interrupted": True},
        {"role": "user", "text": "Do you deliver to Canada?"},
        {"role": "assistant", "text": "Yes, we do."},  # added to the history as the interrupt left it
    ]


def test_an_interrupt_of_the_turn_in_flight_still_stops_it_and_follows_its_prompt(call, aws):
    store, claimed = two_turns_in(call, aws)

    turn = store.record_interrupt(call.call_sid, "Yes, we deliver", history_limit=20)  # not how A starts

    assert turn == claimed.turn + 1 == store.get_call(call.call_sid).turn  # B's invocation stops posting
    assert not store.finish_turn(
        claimed, Turn("assistant", "Yes, we deliver anywhere."), unresolved_attempts=0, history_limit=20
    )
    assert stored_call(aws, call.call_sid)["history"][-3:] == [
        {"role": "assistant", "text": HOURS},
        {"role": "user", "text": "Do you deliver to Canada?"},
        {"role": "assistant", "text": "Yes, we deliver", "interrupted": True},
    ]


def test_a_very_late_interrupt_after_the_newer_turn_finished_still_finds_its_answer(call, aws):
    store, claimed = two_turns_in(call, aws)
    assert store.finish_turn(claimed, Turn("assistant", "Yes, we do."), unresolved_attempts=0, history_limit=20)

    store.record_interrupt(call.call_sid, "We're open Mon", history_limit=20)  # the last word cut short

    assert [t["text"] for t in stored_call(aws, call.call_sid)["history"][-3:]] == [
        "We're open Mon",
        "Do you deliver to Canada?",
        "Yes, we do.",
    ]


def test_an_interrupt_matching_the_stored_current_answer_is_for_it_even_if_an_older_one_starts_alike(call, aws):
    store, claimed = two_turns_in(call, aws)
    assert store.finish_turn(
        claimed, Turn("assistant", "We're open on Sundays too."), unresolved_attempts=0, history_limit=20
    )

    turn = store.record_interrupt(call.call_sid, "We're open", history_limit=20)

    history = stored_call(aws, call.call_sid)["history"]
    assert [t.get("interrupted", False) for t in history[-3:]] == [False, False, True]
    assert history[-1]["text"] == "We're open" and history[-3]["text"] == HOURS
    assert turn == claimed.turn + 1  # the current turn's: the counter moves past it, as ever


@pytest.mark.parametrize(
    ("heard", "said", "expected"),
    [
        ("We're open Monday", HOURS, True),
        ("we're OPEN monday,", HOURS, True),
        ("We're open Mon", HOURS, True),  # cut inside a word
        ("We're", HOURS, True),
        ("", HOURS, False),  # heard nothing: no answer can be told from another
        ("open Monday", HOURS, False),
        ("We're open Monday to Friday, 8am to 6pm, and Saturday 9am to 1pm. Bye", HOURS, False),
    ],
)
def test_an_interrupt_is_matched_to_an_answer_by_how_it_starts(heard, said, expected):
    from agent_handoff.storage.call_store import _starts_with

    assert _starts_with(said, heard) is expected


def test_socket_drops_after_the_handoff_was_decided(call, connections, aws):
    answered(call)

    def drop_on_end(connection_id, data):
        return json.loads(data)["type"] != "end"  # the socket dies just before the end frame

    connections.on_frame = drop_on_end
    frames = call.say("I want to speak to a human")
    assert [f["type"] for f in frames] == ["text", "text"]
    assert call.end_message is None

    twiml = call.drop()

    query = query_of(twiml)
    assert json.loads(query["HandoffData"])["attributes"]["reason"] == "The customer asked to speak with a human agent."
    assert stored_call(aws, call.call_sid)["handoffState"] == "routed"


def test_caller_hangs_up(call, aws):
    answered(call)
    call.say("hi")

    twiml = call.hang_up()

    assert twiml.endswith("<Response />")
    assert stored_call(aws, call.call_sid)["status"] == "completed"


def test_dropped_socket_reconnects_once_then_goes_to_a_person(call, aws):
    answered(call)
    call.say("hi")

    first = call.drop()

    relay = ET.fromstring(first).find("Connect/ConversationRelay")
    assert relay is not None and relay.get("welcomeGreeting") is None  # no second greeting
    call.reconnect_from(first)
    assert call.connect() == 200 and call.setup() == []
    assert "Monday" in VoiceCall.spoken(call.say("when are you open?"))  # same call, new session

    second = call.drop()

    assert json.loads(query_of(second)["HandoffData"])["attributes"]["reason"].startswith(
        "The voice connection to the AI agent failed (64105)"
    )
    assert stored_call(aws, call.call_sid)["reconnects"] == 2


def test_workflow_configured_enqueues_straight_to_flex(call, aws, monkeypatch):
    workflow = "WW" + "c" * 32
    monkeypatch.setenv("TWILIO_TASKROUTER_WORKFLOW_SID", workflow)
    wiring.reset()
    answered(call)
    call.say("this is ridiculous, nothing works")

    twiml = call.finish()

    enqueue = ET.fromstring(twiml).find("Enqueue")
    assert enqueue.get("workflowSid") == workflow
    task = json.loads(enqueue.find("Task").text)
    assert task["reason"] == "The customer is frustrated or dissatisfied." and task["name"] == call.caller
    TacHandoffPayload.model_validate(task["HandoffData"])


def test_call_from_a_studio_flow_returns_to_it(call, aws):
    studio_flow = "FW" + "d" * 32
    assert call.dial(query=f"FlowSid={studio_flow}")["statusCode"] == 200
    assert call.connect() == 200
    call.setup()
    call.say("I was charged twice")

    twiml = call.finish()

    url = ET.fromstring(twiml).find("Redirect").text
    assert url.startswith(f"https://webhooks.twilio.com/v1/Accounts/{sample.ACCOUNT_SID}/Flows/{studio_flow}?")
    query = query_of(twiml)
    assert query["FlowEvent"] == "return" and query["reason"] == "Billing dispute raised by the customer."


def test_llm_failure_on_a_call_apologises_and_hands_off(call, monkeypatch):
    from agent_handoff.errors import ProviderError

    class Down:
        def complete(self, system, messages, tools, *, deadline=None):
            raise ProviderError("LLM request timed out")

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Down())
    wiring.reset()
    answered(call)

    frames = call.say("what's my balance")

    assert VoiceCall.spoken(frames).startswith("I'm sorry") and frames[-1]["type"] == "end"
    assert_protocol(call)


def test_store_failure_mid_call_still_hands_the_caller_to_a_person(call, monkeypatch):
    answered(call)
    from agent_handoff.errors import StoreError

    store = wiring.call_store()

    def broken(*args, **kwargs):
        raise StoreError("DynamoDB update_item failed: ProvisionedThroughputExceededException")

    monkeypatch.setattr(store, "finish_turn", broken)

    frames = call.say("what are your hours")

    assert frames[-1]["type"] == "end" and "technical problem" in frames[-1]["handoffData"]
    assert_protocol(call)


# -- the handshake and bad frames -----------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    ["", "bm90IGEgc2lnbmF0dXJl", None],
    ids=["empty", "wrong", "other-url"],
)
def test_bad_handshake_is_refused(call, signature):
    call.dial()
    if signature is None:
        from twilio.request_validator import RequestValidator

        signature = RequestValidator(sample.AUTH_TOKEN).compute_signature("wss://evil.example.com/live", {})
    assert call.connect(signature=signature) == 403


def test_unsigned_handshake_is_refused(call, lambda_context):
    from devtools.samples.events import ws_connect_event

    call.dial()
    event = ws_connect_event(call.connection_id, auth_token=None)
    assert FUNCTIONS.voice_relay.handler(event, lambda_context) == {"statusCode": 403}


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        # (A prompt before any setup is answered once setup's grace has passed, for the call the
        # socket's binding named: test_voice_edges.py holds that behaviour.)
        '{"type": "hello"}',
        '{"type": "prompt"}',
        '{"type": "setup", "callSid": "nope"}',
        '{"type": "dtmf", "digit": "12"}',
        "",
    ],
)
def test_bad_frames_get_no_frame_back_and_change_nothing(call, aws, frame):
    call.dial()
    call.connect()
    before = aws.items()

    assert call.send(frame) == []

    assert aws.items() == before


def test_frame_from_an_unknown_connection_is_dropped(call, aws):
    answered(call)
    before = aws.items()
    call.connection_id = "unknownConn="
    assert call.say("hi") == []
    assert aws.items() == before


def test_error_and_info_frames_are_only_logged(call):
    answered(call)
    assert call.send({"type": "error", "description": "Invalid message received (64107)"}) == []
    assert call.send({"type": "info", "name": "roundTripDelayMs", "value": "120"}) == []


@pytest.mark.parametrize("missing", ["CallSid", "SessionStatus"])
def test_action_callback_needs_its_fields(call, aws, lambda_context, missing):
    from devtools.samples.events import action_params, http_api_event

    params = action_params(
        account_sid=sample.ACCOUNT_SID,
        call_sid=call.call_sid,
        caller=call.caller,
        agent=call.agent,
        session_status="failed",
    )
    del params[missing]
    response = FUNCTIONS.voice_action.handler(
        http_api_event("/voice/action", params, auth_token=sample.AUTH_TOKEN), lambda_context
    )
    assert response["statusCode"] == 400 and missing in response["body"]
    assert aws.items() == []


def test_call_routed_into_the_flow_trigger_returns_at_once_from_its_redirect_widget(call, aws):
    """Number -> /voice directly; handoff -> flow's incoming-call trigger -> ai_agent widget -> /voice again."""
    answered(call)
    call.say("I need a human")
    into_flow = call.finish()
    assert query_of(into_flow)["Trigger"] == "incomingCall"

    again = call.dial(query=f"FlowSid={sample.FLOW_SID}")  # the TwiML Redirect widget of that flow

    assert again["statusCode"] == 200 and "<ConversationRelay" not in again["body"]
    query = query_of(again["body"])
    assert query["FlowEvent"] == "return"
    assert json.loads(query["HandoffData"])["attributes"]["reason"] == "The customer asked to speak with a human agent."
    assert stored_call(aws, call.call_sid)["routedTo"] == f"studio-return:{sample.FLOW_SID}"


def test_prompt_that_overtakes_its_setup_is_still_answered(call):
    """Frames are separate invocations: a prompt may start before the setup is stored."""
    import threading

    call.dial()
    call.connect()
    answers = []
    prompt = threading.Thread(target=lambda: answers.append(call.say("what are your hours")))
    prompt.start()
    time.sleep(0.3)
    call.setup()
    prompt.join(10)

    assert "Monday" in VoiceCall.spoken(call.frames)
