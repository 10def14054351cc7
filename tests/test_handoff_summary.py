"""The handoff's `summary`: the model's when it wrote one (every provider passes it through), else one
built from the last turns; bounded, cut at a word, and without card numbers."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from agent_handoff import wiring
from agent_handoff.agent.messages import ChatMessage, Completion, ToolCall
from agent_handoff.agent.openai_chat import OpenAIChatProvider
from agent_handoff.agent.summary import QUOTE_MAX, conversation_summary
from agent_handoff.agent.turn import HANDOFF_TOOL, Agent, HandoffRequest
from agent_handoff.config import Settings
from agent_handoff.errors import ProviderError
from agent_handoff.handoff import SUMMARY_MAX, build_payload, tool_result
from agent_handoff.pan_redaction import MASK, redact_pans
from agent_handoff.payload_limits import ELLIPSIS
from agent_handoff.storage.records import Turn
from conftest import load_handler
from devtools.fakes.llm import LlmAnswer, ScriptedLlmFake
from devtools.fakes.loopback import LoopbackServer, QuietHandler
from devtools.samples import sample
from devtools.samples.events import DEFAULT_HOST, http_api_event, sms_params
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")
HISTORY = (
    Turn("user", "My parcel never arrived"),
    Turn("assistant", "You can track an order with the link in your confirmation email."),
    Turn("user", "The link says delivered but it is not here"),
    Turn("assistant", "I'm sorry, I can't help with that yet."),
)


def handoff_call(**arguments) -> Completion:
    return Completion(text="", tool_calls=(ToolCall("call_1", "handoff", arguments),))


class Scripted:
    def __init__(self, *answers):
        self.answers = list(answers)

    def complete(self, system, messages, tools, *, deadline=None):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def requested(provider, text="still nothing", history=HISTORY, channel="SMS") -> HandoffRequest:
    seen: list[HandoffRequest] = []

    def on_handoff(request):
        seen.append(request)
        return tool_result(channel)

    Agent(provider, channel=channel, handoff_reply="A person will follow up.").take_turn(
        list(history), text, unresolved_attempts=0, on_handoff=on_handoff
    )
    (request,) = seen
    return request


# -- where the summary comes from ----------------------------------------------------------------


def test_the_models_summary_is_passed_through_with_its_reason():
    written = "Parcel 1182 shows delivered but never arrived; tracking link checked. Wants a reship or refund."
    request = requested(Scripted(handoff_call(reason="Missing parcel", summary=written), Completion("On it.")))

    assert request == HandoffRequest("Missing parcel", written, "llm")


@pytest.mark.parametrize(
    "written", [None, "", "   ", 42, ["a list"]], ids=["absent", "empty", "blank", "number", "list"]
)
def test_without_a_usable_model_summary_one_is_built_from_the_last_turns(written):
    arguments = {"reason": "Missing parcel"} | ({} if written is None else {"summary": written})
    request = requested(Scripted(handoff_call(**arguments), Completion("On it.")))

    assert request.summary == (
        "The customer said, latest last: \u201cMy parcel never arrived\u201d / \u201cThe link says delivered but "
        "it is not here\u201d / \u201cstill nothing\u201d. The AI agent last answered: \u201cI'm sorry, I can't "
        "help with that yet.\u201d"
    )


def test_a_policy_trigger_and_a_failed_model_get_the_built_summary_too():
    by_policy = requested(Scripted(), text="I want to talk to a real person")
    failed = requested(Scripted(ProviderError("timeout")), text="hello?")

    assert by_policy.trigger == "human_requested" and "\u201cI want to talk to a real person\u201d" in by_policy.summary
    assert failed.trigger == "agent_error" and failed.summary.endswith(
        "\u201cI'm sorry, I can't help with that yet.\u201d"
    )


def test_the_built_summary_keeps_the_last_three_messages_quoted_and_short():
    history = [Turn("user", f"message {i} " + "word " * 60) for i in range(5)]

    summary = conversation_summary(history, "  the   latest\nline ", channel="VOICE")

    assert summary.startswith("The caller said, latest last: \u201cmessage 3 word")
    assert "message 2" not in summary and summary.count("\u201c") == 3
    assert "\u201cthe latest line\u201d." in summary and "The AI agent had not answered yet." in summary
    assert all(len(quote.split("\u201d")[0]) <= 140 for quote in summary.split("\u201c")[1:])
    assert conversation_summary([], "", channel="SMS") == ""


# -- every provider passes the model's summary through -------------------------------------------


def test_openai_compatible_provider_passes_the_summary_through_end_to_end(aws, lambda_context, monkeypatch):
    written = "Wants to cancel order 77 before it ships; asked twice, the AI could not cancel orders."
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "handoff", "arguments": json.dumps({"reason": "Cancel order 77", "summary": written})},
    }
    answers = (
        LlmAnswer.json({"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}),
        LlmAnswer.json({"choices": [{"message": {"role": "assistant", "content": "A colleague will text you."}}]}),
    )
    with ScriptedLlmFake(*answers) as fake:
        monkeypatch.setenv("LLM_PROVIDER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        wiring.reset()
        params = sms_params(account_sid=sample.ACCOUNT_SID, body="please cancel order 77")
        sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)
        tools = fake.requests[0]["tools"][0]["function"]["parameters"]

    assert tools["properties"]["summary"]["type"] == "string" and tools["required"] == ["reason"]
    (handoff,) = aws.items("HANDOFF#")
    attributes = json.loads(handoff["payload"])["attributes"]
    assert attributes["reason"] == "Cancel order 77" and attributes["summary"] == written


def test_a_streamed_tool_call_keeps_its_summary_across_chunks():
    arguments = json.dumps({"reason": "Refund", "summary": "Charged twice for order 9; wants one charge back."})
    chunks = [
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "handoff"}}]}}
            ]
        }
    ] + [
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 7]}}]}}
            ]
        }
        for i in range(0, len(arguments), 7)
    ]
    body = LlmAnswer.sse(*chunks).body
    provider = OpenAIChatProvider(
        base_url="https://llm.test/v1",
        model="m",
        api_key="k",
        timeout_seconds=5,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body)),
    )

    *_, completion = provider.stream("s", [ChatMessage("user", "refund")], [HANDOFF_TOOL])

    assert completion.tool_calls[0].arguments["summary"] == "Charged twice for order 9; wants one charge back."


def test_bedrock_converse_passes_the_summary_through(monkeypatch):
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "t1",
                            "name": "handoff",
                            "input": {"reason": "Locked out", "summary": "Account locked after a password reset."},
                        }
                    }
                ],
            }
        },
        "stopReason": "tool_use",
    }
    sent: list[dict] = []

    class Handler(QuietHandler):
        def do_POST(self):
            sent.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    converse = LoopbackServer(Handler).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", converse.url)
        env = sample.environment(LLM_PROVIDER="bedrock", BEDROCK_MODEL_ID="test.model-v1")
        provider = wiring.chat_provider(Settings.from_mapping(env))
        completion = provider.complete("s", [ChatMessage("user", "locked out")], [HANDOFF_TOOL])
    finally:
        converse.stop()

    schema = sent[0]["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
    assert "summary" in schema["properties"] and schema["required"] == ["reason"]
    assert completion.tool_calls[0].arguments["summary"] == "Account locked after a password reset."


def test_the_rules_provider_hands_off_with_the_built_summary(aws, lambda_context):
    for body in ("What are your opening hours?", "this is ridiculous"):
        params = sms_params(account_sid=sample.ACCOUNT_SID, body=body)
        sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)

    (handoff,) = aws.items("HANDOFF#")
    summary = json.loads(handoff["payload"])["attributes"]["summary"]
    assert summary.startswith("The customer said, latest last: \u201cWhat are your opening hours?\u201d")


# -- bounded, cut at a word, no card numbers -------------------------------------------------------


def test_a_long_summary_is_bounded_and_cut_at_a_word():
    written = "The customer explained the whole history of the account in detail. " * 20

    summary = build_payload(conversation_id="conv_1", reason="r", routing_attributes={}, summary=written).attributes[
        "summary"
    ]

    assert len(summary) <= SUMMARY_MAX and summary.endswith(ELLIPSIS)
    head = summary.removesuffix(ELLIPSIS)
    assert written.startswith(head) and written[len(head)] == " "


def test_card_numbers_are_removed_from_the_summary_before_it_is_cut():
    """A card number across the cut would otherwise leave a stub that no longer looks like one."""
    pan = "4111 1111 1111 1111"
    written = "x" * (SUMMARY_MAX - 12) + " " + pan + " and more"  # a cut at 500 falls inside it

    attributes = build_payload(conversation_id="conv_1", reason="r", routing_attributes={}, summary=written).attributes

    assert "4111" not in attributes["summary"] and "1111" not in attributes["summary"]
    spoken = build_payload(
        conversation_id="conv_1", reason="r", routing_attributes={}, summary=f"Card {pan} was declined twice."
    )
    assert spoken.attributes["summary"] == f"Card {MASK} was declined twice."


# A card number in what the customer said, where a shortening cut lands inside it: each text must lose its
# card numbers before it is cut, or the 12 digits left (no longer a valid card number) reach Studio and Flex.
CARD = "4111 1111 1111 1111"  # Luhn-valid (Visa test PAN)
CARD_MESSAGE = (
    "I was charged twice for one order last week and nobody answered my emails, "
    "please put me through to a person, my card is " + CARD + " thanks"
)


def longest_card_prefix_in(text: str) -> int:
    """How many leading digits of CARD appear, in order and in one run of digit groups, in `text`."""
    pan = re.sub(r"\D", "", CARD)
    best = 0
    for run in re.findall(r"\d[\d\s\-\u2010-\u2015\u2212./]*\d|\d", text):
        digits = re.sub(r"\D", "", run)
        for start in range(len(digits)):
            n = 0
            while start + n < len(digits) and n < len(pan) and digits[start + n] == pan[n]:
                n += 1
            best = max(best, n)
    return best


def test_a_card_number_across_a_quotes_cut_is_removed_before_the_cut():
    assert CARD_MESSAGE.index(CARD) < QUOTE_MAX - 1 < CARD_MESSAGE.index(CARD) + len(CARD)  # the cut is inside it
    said = CARD_MESSAGE.replace(CARD, CARD.replace(" ", "\u2013"))  # a model writes en dashes
    history = [Turn("user", CARD_MESSAGE), Turn("assistant", "I read back " + said)]

    summary = conversation_summary(history, CARD_MESSAGE, channel="SMS")

    # The mask may itself be cut ("[card…"): what is left of the text is its redacted start.
    assert longest_card_prefix_in(summary) == 0 and summary.count("[card") == 3
    assert "\u201cI was charged twice" in summary and "The AI agent last answered: \u201cI read back" in summary


def test_a_card_number_across_the_reasons_cut_is_removed_before_the_cut():
    reason = "x" * 490 + " card " + CARD + " declined"  # cut at 500 characters: inside the card number
    request = requested(Scripted(handoff_call(reason=reason), Completion("On it.")))

    assert longest_card_prefix_in(request.reason) == 0 and request.reason == redact_pans(reason)[:500]


def test_sms_built_summary_reaches_studio_without_a_stub_of_a_card_number(aws, studio, lambda_context):
    """The customer's message is quoted shortened to QUOTE_MAX; its card number straddles the cut."""
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=CARD_MESSAGE, agent=sample.AGENT_NUMBER)
    response = sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)
    assert response["statusCode"] == 200

    outbox = Outbox(aws.dynamodb)
    while (event := outbox.next_event()) is not None:
        dispatch_app.handler(event, lambda_context)
    (execution,) = studio.created
    summary = execution.handoff_data["attributes"]["summary"]

    assert longest_card_prefix_in(summary) == 0, f"card digits reached Studio in the summary: {summary!r}"
    assert summary.startswith("The customer said: \u201cI was charged twice")


def test_voice_end_frames_built_summary_carries_no_stub_of_a_card_number(voice_call, monkeypatch):
    """TWILIO.md: ConversationRelay's handoffData must not carry card data (PCI)."""
    monkeypatch.setenv("TRANSCRIPT_BASE_URL", f"https://{DEFAULT_HOST}")
    wiring.reset()
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []

    call.say(CARD_MESSAGE)

    end = call.end_message
    assert end is not None, "the caller asked for a person: an end frame is owed"
    summary = json.loads(end["handoffData"])["attributes"]["summary"]
    assert longest_card_prefix_in(summary) == 0, f"card digits in the end frame's handoffData: {summary!r}"
    assert summary.startswith("The caller said: \u201cI was charged twice")
