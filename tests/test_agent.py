"""The agent turn, the escalation policy and the three providers (HTTP faked at the transport)."""

from __future__ import annotations

import json

import httpx
import pytest

from agent_handoff import wiring
from agent_handoff.agent.messages import ChatMessage, Completion, ToolCall
from agent_handoff.agent.openai_chat import OpenAIChatProvider
from agent_handoff.agent.policy import EscalationPolicy
from agent_handoff.agent.rules import RulesProvider
from agent_handoff.agent.turn import HANDOFF_TOOL, Agent
from agent_handoff.config import Settings
from agent_handoff.errors import ProviderError
from agent_handoff.handoff import tool_result
from agent_handoff.storage.records import Turn
from devtools.fakes.loopback import LoopbackServer, QuietHandler
from devtools.samples import sample

REPLY = "A person will follow up with you here shortly."


@pytest.mark.parametrize(
    ("text", "trigger"),
    [
        ("Can I speak to a human?", "human_requested"),
        ("let me talk with a real person", "human_requested"),
        ("REPRESENTATIVE", "human_requested"),
        ("agent please", "human_requested"),
        ("please transfer me to someone", "human_requested"),
        ("I was charged twice this month", "billing_dispute"),
        ("I want to dispute a charge", "billing_dispute"),
        ("there's an unauthorized charge on my card", "billing_dispute"),
        ("I think my account was hacked", "account_security"),
        ("someone logged into my account", "account_security"),
        ("suspicious login from another country", "account_security"),
        ("this is ridiculous", "frustration"),
        ("WHY IS THIS NOT WORKING AT ALL", "frustration"),
        ("answer me!!!", "frustration"),
        ("what are your opening hours?", None),
        ("my order hasn't arrived", None),
        ("I'm human and my password doesn't reset", None),
        ("Hi", None),
    ],
)
def test_policy_triggers(text, trigger):
    escalation = EscalationPolicy().before_turn(text, unresolved_attempts=0)
    assert (escalation.trigger if escalation else None) == trigger


def test_repeated_non_resolution_escalates():
    policy = EscalationPolicy()
    assert policy.before_turn("that didn't help", unresolved_attempts=0) is None
    assert policy.before_turn("still not working", unresolved_attempts=1).trigger == "unresolved"


class Scripted:
    """A provider that plays back completions and records what it was sent."""

    def __init__(self, *completions):
        self.completions = list(completions)
        self.seen = []

    def complete(self, system, messages, tools, *, deadline=None):
        self.seen.append((system, list(messages), list(tools)))
        item = self.completions.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def run(provider, text="hello", *, history=(), attempts=0, channel="SMS"):
    reasons = []

    def on_handoff(request):
        reasons.append(request.reason)
        return tool_result(channel)

    outcome = Agent(provider, channel=channel, handoff_reply=REPLY).take_turn(
        list(history), text, unresolved_attempts=attempts, on_handoff=on_handoff
    )
    return outcome, reasons


def test_plain_answer():
    provider = Scripted(Completion(text="We open at 8."))
    outcome, reasons = run(provider, "when do you open?", history=[Turn("user", "hi"), Turn("assistant", "hello")])
    assert outcome.reply == "We open at 8." and not outcome.handed_off and reasons == []
    system, messages, tools = provider.seen[0]
    assert "handoff" in system and [t.name for t in tools] == ["handoff"]
    assert [(m.role, m.text) for m in messages] == [
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "when do you open?"),
    ]


def test_llm_tool_call_hands_off_and_the_model_hears_the_real_result():
    provider = Scripted(
        Completion(text="", tool_calls=(ToolCall("call_1", "handoff", {"reason": "Wants a refund on order 42"}),)),
        Completion(text="I've asked a colleague to take over; they'll text you soon."),
    )
    outcome, reasons = run(provider, "order 42 arrived broken")
    assert reasons == ["Wants a refund on order 42"]
    assert outcome.handed_off and outcome.trigger == "llm"
    assert outcome.reply == "I've asked a colleague to take over; they'll text you soon."
    _, messages, tools = provider.seen[1]
    assert tools == []  # no second handoff from the same turn
    assert messages[-1].role == "tool" and messages[-1].tool_result == {"status": "handoff_initiated", "channel": "SMS"}


