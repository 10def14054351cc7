"""Streaming: the OpenAI-compatible provider's SSE, the agent forwarding text, the caller hearing it early."""

from __future__ import annotations

import json

import httpx
import pytest

from agent_handoff import wiring
from agent_handoff.agent.messages import ChatMessage, Completion, ToolCall
from agent_handoff.agent.openai_chat import OpenAIChatProvider
from agent_handoff.agent.turn import HANDOFF_TOOL, Agent
from agent_handoff.errors import ProviderError
from agent_handoff.handoff import tool_result
from agent_handoff.voice.speaker import CONFIRMATION_WINDOW_SECONDS, Speaker


def sse(*chunks: dict, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def text_chunk(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def provider(body: bytes | None = None, status: int = 200, handler=None) -> OpenAIChatProvider:
    def respond(request):
        assert json.loads(request.content)["stream"] is True
        return httpx.Response(status, content=body, headers={"Content-Type": "text/event-stream"})

    return OpenAIChatProvider(
        base_url="https://llm.test/v1",
        model="m",
        api_key="k",
        timeout_seconds=5,
        transport=httpx.MockTransport(handler or respond),
    )


def test_stream_yields_text_as_it_comes_then_the_completion():
    items = list(
        provider(sse(text_chunk("We open "), text_chunk("at 8am."))).stream(
            "s", [ChatMessage("user", "hours?")], [HANDOFF_TOOL]
        )
    )
    assert items[:2] == ["We open ", "at 8am."]
    assert items[-1] == Completion(text="We open at 8am.")


def test_streamed_tool_call_is_assembled_from_its_pieces():
    chunks = [
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"index": 0, "id": "call_7", "function": {"name": "handoff", "arguments": ""}}]
                    }
                }
            ]
        },
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"reas'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'on": "billing"}'}}]}}]},
    ]
    completion = list(provider(sse(*chunks)).stream("s", [ChatMessage("user", "x")], [HANDOFF_TOOL]))[-1]
    assert completion.tool_calls == (ToolCall("call_7", "handoff", {"reason": "billing"}),)


@pytest.mark.parametrize(
    "make",
    [
        lambda: provider(b"", status=500),
        lambda: provider(b"data: {not json}\n\n"),
        lambda: provider(b'data: {"choices": []}\n\n'),
        lambda: provider(handler=lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request))),
    ],
    ids=["500", "bad-json", "no-choices", "timeout"],
)
def test_stream_failures_are_provider_errors(make):
    with pytest.raises(ProviderError):
        list(make().stream("s", [ChatMessage("user", "x")], []))


class Streaming:
    """A provider that streams scripted deltas and records what the caller had heard at each one."""

    def __init__(self, rounds, heard=None):
        self.rounds = list(rounds)
        self.heard = heard or (lambda: 0)
        self.heard_at = []

    def complete(self, system, messages, tools, *, deadline=None):
        raise AssertionError("a listener is present: the agent must stream")

    def stream(self, system, messages, tools, *, deadline=None):
        deltas, completion = self.rounds.pop(0)
        for delta in deltas:
            self.heard_at.append(self.heard())
            yield delta
        yield completion


def test_agent_speaks_what_streams_and_the_reply_is_what_was_said():
    said = []
    streaming = Streaming([(["Sure, ", "we open at 8. ", "Anything else?"], Completion(text="x"))])

    outcome = Agent(streaming, channel="VOICE", handoff_reply="bye").take_turn(
        [], "hours?", unresolved_attempts=0, on_handoff=lambda r: tool_result("VOICE"), speak=said.append
    )

    assert said == ["Sure, ", "we open at 8. ", "Anything else?"]
    assert outcome.reply == "Sure, we open at 8. Anything else?"


