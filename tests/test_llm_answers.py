"""Malformed model answers: every one is a ProviderError (hence apology + handoff), never a crash.

The OpenAI-compatible provider is faked at httpx's transport (and over loopback end to end);
Bedrock answers through botocore from a loopback server, so its own parser sees them first.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_handoff import wiring
from agent_handoff.agent.messages import ChatMessage, Completion, ToolCall
from agent_handoff.agent.openai_chat import OpenAIChatProvider
from agent_handoff.agent.turn import HANDOFF_TOOL
from agent_handoff.config import Settings
from agent_handoff.errors import ProviderError
from conftest import load_handler
from devtools.fakes.llm import LlmAnswer, ScriptedLlmFake
from devtools.fakes.loopback import LoopbackServer, QuietHandler
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params

sms_app = load_handler("inbound_sms")
ASK = [ChatMessage("user", "hello")]


def assert_valid(completion):
    """What the agent relies on: text a string, tool calls with string id/name and dict-or-None arguments."""
    assert isinstance(completion, Completion)
    assert isinstance(completion.text, str) and isinstance(completion.tool_calls, tuple)
    for call in completion.tool_calls:
        assert isinstance(call, ToolCall) and isinstance(call.id, str) and isinstance(call.name, str)
        assert call.arguments is None or isinstance(call.arguments, dict)


def openai(body: bytes, status: int = 200) -> OpenAIChatProvider:
    return OpenAIChatProvider(
        base_url="https://llm.test/v1",
        model="m",
        api_key="k",
        timeout_seconds=5,
        transport=httpx.MockTransport(lambda request: httpx.Response(status, content=body)),
    )


def complete(body: bytes):
    return openai(body).complete("s", ASK, [HANDOFF_TOOL])


def stream(body: bytes):
    return list(openai(body).stream("s", ASK, [HANDOFF_TOOL]))


def sse(*chunks, done=True) -> bytes:
    return LlmAnswer.sse(*chunks, done=done).body


def message(**fields) -> bytes:
    return json.dumps({"choices": [{"message": fields}]}).encode()


def delta(**fields) -> dict:
    return {"choices": [{"index": 0, "delta": fields}]}


# -- the answers that crashed (issue #12, item 6) -------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        message(tool_calls=["x"]),
        message(tool_calls="handoff"),
        message(tool_calls={"id": "c"}),
        message(content=123),
        message(content=["a", "b"]),
        message(tool_calls=[{"id": "c", "function": ["handoff"]}]),
        message(tool_calls=[{"id": 7, "function": {"name": "handoff"}}]),
        message(tool_calls=[{"function": {"name": {"n": 1}, "arguments": "{}"}}]),
        json.dumps({"choices": ["text"]}).encode(),
        json.dumps({"choices": {"0": {}}}).encode(),
        json.dumps([1, 2]).encode(),
        b"[" * 100_000,  # deeper than json's recursion limit
    ],
    ids=[
        "tool_calls-of-strings",
        "tool_calls-string",
        "tool_calls-object",
        "content-number",
        "content-list",
        "function-list",
        "id-number",
        "name-object",
        "choice-string",
        "choices-object",
        "answer-array",
        "deep-nesting",
    ],
)
def test_malformed_complete_answers_are_provider_errors(body):
    with pytest.raises(ProviderError):
        complete(body)


@pytest.mark.parametrize(
    "body",
    [
        sse(delta(tool_calls=[{"index": None, "id": "c", "function": {"name": "handoff"}}])),
        sse(delta(tool_calls=[{"index": "0", "function": {"name": "handoff"}}])),
        sse(delta(tool_calls=["x"])),
        sse(delta(tool_calls=[{"index": 0, "function": "handoff"}])),
        sse(delta(tool_calls=[{"index": 0, "function": {"arguments": {"reason": "x"}}}])),
        sse(delta(content=5)),
        sse({"choices": [{"delta": "hello"}]}),
        sse({"choices": ["x"]}),
        sse(["not", "an", "object"]),
        sse(delta(content="We open at 8"), done=False),
    ],
    ids=[
        "index-null",
        "index-string",
        "tool_calls-of-strings",
        "function-string",
        "arguments-object",
        "content-number",
        "delta-string",
        "choice-string",
        "chunk-array",
        "cut-off-before-done",
    ],
)
def test_malformed_streams_are_provider_errors(body):
    with pytest.raises(ProviderError):
        stream(body)


def test_a_chunk_without_choices_is_skipped_as_azure_sends_it_first():
    body = sse({"choices": [], "prompt_filter_results": []}, delta(content="We open at 8."))
    assert stream(body) == ["We open at 8.", Completion(text="We open at 8.")]


def test_well_formed_answers_still_parse():
    plain = complete(message(content=" We open at 8. ", tool_calls=None))
    assert plain == Completion(text="We open at 8.")
    called = complete(message(content=None, tool_calls=[{"function": {"name": "handoff", "arguments": ""}}]))
    assert called.tool_calls == (ToolCall("call_0", "handoff", {}),)


# -- properties: random JSON in, a valid Completion or ProviderError out --------------------

leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
any_json = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


def shaped(**fields):
    """Mostly an object with some of `fields`, each of its usual shape or random JSON; else any JSON at all."""
    values = {k: v | v | any_json for k, v in fields.items()}
    every, some = st.fixed_dictionaries(values), st.fixed_dictionaries({}, optional=values)
    return st.one_of(every, every, some, any_json)


arguments = st.text(max_size=20) | any_json.map(json.dumps)
function = shaped(name=st.sampled_from(["handoff", "lookup", ""]), arguments=arguments)
tool_call = shaped(id=st.text(max_size=8), type=st.just("function"), function=function)
openai_message = shaped(
    role=st.just("assistant"), content=st.text(max_size=20), tool_calls=st.lists(tool_call, max_size=3)
)
openai_answer = st.one_of(
    st.builds(lambda m: {"choices": [{"index": 0, "message": m}]}, openai_message),  # the usual frame, random inside
    shaped(choices=st.lists(shaped(index=st.integers(0, 2), message=openai_message), max_size=2)),
)

stream_part = shaped(index=st.integers(0, 2) | st.none(), id=st.text(max_size=8), function=function)
stream_delta = shaped(content=st.text(max_size=12), tool_calls=st.lists(stream_part, max_size=2))
stream_chunk = st.one_of(
    st.builds(lambda d: {"choices": [{"index": 0, "delta": d}]}, stream_delta),
    st.builds(lambda d: {"choices": [{"index": 0, "delta": d}]}, stream_delta),
    shaped(choices=st.lists(shaped(index=st.integers(0, 1), delta=stream_delta), max_size=2)),
)
data_line = stream_chunk.map(lambda chunk: "data: " + json.dumps(chunk))
stream_line = st.one_of(
    data_line,
    data_line,
    data_line,
    st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=30),
    st.just(": keep-alive"),
)
stream_body = st.tuples(st.lists(stream_line, max_size=6), st.booleans()).map(
    lambda drawn: drawn[0] + ["data: [DONE]"] if drawn[1] else drawn[0]
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome_of(call):
    try:
        return call()
    except ProviderError:
        return None


@FUZZ
@given(answer=openai_answer | st.binary(max_size=60).map(lambda b: b))
def test_property_complete_answers_a_completion_or_provider_error(answer):
    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    completion = outcome_of(lambda: complete(body))
    if completion is not None:
        assert_valid(completion)


@FUZZ
@given(lines=stream_body)
def test_property_streams_yield_text_then_a_completion_or_provider_error(lines):
    body = "".join(line + "\n\n" for line in lines).encode()
    items = outcome_of(lambda: stream(body))
    if items is not None:
        *texts, completion = items
        assert all(isinstance(t, str) and t for t in texts)
        assert_valid(completion)
        assert completion.text == "".join(texts).strip()


# -- Bedrock Converse: random answers through botocore's own parser --------------------------


class ConverseFake:
    """A loopback Converse endpoint answering whatever JSON the test sets next."""

    def __init__(self):
        self.answer = b"{}"
        fake = self

        class Handler(QuietHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(fake.answer)))
                self.end_headers()
                self.wfile.write(fake.answer)

        self.loop = LoopbackServer(Handler).start()


@pytest.fixture(scope="module")
def bedrock():
    fake = ConverseFake()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.loop.url)
        env = sample.environment(LLM_PROVIDER="bedrock", BEDROCK_MODEL_ID="test.model-v1")
        provider = wiring.chat_provider(Settings.from_mapping(env))

        def ask(answer):
            fake.answer = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            return provider.complete("s", ASK, [HANDOFF_TOOL])

        yield ask
    fake.loop.stop()


def converse(*content):
    return {"output": {"message": {"role": "assistant", "content": list(content)}}, "stopReason": "end_turn"}


@pytest.mark.parametrize(
    "answer",
    [
        converse("text"),
        converse({"text": 1}),
        converse({"toolUse": "handoff"}),
        converse({"toolUse": {"toolUseId": 5, "name": "handoff", "input": {}}}),
        {"output": {"message": {"content": "text"}}},
        {"output": {"message": "hello"}},
        {"output": []},
        b"not json",
    ],
    ids=[
        "block-string",
        "text-number",
        "toolUse-string",
        "id-number",
        "content-string",
        "message-string",
        "output-list",
        "not-json",
    ],
)
def test_malformed_converse_answers_are_provider_errors(bedrock, answer):
    with pytest.raises(ProviderError):
        bedrock(answer)


def test_converse_tool_input_that_is_not_an_object_is_flagged(bedrock):
    completion = bedrock(converse({"toolUse": {"toolUseId": "t", "name": "handoff", "input": "reason: x"}}))
    assert completion.tool_calls == (ToolCall("t", "handoff", None),)


tool_use = shaped(toolUseId=st.text(max_size=8), name=st.sampled_from(["handoff", "x"]), input=any_json)
block = shaped(text=st.text(max_size=12), toolUse=tool_use, reasoningContent=any_json)
converse_content = st.lists(block, max_size=3)
converse_answer = st.one_of(
    st.builds(lambda content: {"output": {"message": {"role": "assistant", "content": content}}}, converse_content),
    shaped(
        output=shaped(message=shaped(role=st.just("assistant"), content=converse_content)),
        stopReason=st.sampled_from(["end_turn", "tool_use"]),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=converse_answer)
def test_property_converse_answers_a_completion_or_provider_error(bedrock, answer):
    completion = outcome_of(lambda: bedrock(answer))
    if completion is not None:
        assert_valid(completion)


# -- what the texter sees ---------------------------------------------------------------------


@pytest.fixture
def scripted_llm(aws, monkeypatch):
    fakes = []

    def start(*answers):
        fake = ScriptedLlmFake(*answers)
        fakes.append(fake)
        monkeypatch.setenv("LLM_PROVIDER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        wiring.reset()
        return fake

    yield start
    for fake in fakes:
        fake.stop()


@pytest.mark.parametrize(
    "answer",
    [
        LlmAnswer.json({"choices": [{"message": {"tool_calls": ["x"]}}]}),
        LlmAnswer.json({"choices": [{"message": "We open at 8."}]}),
        LlmAnswer.json({"choices": [{"message": {"content": {"text": "We open at 8."}}}]}),
    ],
    ids=["tool_calls-of-strings", "message-string", "content-object"],
)
def test_a_malformed_answer_gets_the_texter_an_apology_and_one_handoff(scripted_llm, aws, lambda_context, answer):
    llm = scripted_llm(answer)
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="what's the weather on mars")

    response = sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)

    assert response["statusCode"] == 200
    assert "I'm sorry" in response["body"] and "person will follow up" in response["body"]
    (handoff,) = aws.items("HANDOFF#")
    assert "The AI agent was unavailable" in json.loads(handoff["payload"])["attributes"]["reason"]
    assert len(llm.requests) == 1