def test_failed_handoff_is_never_claimed():
    provider = Scripted(
        Completion(text="", tool_calls=(ToolCall("c", "handoff", {"reason": "x"}),)), Completion(text="")
    )
    agent = Agent(provider, channel="SMS", handoff_reply=REPLY)
    outcome = agent.take_turn(
        [], "help", unresolved_attempts=0, on_handoff=lambda r: tool_result("SMS", error="Studio unreachable")
    )
    assert not outcome.handed_off and "try again" in outcome.reply
    assert provider.seen[1][1][-1].tool_result["status"] == "handoff_failed"


def test_malformed_tool_arguments_still_hand_off():
    provider = Scripted(Completion(text="", tool_calls=(ToolCall("c", "handoff", None),)), ProviderError("down"))
    outcome, reasons = run(provider, "help")
    assert outcome.handed_off and reasons == ["The AI agent asked for a human without giving a reason."]
    assert outcome.reply == REPLY


def test_unknown_tool_is_answered_with_an_error():
    provider = Scripted(
        Completion(text="", tool_calls=(ToolCall("a", "lookup_order", {}), ToolCall("b", "handoff", {"reason": "r"}))),
        Completion(text="ok"),
    )
    run(provider)
    tool_messages = [m for m in provider.seen[1][1] if m.role == "tool"]
    assert [m.tool_result.get("status") for m in tool_messages] == ["error", "handoff_initiated"]


@pytest.mark.parametrize("failure", [ProviderError("timed out"), Completion(text="")])
def test_llm_failure_or_silence_apologises_and_hands_off(failure):
    outcome, reasons = run(Scripted(failure))
    assert outcome.handed_off and outcome.trigger == "agent_error"
    assert outcome.reply.startswith("I'm sorry") and outcome.reply.endswith(REPLY)
    assert len(reasons) == 1


def test_rules_provider_falls_back_then_escalates():
    first, _ = run(RulesProvider(), "quantum widget?")
    assert not first.handed_off and first.unresolved_attempts == 1
    second, reasons = run(RulesProvider(), "quantum widget!", attempts=1)
    assert second.handed_off and second.trigger == "unresolved" and len(reasons) == 1


# -- OpenAI-compatible provider, faked at httpx's transport --------------------------------


def openai_provider(handler, timeout=5.0):
    return OpenAIChatProvider(
        base_url="https://llm.test/v1",
        model="m",
        api_key="sk-test",
        timeout_seconds=timeout,
        transport=httpx.MockTransport(handler),
    )


def test_openai_request_and_tool_call_parsing():
    sent = []

    def handler(request):
        sent.append(request)
        return httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call_9",
                                    "type": "function",
                                    "function": {"name": "handoff", "arguments": '{"reason": "angry"}'},
                                }
                            ],
                        }
                    }
                ]
            },
        )

    completion = openai_provider(handler).complete(
        "sys",
        [ChatMessage("user", "hi"), ChatMessage.tool(ToolCall("call_0", "handoff", {}), {"status": "x"})],
        [HANDOFF_TOOL],
    )
    assert completion.tool_calls == (ToolCall("call_9", "handoff", {"reason": "angry"}),)
    request = sent[0]
    assert request.url == "https://llm.test/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_0", "content": '{"status": "x"}'}
    assert body["tools"][0]["function"]["name"] == "handoff"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["reason"]