def test_streamed_handoff_speaks_both_rounds():
    said = []
    streaming = Streaming(
        [
            (["One moment. "], Completion(text="One moment.", tool_calls=(ToolCall("c", "handoff", {"reason": "r"}),))),
            (["A colleague will take over now."], Completion(text="A colleague will take over now.")),
        ]
    )

    outcome = Agent(streaming, channel="VOICE", handoff_reply="bye").take_turn(
        [],
        "my router keeps failing",
        unresolved_attempts=0,
        on_handoff=lambda r: tool_result("VOICE"),
        speak=said.append,
    )

    assert outcome.handed_off and "".join(said) == "One moment. A colleague will take over now."


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowReply:
    """A speaker fed a reply whose clauses come one confirmation window apart, as a slow model writes."""

    PIECES = (
        "Our plans start at ten dollars a month. Every plan ",
        "includes a free trial. You can ",
        "upgrade any time. ",
    )
    LAST = "Annual plans get two months free."

    def __init__(self, *, current=True, confirmed_at=None) -> None:
        self.posted, self.reads, self.events, self.clock = [], [], [], FakeClock()
        self.current = current
        self.speaker = Speaker(self._send, self._read, confirmed_at=confirmed_at, clock=self.clock)

    def _send(self, message) -> bool:
        self.posted.append(message)
        self.events.append("post")
        return True

    def _read(self, opening: str) -> bool:
        self.reads.append(self.clock.now)
        return self.current

    def commit(self) -> bool:
        self.events.append("commit")
        return self.current

    def play(self, *, barge_in_after: int | None = None) -> bool:
        for i, piece in enumerate(self.PIECES):
            if barge_in_after == i:
                self.current = False
            self.speaker.feed(piece)
            self.clock.now += CONFIRMATION_WINDOW_SECONDS + 0.01  # the model keeps writing; the caller listens
        self.speaker.feed(self.LAST)
        return self.speaker.finish(self.commit)


def test_a_slow_reply_reads_its_turn_once_and_its_closing_write_confirms_the_rest():
    reply = SlowReply()

    assert reply.play() is True
    assert len(reply.reads) == 1  # one read, for the first clause; the claim was too long ago
    assert [m.token for m in reply.posted] == [
        "Our plans start at ten dollars a month. ",
        "Every plan includes a free trial. You can upgrade any time. Annual plans get two months free.",
    ]
    assert [m.last for m in reply.posted] == [False, True]
    assert reply.events == ["post", "commit", "post"]  # the held clauses went out once the turn was confirmed


def test_an_interrupt_after_the_first_clause_stops_everything_held():
    reply = SlowReply()

    assert reply.play(barge_in_after=1) is False

    assert [m.token for m in reply.posted] == ["Our plans start at ten dollars a month. "]
    assert len(reply.reads) == 1 and reply.events == ["post", "commit"]  # the closing write saw the new turn


def test_an_interrupt_the_read_sees_stops_the_reply_before_its_first_clause():
    reply = SlowReply(current=False)

    assert reply.play() is False
    assert reply.posted == [] and len(reply.reads) == 1 and reply.events == []  # no history claims unsaid words


def test_prompt_costs_at_most_one_read_however_many_clauses():
    posted, reads, clock = [], [], FakeClock()
    speaker = Speaker(lambda m: posted.append(m) or True, lambda _opening: reads.append(1) or True, clock=clock)
    for _ in range(20):
        speaker.feed("This clause arrives long after the one before it. ")
        clock.now += 1.0
    assert speaker.finish() is True
    assert len(reads) == 1 and len(posted) == 2 and posted[-1].last


def test_a_fresh_last_frame_is_posted_before_the_closing_write():
    events, clock = [], FakeClock()
    speaker = Speaker(
        lambda m: events.append("post") or True, lambda _opening: True, confirmed_at=clock.now, clock=clock
    )
    speaker.feed("We open Monday to Friday from eight until six. ")
    speaker.feed("Is there anything else I can help you with today?")
    assert speaker.finish(lambda: events.append("commit") or True) is True
    assert events == ["post", "post", "commit"]  # the caller's last words wait for no write


