"""Barge-in and the history, as regression tests (issue #17's review): an interrupt belongs to
the answer being spoken, whatever its words; a reply's stored text is what went out.

The speaker's one check before its first stale clause is a conditional write that also marks the
turn as speaking (CallStore.confirm_speaking), so an interrupt knows whose it is at no extra call.
"""

from __future__ import annotations

import time

from test_voice import stored_call
from test_voice_latency import CLAUSES, SlowModel, answered_call

from agent_handoff.agent.messages import Completion
from agent_handoff.voice.speaker import CONFIRMATION_WINDOW_SECONDS
from agent_handoff.voice.speech import clauses


class SameOpening:
    """A model whose answers open the same way, as models' answers do ("Sure, I can help with that.").

    The first prompt's answer is written at once; the second streams slowly (one clause per
    confirmation window and a bit), and `during(i)` runs before its clause i is written."""

    FIRST = ["Sure, I can help with that. ", "We are open from nine to five on weekdays."]
    SECOND = [
        "Sure, I can help with that. ",
        "Our plans start at ten dollars a month. ",
        "Every plan includes a free trial of thirty days. ",
        "You can upgrade at any time from your account page. ",
        "Is there anything else I can help you with today?",
    ]

    def __init__(self, during=None) -> None:
        self.asked = 0
        self.during = during or (lambda i: None)

    def complete(self, system, messages, tools, *, deadline=None):
        raise AssertionError("a listener is present: the agent must stream")

    def stream(self, system, messages, tools, *, deadline=None):
        self.asked += 1
        if self.asked == 1:
            yield from self.FIRST
            yield Completion(text="".join(self.FIRST))
            return
        for i, clause in enumerate(self.SECOND):
            time.sleep(CONFIRMATION_WINDOW_SECONDS + 0.03)
            self.during(i)
            yield clause
        yield Completion(text="".join(self.SECOND))


def test_talking_over_an_answer_that_opens_like_the_previous_one_stops_it(voice_call, monkeypatch, aws):
    """Two answers open with "Sure, I can help with that." The caller talks over the second as it
    starts ("Sure, I can"): the second answer stops within one clause, and the first, heard in full,
    stays whole in the history. (Matched by text alone, the interrupt passed for a late one of the
    first answer, the second kept speaking and the first was cut.)"""
    calls: list = []
    seen: dict[str, int] = {}

    def barge_in(i: int) -> None:
        if i == 2 and "at" not in seen:  # the caller has heard the opening and talks over the answer
            calls[0].interrupt("Sure, I can")
            seen["at"] = len(calls[0].frames)

    call = answered_call(voice_call, monkeypatch, SameOpening(barge_in))
    calls.append(call)
    first = call.say("what are your hours")
    assert call.spoken(first) == "".join(SameOpening.FIRST)

    call.say("and how much does it cost")
    assert "at" in seen
    after_interrupt = [f["token"] for f in call.frames[seen["at"] :] if f.get("type") == "text"]
    history = stored_call(aws, call.call_sid)["history"]
    answers = [t for t in history if t["role"] == "assistant"]

    assert len(clauses("".join(after_interrupt))) <= 1, f"posted after the barge-in: {after_interrupt}"
    assert answers[0]["text"] == "".join(SameOpening.FIRST), f"the first answer, heard in full, became {answers[0]}"


# -- the history --------------------------------------------------------------------------------


def test_a_reply_whose_last_frame_never_went_out_is_stored_as_far_as_it_was_said(
    voice_call, monkeypatch, aws, connections
):
    """A slow stream: clause 1 goes out, the rest is held for the closing write, and the socket drops
    before the held frame is posted. The history keeps only what went out, marked interrupted, so
    the reconnected call's model and the person's transcript do not claim what the caller never heard."""
    calls: list = []

    def socket_drops(i: int) -> None:
        if i == 3:  # clause 1 was said; clauses 2 and 3 are held
            connections.gone.add(calls[0].connection_id)

    call = answered_call(voice_call, monkeypatch, SlowModel([], during=socket_drops))
    calls.append(call)

    frames = call.say("tell me about pricing")

    heard = call.spoken(frames)  # all the caller got: clause 1
    assert len(clauses(heard)) < len(clauses("".join(CLAUSES)))
    last = stored_call(aws, call.call_sid)["history"][-1]
    assert last == {"role": "assistant", "text": heard.strip(), "interrupted": True}, (
        f"the history says the caller was told {last!r}; they heard {heard!r}"
    )
