"""Barge-in edges, as regression tests (the second review of issue #17): the one check that marks
a turn speaking also keeps how its answer opens, so a late interrupt of the answer before is told
from this one's; the greeting's late interrupt; a reply stored as far as it went out whichever way
its last frame failed; a throttled check holds instead of handing off; a late interrupt during a
handoff turn leaves the `end` to the turn's goodbye.

Each test states what the caller hears or the operator sees when it fails.
"""

from __future__ import annotations

import json
import time

from botocore.exceptions import ClientError
from test_voice import assert_protocol, stored_call
from test_voice_latency import CLAUSES, answered_call

from agent_handoff import wiring
from agent_handoff.agent.messages import Completion
from agent_handoff.voice.relay import TROUBLE_LINE
from agent_handoff.voice.speaker import CONFIRMATION_WINDOW_SECONDS

HOURS = ["We are open from nine to five on weekdays. ", "On Saturdays we open at ten."]
STALE = CONFIRMATION_WINDOW_SECONDS + 0.03


class Scripted:
    """A streaming model with one scripted answer per prompt: (clauses, pause before each clause).

    `during(asked, i)` runs before clause i of answer `asked` (1-based) is written."""

    def __init__(self, answers, during=None) -> None:
        self.answers = answers
        self.during = during or (lambda asked, i: None)
        self.asked = 0

    def complete(self, system, messages, tools, *, deadline=None):
        raise AssertionError("a listener is present: the agent must stream")

    def stream(self, system, messages, tools, *, deadline=None):
        self.asked += 1
        clauses, pause = self.answers[min(self.asked, len(self.answers)) - 1]
        for i, clause in enumerate(clauses):
            if pause:
                time.sleep(pause)
            self.during(self.asked, i)
            yield clause
        yield Completion(text="".join(clauses))


def texts(frames):
    return [f["token"] for f in frames if f.get("type") == "text"]


def answers(aws, call_sid):
    return [t for t in stored_call(aws, call_sid)["history"] if t["role"] == "assistant"]


# -- 1. a late interrupt of the answer before, once the new answer has confirmed ---------------------


def test_a_late_interrupt_of_the_previous_answer_does_not_silence_the_new_one(voice_call, monkeypatch, aws):
    """The caller talks over answer 1 ("We are open from nine...") with their next question; Twilio
    sends the interrupt, then the prompt, but the interrupt's invocation runs late (frames are
    unordered): after prompt 2's turn has made its one check. The heard text is how answer 1 starts,
    not how answer 2 starts. Answer 2 must be spoken whole, and answer 1 cut to what was heard."""
    heard = "We are open from nine"
    calls: list = []
    late: list = []

    def late_interrupt(asked: int, i: int) -> None:
        if asked == 2 and i == 2 and not late:  # answer 2's first clause went out after its check
            late.append(calls[0].interrupt(heard))

    model = Scripted([(HOURS, 0), (CLAUSES, STALE)], during=late_interrupt)
    call = answered_call(voice_call, monkeypatch, model)
    calls.append(call)
    assert call.spoken(call.say("when are you open")) == "".join(HOURS)

    second = call.say("and how much does it cost")

    assert late, "the late interrupt was not delivered"
    said = call.spoken(second) + call.spoken(late[0])
    assert said == "".join(CLAUSES), (
        f"a late interrupt of answer 1 silenced answer 2 after {texts(second)!r}: the caller hears one clause, then nothing"
    )
    stored = answers(aws, call.call_sid)
    assert stored[0] == {"role": "assistant", "text": heard, "interrupted": True}, stored
    assert stored[-1] == {"role": "assistant", "text": "".join(CLAUSES)}, stored


# -- 2. a late interrupt of the welcome greeting ----------------------------------------------------