def test_openai_malformed_arguments_are_flagged_not_crashed():
    def handler(request):
        return httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "message": {
                            "content": "",
                            "tool_calls": [{"id": "c", "function": {"name": "handoff", "arguments": "{reason: oops"}}],
                        }
                    }
                ]
            },
        )

    assert openai_provider(handler).complete("s", [ChatMessage("user", "x")], []).tool_calls[0].arguments is None


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, text="boom"),
        httpx.Response(429, json={}),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json={"choices": [{"message": "text"}]}),
    ],
    ids=["500", "429", "not-json", "no-choices", "bad-message"],
)
def test_openai_bad_answers_raise_provider_error(response):
    with pytest.raises(ProviderError):
        openai_provider(lambda request: response).complete("s", [ChatMessage("user", "x")], [])


def test_openai_timeout_raises_provider_error():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderError, match="timed out"):
        openai_provider(handler).complete("s", [ChatMessage("user", "x")], [])


# -- Bedrock Converse, against a loopback server that speaks its JSON ----------------------


class ConverseServer:
    def __init__(self, answers):
        self.answers, self.requests = list(answers), []
        server = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append((self.path, dict(self.headers), json.loads(body)))
                status, answer = server.answers.pop(0)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status >= 400:
                    self.send_header("x-amzn-ErrorType", answer.get("__type", "InternalServerException"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.loop = LoopbackServer(Handler).start()

    @property
    def url(self):
        return self.loop.url


@pytest.fixture
def converse(monkeypatch):
    servers = []

    def start(*answers):
        server = ConverseServer(answers)
        servers.append(server)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.url)
        settings = Settings.from_mapping(sample.environment(LLM_PROVIDER="bedrock", BEDROCK_MODEL_ID="test.model-v1"))
        return server, wiring.chat_provider(settings)

    yield start
    for server in servers:
        server.loop.stop()


def test_bedrock_converse_tool_use(converse):
    server, provider = converse(
        (
            200,
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [
                            {"text": "Let me get someone."},
                            {"toolUse": {"toolUseId": "tu1", "name": "handoff", "input": {"reason": "billing"}}},
                        ],
                    }
                },
                "stopReason": "tool_use",
                "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                "metrics": {"latencyMs": 1},
            },
        )
    )

    completion = provider.complete(
        "sys", [ChatMessage("assistant", "hello"), ChatMessage("user", "a"), ChatMessage("user", "b")], [HANDOFF_TOOL]
    )

    assert completion.text == "Let me get someone."
    assert completion.tool_calls == (ToolCall("tu1", "handoff", {"reason": "billing"}),)
    path, headers, body = server.requests[0]
    assert path == "/model/test.model-v1/converse"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256")
    assert body["system"] == [{"text": "sys"}]
    # Converse wants the user first and alternating roles: the greeting is dropped, the two user texts merged.
    assert body["messages"] == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == ["reason"]


def test_bedrock_error_is_a_provider_error(converse):
    _, provider = converse((400, {"__type": "ValidationException", "message": "bad"}))
    with pytest.raises(ProviderError, match="ValidationException"):
        provider.complete("s", [ChatMessage("user", "x")], [])


def test_an_empty_message_reaches_bedrock_as_a_user_turn(converse):
    """An MMS with no text has an empty Body. Converse wants the conversation to end with a user
    turn, and an empty text block is no block: the model must see the message as something, not
    a conversation ending on its own reply (Bedrock refuses that, and the customer is handed off
    for nothing)."""
    answer = {
        "output": {"message": {"role": "assistant", "content": [{"text": "What can I help you with?"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
        "metrics": {"latencyMs": 1},
    }
    server, provider = converse((200, answer))
    agent = Agent(provider, channel="SMS", handoff_reply="A person will follow up.")

    outcome = agent.take_turn(
        (Turn("user", "hi"), Turn("assistant", "Hello! How can I help?")),
        "",
        unresolved_attempts=0,
        on_handoff=lambda reason: tool_result("SMS"),
    )

    sent = server.requests[0][2]["messages"]
    assert sent[-1] == {"role": "user", "content": [{"text": "(no text)"}]}
    assert not outcome.handed_off and outcome.reply == "What can I help you with?"
