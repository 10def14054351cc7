"""Voice latency: what a prompt costs in DynamoDB calls, and barge-in, with a model that writes slowly."""

from __future__ import annotations

import time

import pytest

from agent_handoff import wiring
from agent_handoff.agent.messages import Completion
from agent_handoff.voice.speaker import CONFIRMATION_WINDOW_SECONDS
from tests.test_voice import assert_protocol, stored_call

CLAUSES = [
    "Our plans start at ten dollars a month. ",
    "Every plan includes a free trial of thirty days. ",
    "You can upgrade at any time from your account page. ",
    "Annual plans get two months free, paid up front. ",
    "Students and charities get a further discount. ",
    "Is there anything else I can help you with today?",
]


class SlowModel:
    """Streams one clause per confirmation window and a bit: every clause finds its confirmation stale.

    `calls` counts the DynamoDB requests made so far each time the model is asked and writes.
    """

    def __init__(self, counter, *, during=None) -> None:
        self.counter = counter
        self.during = during or (lambda i: None)
        self.calls_when_asked: list[int] = []

    def complete(self, system, messages, tools, *, deadline=None):
        raise AssertionError("a listener is present: the agent must stream")

    def stream(self, system, messages, tools, *, deadline=None):
        self.calls_when_asked.append(len(self.counter))
        for i, clause in enumerate(CLAUSES):
            time.sleep(CONFIRMATION_WINDOW_SECONDS + 0.03)
            self.during(i)
            yield clause
        yield Completion(text="".join(CLAUSES))


@pytest.fixture
def dynamodb_calls(aws):
    """Operation names of every DynamoDB request the functions' client makes, in order."""
    calls: list[str] = []
    client = wiring.aws_client("dynamodb")
    client.meta.events.register("before-send.dynamodb", lambda event_name, **_: calls.append(event_name.split(".")[2]))
    return calls


def answered_call(voice_call, monkeypatch, model):
    monkeypatch.setattr(wiring, "chat_provider", lambda settings: model)
    call = voice_call()
    call.dial()
    call.connect()
    call.setup()  # this container now knows the connection's call: the prompts below are warm
    return call


def test_a_slow_reply_of_many_clauses_costs_three_dynamodb_calls_one_before_the_model(
    voice_call, monkeypatch, aws, dynamodb_calls
):
    model = SlowModel(dynamodb_calls)
    call = answered_call(voice_call, monkeypatch, model)

    for prompt in ("tell me about pricing", "and for students?"):
        before = len(dynamodb_calls)
        frames = call.say(prompt)
        made = dynamodb_calls[before:]

        assert made == [
            "UpdateItem",
            "UpdateItem",
            "UpdateItem",
        ]  # claim, one check (marks it speaking), the closing write
        assert model.calls_when_asked[-1] == before + 1  # one round trip before the model is asked
        assert call.spoken(frames) == "".join(CLAUSES)
        assert frames[-1]["last"] is True and all(f["last"] is False for f in frames[:-1])
    assert stored_call(aws, call.call_sid)["history"][-1]["text"] == "".join(CLAUSES)
    assert_protocol(call)


def test_an_interrupt_during_a_slow_reply_stops_it_within_one_clause(voice_call, monkeypatch, aws, dynamodb_calls):
    heard = "Our plans start at ten dollars"
    calls: list = []

    def barge_in(i: int) -> None:
        if i == 2 and len(calls) == 1:  # the caller has heard the first clause and talks over the reply
            calls.append(calls[0].interrupt(heard))

    call = answered_call(voice_call, monkeypatch, SlowModel(dynamodb_calls, during=barge_in))
    calls.append(call)

    before = len(call.frames)
    call.say("tell me about pricing")
    reply = [f for f in call.frames[before:] if f.get("type") == "text"]

    # The first clause went out after the one read; the second was held and never sent.
    assert [f["token"] for f in reply] == [CLAUSES[0]]
    history = stored_call(aws, call.call_sid)["history"]
    assert history[-2:] == [
        {"role": "user", "text": "tell me about pricing"},
        {"role": "assistant", "text": heard, "interrupted": True},
    ]

    after = call.say("what are your hours")  # the call goes on normally
    assert after[-1]["last"] is True
    assert_protocol(call)