def test_a_late_interrupt_of_the_welcome_greeting_does_not_silence_the_first_answer(voice_call, monkeypatch, aws):
    """Callers talk over the greeting ("Hi! I'm the virtual assistant..." / "hello, I need help with
    pricing"). The greeting's interrupt runs after the first prompt's turn has confirmed speaking.
    The greeting is not in the history, so nothing can match it: the first answer is the one stopped."""
    calls: list = []
    late: list = []

    def late_interrupt(asked: int, i: int) -> None:
        if asked == 1 and i == 2 and not late:
            greeting = calls[0].greeting
            late.append(calls[0].interrupt(" ".join(greeting.split()[:3])))

    call = answered_call(voice_call, monkeypatch, Scripted([(CLAUSES, STALE)], during=late_interrupt))
    calls.append(call)
    assert call.greeting

    first = call.say("hello I need help with pricing")

    assert late, "the late interrupt was not delivered"
    assert call.spoken(first) + call.spoken(late[0]) == "".join(CLAUSES), (
        f"the greeting's late interrupt stopped the first answer after {texts(first)!r}"
    )
    assert answers(aws, call.call_sid)[-1] == {"role": "assistant", "text": "".join(CLAUSES)}


# -- 3. keep_only_said racing a newer prompt ---------------------------------------------------------


def test_a_held_frame_that_failed_while_the_caller_spoke_again_is_not_stored_as_said(
    voice_call, monkeypatch, aws, connections
):
    """Clause 1 goes out, the rest is held for the closing write; the held frame's post is slow and
    then fails (a 5xx past the SDK's retries): the caller hears silence after clause 1 and says
    "hello?", whose prompt claims turn 2 while the post is still failing. keep_only_said then gives
    up (the turn moved on), so the history, the model's context and the person's transcript say the
    caller was told the whole answer, of which they heard one clause."""
    calls: list = []
    state = {"held": None, "spoke": False}

    def on_frame(connection_id: str, data: bytes):
        frame = json.loads(data)
        if frame.get("type") == "text" and frame.get("last") and frame["token"].startswith(CLAUSES[1][:20]):
            state["held"] = frame["token"]
            if not state["spoke"]:
                state["spoke"] = True
                calls[0].say("hello? are you still there?")  # Twilio: the caller's next prompt, meanwhile
            return 400  # the held frame's post fails (not retried, for speed: a 5xx past retries is the same)
        return True

    connections.on_frame = on_frame
    model = Scripted([(CLAUSES, STALE), (["Yes, I am here. ", "How can I help?"], 0)])
    call = answered_call(voice_call, monkeypatch, model)
    calls.append(call)

    call.say("tell me about pricing")

    assert state["held"] and state["spoke"], "the held frame was never posted"
    heard = CLAUSES[0]
    history = stored_call(aws, call.call_sid)["history"]
    first_answer = next(t for t in history if t["role"] == "assistant")
    assert first_answer == {"role": "assistant", "text": heard.strip(), "interrupted": True}, (
        f"the history says the caller was told {first_answer['text']!r}; they heard {heard!r}"
    )


# -- 4. the fresh last frame failing: the other order of post and closing write ----------------------


def test_a_fast_reply_whose_last_frame_failed_keeps_what_the_caller_heard(voice_call, monkeypatch, aws, connections):
    """A fast model: its first clause comes after the window (checked, sent), the rest at once. The
    rest goes out fresh as the last frame BEFORE the closing write, and that post fails (5xx past
    retries, or the socket dropping). No closing write runs, so nothing of the answer is stored,
    though the caller heard five clauses: the reconnected model and the person's transcript show
    the caller's question with no answer at all. (#17's fix covers only commit-then-post.)"""

    def on_frame(connection_id: str, data: bytes):
        frame = json.loads(data)
        return 400 if frame.get("type") == "text" and frame.get("last") else True

    connections.on_frame = on_frame

    class FastAfterFirst(Scripted):
        def stream(self, system, messages, tools, *, deadline=None):
            time.sleep(STALE)
            yield from CLAUSES
            yield Completion(text="".join(CLAUSES))

    call = answered_call(voice_call, monkeypatch, FastAfterFirst([]))
    frames = call.say("tell me about pricing")

    heard = call.spoken(frames)
    assert heard and heard.strip() != "".join(CLAUSES).strip(), f"setup: heard {heard!r}"
    last = stored_call(aws, call.call_sid)["history"][-1]
    assert last == {"role": "assistant", "text": heard.strip(), "interrupted": True}, (
        f"the caller heard {heard!r}; the history's last word is {last!r}"
    )