def test_a_failed_post_skips_the_closing_write():
    committed = []
    speaker = Speaker(lambda m: False, lambda _opening: True, confirmed_at=FakeClock().now, clock=FakeClock())
    speaker.feed("Sure, we open at eight.")
    assert speaker.finish(lambda: committed.append(1) or True) is False
    assert committed == []


def test_frames_inside_the_confirmation_window_need_no_read():
    posted, reads, clock = [], [], FakeClock()
    speaker = Speaker(
        lambda m: posted.append(m) or True,
        lambda _opening: reads.append(clock.now) or True,
        confirmed_at=clock.now,
        clock=clock,
    )

    speaker.feed("Our plans start at ten dollars a month. Every plan includes a free trial. ")
    clock.now += CONFIRMATION_WINDOW_SECONDS / 2
    speaker.feed("You can upgrade at any time from your account page.")
    assert speaker.finish() is True

    assert len(posted) == 3 and reads == []  # the turn's claim confirmed it a moment ago
    clock.now += CONFIRMATION_WINDOW_SECONDS * 2
    late = Speaker(
        lambda m: posted.append(m) or True,
        lambda _opening: reads.append(clock.now) or False,
        confirmed_at=100.0,
        clock=clock,
    )
    late.feed("Too late to say this, a clause of its own. Really much too late now. ")
    assert late.finish() is False and reads and len(posted) == 3  # stale confirmation: read, and stop
    overtaken = Speaker(
        lambda m: posted.append(m) or True, lambda _opening: reads.append(1) or True, confirmed_at=100.0
    )
    overtaken.feed("Only a last frame, and its turn was overtaken.")
    assert overtaken.finish(lambda: False) is False and len(posted) == 3  # the closing write said so


def test_caller_hears_the_first_clause_before_the_model_finishes(connections, voice_call, monkeypatch):
    call = voice_call()
    deltas = [
        "Our plans start ",
        "at ten dollars a month. ",
        "Every plan includes ",
        "a free trial. ",
        "Annual plans get two months free.",
    ]
    streaming = Streaming(
        [(deltas, Completion(text="".join(deltas)))],
        heard=lambda: len(connections.frames.get(call.connection_id, [])),
    )
    monkeypatch.setattr(wiring, "chat_provider", lambda settings: streaming)
    wiring.reset()
    call.dial()
    call.connect()
    call.setup()

    frames = call.say("tell me about pricing")

    assert streaming.heard_at[-1] >= 1  # a frame was out while the model was still writing
    assert call.spoken(frames) == "".join(deltas)
    assert [f["last"] for f in frames] == [False] * (len(frames) - 1) + [True]


def test_a_streamed_reply_costs_one_frame_per_clause():
    from agent_handoff.voice.speech import clauses
    from devtools.fakes.llm import DEFAULT_REPLY

    posted = []
    speaker = Speaker(lambda m: posted.append(m) or True, lambda _opening: True)
    words = DEFAULT_REPLY.split(" ")
    for i in range(0, len(words), 2):
        speaker.feed(" ".join(words[i : i + 2]) + " ")
    speaker.finish()

    assert len(posted) == len(clauses(DEFAULT_REPLY))
    assert "".join(m.token for m in posted) == DEFAULT_REPLY and posted[-1].last


def test_the_check_is_given_the_answer_as_it_will_open_once_its_clause_is_out():
    """What an interrupt is matched against (CallStore.confirm_speaking keeps it): the words already
    said and the clause waiting on the check, so a late interrupt of the answer before can be told apart."""
    openings, clock = [], FakeClock()
    speaker = Speaker(
        lambda m: True, lambda opening: openings.append(opening) or True, confirmed_at=clock.now, clock=clock
    )
    speaker.feed("Sure, I can help with that today. ")
    speaker.feed("Our plans start at ten dollars. ")  # kept until the next words show it is not the end
    clock.now += 1.0
    speaker.feed("Every plan has a free trial of thirty days. ")
    speaker.feed("Ask me anything else.")
    assert openings == ["Sure, I can help with that today. Our plans start at ten dollars."]
