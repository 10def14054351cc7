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


def test_speaker_posts_each_clause_once_complete_and_stops_when_interrupted():
    posted, current, reads, clock = [], [True], [], FakeClock()

    def still_current():
        reads.append(clock.now)
        return current[0]

    speaker = Speaker(lambda m: posted.append(m) or True, still_current, clock=clock)

    speaker.feed("Our plans start at ten dollars a month. Every plan ")
    assert [m.token for m in posted] == ["Our plans start at ten dollars a month. "]
    clock.now += CONFIRMATION_WINDOW_SECONDS + 0.01  # the model keeps writing; the caller listens
    speaker.feed("includes a free trial. You can ")
    current[0] = False  # the caller barged in
    clock.now += CONFIRMATION_WINDOW_SECONDS + 0.01
    speaker.feed("upgrade any time. Annual plans get two months free.")

    assert [m.last for m in posted] == [False, False] and speaker.finish() is False
    assert len(reads) == 3  # one read per frame: each came after the window had passed


def test_frames_inside_the_confirmation_window_need_no_read():
    posted, reads, clock = [], [], FakeClock()
    speaker = Speaker(
        lambda m: posted.append(m) or True, lambda: reads.append(clock.now) or True, confirmed_at=clock.now, clock=clock
    )

    speaker.feed("Our plans start at ten dollars a month. Every plan includes a free trial. ")
    clock.now += CONFIRMATION_WINDOW_SECONDS / 2
    speaker.feed("You can upgrade at any time from your account page.")
    assert speaker.finish() is True

    assert len(posted) == 3 and reads == []  # the turn's claim confirmed it a moment ago
    clock.now += CONFIRMATION_WINDOW_SECONDS * 2
    late = Speaker(
        lambda m: posted.append(m) or True, lambda: reads.append(clock.now) or False, confirmed_at=100.0, clock=clock
    )
    late.feed("Too late to say this. Really much too late now. ")
    assert late.finish() is False and reads and len(posted) == 3  # stale confirmation: read, and stop


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
    speaker = Speaker(lambda m: posted.append(m) or True, lambda: True)
    words = DEFAULT_REPLY.split(" ")
    for i in range(0, len(words), 2):
        speaker.feed(" ".join(words[i : i + 2]) + " ")
    speaker.finish()

    assert len(posted) == len(clauses(DEFAULT_REPLY))
    assert "".join(m.token for m in posted) == DEFAULT_REPLY and posted[-1].last