# -- 5. a throttled check ----------------------------------------------------------------------------


def test_a_throttled_check_does_not_hand_an_ordinary_question_to_a_person(voice_call, monkeypatch, aws, connections):
    """The one check (confirm_speaking, a conditional UpdateItem) is throttled past the SDK's retries.
    It is only there to speak early: the closing write confirms the turn anyway, so the reply can be
    held for it. Instead the StoreBusy escapes the speaker through the model's stream, the turn
    counts as failed, and a caller who asked for the prices hears "I'm having trouble" and is put
    through to a person."""
    call = answered_call(voice_call, monkeypatch, Scripted([(CLAUSES, STALE)]))
    client = wiring.call_store()._client
    real = client.update_item
    throttled: list = []

    def update_item(**kwargs):
        if kwargs.get("UpdateExpression", "").startswith("SET speakingTurn") and not throttled:
            throttled.append(kwargs)
            error = {"Code": "ThrottlingException", "Message": "Rate of requests exceeds the allowed throughput."}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "UpdateItem")
        return real(**kwargs)

    monkeypatch.setattr(client, "update_item", update_item)

    frames = call.say("tell me about pricing")

    assert throttled, "the check was not reached"
    assert_protocol(call)
    assert not [f for f in frames if f.get("type") == "end"] and TROUBLE_LINE not in call.spoken(frames), (
        f"one throttled check handed the caller to a person: {texts(frames)!r} then {frames[-1]!r}"
    )
    assert call.spoken(frames) == "".join(CLAUSES)


# -- 6. a handoff turn: the goodbye and the `end` -----------------------------------------------------


def test_a_late_interrupt_during_a_handoff_turn_does_not_send_the_end_before_the_goodbye(
    voice_call, monkeypatch, aws, connections
):
    """The caller talks over answer 1 with "I want to speak to a person": Twilio sends the interrupt,
    then the prompt. The interrupt's invocation runs late, just after the prompt's turn stored its
    handoff and before its goodbye went out. Any non-prompt frame keeps a pending handoff's promise,
    so the interrupt posts the `end` at once; the turn's goodbye ("Let me connect you ... stay on the
    line") is then posted after the `end`: Twilio has ended the session, the caller never hears
    why they are being moved, and the frames after the `end` break the protocol."""
    calls: list = []
    late: list = []
    call = answered_call(voice_call, monkeypatch, Scripted([(HOURS, 0)]))
    calls.append(call)
    call.say("when are you open")

    client = wiring.call_store()._client
    real_update, real_transact = client.update_item, client.transact_write_items

    def after_handoff_stored(response, request: str):
        if "handoffPayload" in request and ":pending" in request and not late:
            late.append(calls[0].interrupt("We are open from nine"))
        return response

    monkeypatch.setattr(
        client, "update_item", lambda **kw: after_handoff_stored(real_update(**kw), json.dumps(kw, default=str))
    )
    monkeypatch.setattr(
        client,
        "transact_write_items",
        lambda **kw: after_handoff_stored(real_transact(**kw), json.dumps(kw, default=str)),
    )

    before = len(call.frames)
    call.say("I want to speak to a person")
    frames = call.frames[before:]

    assert late, "the late interrupt was not delivered"
    kinds = [f["type"] for f in frames]
    assert "text" in kinds and kinds[-1] == "end" and kinds.count("end") == 1, (
        f"the handoff turn's frames went out as {kinds}: the `end` before the goodbye {texts(frames)!r}"
    )
    assert_protocol(call)
