"""The LLM budget is per call and per turn, never per socket read (issue #12, item 5).

A loopback model trickles its answer: each piece comes well inside any read timeout, so only a
bound on the whole call stops it. Bedrock answers through botocore from a loopback server.
"""

from __future__ import annotations

import json
import time

import pytest

from agent_handoff import wiring
from agent_handoff.agent.messages import ChatMessage, Completion
from agent_handoff.agent.openai_chat import OpenAIChatProvider
from agent_handoff.agent.turn import HANDOFF_TOOL, Agent
from agent_handoff.config import Settings
from agent_handoff.deadline import Deadline
from agent_handoff.errors import ProviderError
from agent_handoff.handoff import tool_result
from devtools.fakes.llm import LlmAnswer, ScriptedLlmFake
from devtools.fakes.loopback import LoopbackServer, QuietHandler
from devtools.samples import sample

ASK = [ChatMessage("user", "what are your opening hours?")]
WORDS = [{"choices": [{"index": 0, "delta": {"content": f"word{i} "}}]} for i in range(120)]


def trickling_stream(every=0.1):
    """120 chunks, one every `every` seconds: 12 s of answer, never a silence a read timeout would catch."""
    return LlmAnswer.sse(*WORDS, dribble=every)


def trickling_body(every=0.1):
    answer = {"choices": [{"message": {"role": "assistant", "content": "We open at eight. " * 20}}]}
    return LlmAnswer.json(answer, dribble=every, piece=4)


@pytest.fixture
def llm():
    fakes = []

    def start(*answers):
        fake = ScriptedLlmFake(*answers)
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.stop()


def provider(fake, cap):
    return OpenAIChatProvider(base_url=fake.base_url, model="m", api_key="k", timeout_seconds=cap)


def timed(fn):
    started = time.monotonic()
    try:
        return fn(), time.monotonic() - started
    except ProviderError as exc:
        return exc, time.monotonic() - started


def test_a_trickled_stream_stops_at_the_per_call_cap(llm):
    fake = llm(trickling_stream())

    result, elapsed = timed(lambda: list(provider(fake, cap=1.0).stream("s", ASK, [])))

    assert isinstance(result, ProviderError) and "deadline" in str(result)
    assert 0.9 < elapsed < 1.5


def test_a_trickled_whole_answer_stops_at_the_per_call_cap(llm):
    fake = llm(trickling_body())

    result, elapsed = timed(lambda: provider(fake, cap=1.0).complete("s", ASK, []))

    assert isinstance(result, ProviderError)
    assert 0.9 < elapsed < 1.5


@pytest.mark.parametrize("mode", ["stream", "complete"])
def test_the_turn_deadline_bounds_a_call_below_its_cap(llm, mode):
    fake = llm(trickling_stream() if mode == "stream" else trickling_body())
    chat = provider(fake, cap=8.0)
    deadline = Deadline.after(0.8)

    if mode == "stream":
        result, elapsed = timed(lambda: list(chat.stream("s", ASK, [], deadline=deadline)))
    else:
        result, elapsed = timed(lambda: chat.complete("s", ASK, [], deadline=deadline))

    assert isinstance(result, ProviderError)
    assert 0.7 < elapsed < 1.2


def test_a_call_without_time_left_is_not_started(llm):
    fake = llm(LlmAnswer.json({"choices": [{"message": {"content": "hi"}}]}))

    with pytest.raises(ProviderError, match="no time left"):
        provider(fake, cap=8.0).complete("s", ASK, [], deadline=Deadline.after(0.1))

    assert fake.requests == []


def test_a_prompt_answer_inside_the_deadline_is_unaffected(llm):
    fake = llm(LlmAnswer.sse(*WORDS[:3]))
    items = list(provider(fake, cap=2.0).stream("s", ASK, [], deadline=Deadline.after(2.0)))
    assert items[-1] == Completion(text="word0 word1 word2")


def test_two_calls_of_a_handoff_turn_share_one_deadline(llm):
    """The model calls the handoff tool in 0.5 s, then trickles its goodbye: the turn ends on time."""
    handoff_call = {
        "choices": [
            {"message": {"tool_calls": [{"id": "c1", "function": {"name": "handoff", "arguments": '{"reason": "r"}'}}]}}
        ]
    }
    fake = llm(LlmAnswer.json(handoff_call, dribble=0.1, piece=40), trickling_body())
    agent = Agent(provider(fake, cap=5.0), channel="SMS", handoff_reply="A person will follow up.")
    reasons = []

    def on_handoff(request):
        reasons.append(request.reason)
        return tool_result("SMS")

    started = time.monotonic()
    outcome = agent.take_turn(
        [], "my router is broken", unresolved_attempts=0, on_handoff=on_handoff, deadline=Deadline.after(1.5)
    )
    elapsed = time.monotonic() - started

    assert outcome.handed_off and outcome.reply == "A person will follow up." and reasons == ["r"]
    assert len(fake.requests) == 2 and elapsed < 1.8


# -- Bedrock: one client with the per-call cap as its read timeout, each call bounded ---------


class SlowConverse:
    """A loopback Converse endpoint that answers after `delay` seconds."""

    def __init__(self, delay):
        self.delay, self.requests = delay, 0
        fake = self

        class Handler(QuietHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests += 1
                time.sleep(fake.delay)
                body = json.dumps(
                    {"output": {"message": {"role": "assistant", "content": [{"text": "We open at 8."}]}}}
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.loop = LoopbackServer(Handler).start()


@pytest.fixture
def bedrock(monkeypatch):
    servers = []

    def start(delay, cap="5"):
        server = SlowConverse(delay)
        servers.append(server)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.loop.url)
        env = sample.environment(LLM_PROVIDER="bedrock", BEDROCK_MODEL_ID="m.v1", LLM_TIMEOUT_SECONDS=cap)
        return server, wiring.chat_provider(Settings.from_mapping(env))

    yield start
    for server in servers:
        server.loop.stop()


def test_bedrock_client_reads_no_longer_than_the_per_call_cap(bedrock):
    _, chat = bedrock(delay=0.0, cap="2.5")
    assert chat._client.meta.config.read_timeout == 2.5
    assert chat._client.meta.config.retries["total_max_attempts"] == 1


def test_bedrock_call_is_abandoned_at_the_turn_deadline(bedrock):
    server, chat = bedrock(delay=3.0)

    result, elapsed = timed(lambda: chat.complete("s", ASK, [HANDOFF_TOOL], deadline=Deadline.after(0.8)))

    assert isinstance(result, ProviderError) and server.requests == 1
    assert 0.7 < elapsed < 1.2


def test_bedrock_does_not_start_a_call_it_has_no_time_for(bedrock):
    server, chat = bedrock(delay=0.0)

    with pytest.raises(ProviderError, match="no time left"):
        chat.complete("s", ASK, [], deadline=Deadline.after(0.2))

    assert server.requests == 0
    assert chat.complete("s", ASK, [], deadline=Deadline.after(2.0)).text == "We open at 8."
