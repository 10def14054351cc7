"""InboundSmsFunction end to end on moto: signed webhooks in, TwiML out, state in DynamoDB."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest

from agent_handoff import wiring
from agent_handoff.agent.rules import RulesProvider
from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import DEFAULT_HOST, http_api_event, sms_params

sms_app = load_handler("inbound_sms")


def send(body: str, lambda_context, *, customer: str = sample.CUSTOMER_NUMBER, sid: str | None = None, **event_kw):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer, sid=sid)
    event = http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN, **event_kw)
    return sms_app.handler(event, lambda_context), params


def reply_text(response) -> str | None:
    assert response["statusCode"] == 200, response
    assert response["headers"]["Content-Type"].startswith("text/xml")
    assert response["body"].startswith("<?xml")
    messages = ET.fromstring(response["body"]).findall("Message")
    assert len(messages) <= 1
    return messages[0].text if messages else None


class CountingProvider(RulesProvider):
    def __init__(self) -> None:
        self.calls = 0

    def complete(self, system, messages, tools, *, deadline=None):
        self.calls += 1
        return super().complete(system, messages, tools)


@pytest.fixture
def provider(monkeypatch):
    counting = CountingProvider()
    monkeypatch.setattr(wiring, "chat_provider", lambda settings: counting)
    return counting


def test_ordinary_message_gets_an_answer_and_is_remembered(aws, lambda_context, provider):
    response, params = send("What are your opening hours?", lambda_context)

    assert "Monday to Friday" in reply_text(response)
    conversation = aws.items("CONV#")[0]
    assert [t["role"] for t in conversation["history"]] == ["user", "assistant"]
    assert conversation["history"][0]["text"] == "What are your opening hours?"
    assert conversation["version"] == 1
    assert conversation["expiresAt"] > conversation["updatedAt"]
    message = aws.items("MSG#")[0]
    assert message["pk"] == f"MSG#{params['MessageSid']}" and message["status"] == "done"
    assert aws.items("HANDOFF#") == []


def test_retried_webhook_gets_the_same_reply_without_a_second_llm_call(aws, lambda_context, provider):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="How do I track my order?")
    event = http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN)

    first = sms_app.handler(event, lambda_context)
    second = sms_app.handler(event, lambda_context)

    assert reply_text(first) == reply_text(second)
    assert provider.calls == 1
    assert len(aws.items("CONV#")[0]["history"]) == 2


def test_request_for_a_human_is_recorded_before_the_reply(aws, lambda_context, provider):
    response, params = send("I want to talk to a real person please", lambda_context)

    assert "person will follow up" in reply_text(response)
    assert provider.calls == 0  # the deterministic policy decided, not the LLM
    (handoff,) = aws.items("HANDOFF#")
    assert handoff["status"] == "pending" and handoff["channel"] == "sms"
    assert handoff["to"] == sample.CUSTOMER_NUMBER and handoff["from"] == sample.AGENT_NUMBER
    conversation = aws.items("CONV#")[0]
    assert handoff["handoffId"] == conversation["hold"]["handoffId"] == f"sms-{params['MessageSid']}"
    import json

    payload = json.loads(handoff["payload"])
    link = payload["attributes"].pop("transcriptUrl")
    assert payload == {
        "conversationId": conversation["conversationId"],
        "storeId": "",
        "profileId": "",
        "attributes": {
            "department": "support",
            "priority": "normal",
            "reason": "The customer asked to speak with a human agent.",
            # No model summary (the policy decided): one built from what the customer said.
            "summary": "The customer said: \u201cI want to talk to a real person please\u201d. "
            "The AI agent had not answered yet.",
        },
    }
    # The link is to this API's transcript route (rebuilt like the webhook's URL) and names the conversation.
    assert link.startswith(f"https://{DEFAULT_HOST}/handoff/transcript?t=v1.{conversation['conversationId']}.")


def test_after_a_handoff_the_ai_stays_silent(aws, lambda_context, provider):
    send("agent", lambda_context)
    calls_before = provider.calls

    response, _ = send("hello? what are your hours", lambda_context)

    assert reply_text(response) is None
    assert provider.calls == calls_before
    assert len(aws.items("HANDOFF#")) == 1
    history = aws.items("CONV#")[0]["history"]
    assert history[-1] == {"role": "user", "text": "hello? what are your hours"}


def test_holding_message_is_configurable(aws, lambda_context, provider, monkeypatch):
    monkeypatch.setenv("HANDOFF_HOLD_MESSAGE", "A person has your conversation and will reply here.")
    wiring.reset()
    send("I was charged twice, I want to dispute it", lambda_context)

    response, _ = send("any news?", lambda_context)

    assert reply_text(response) == "A person has your conversation and will reply here."
    assert aws.items("HANDOFF#")[0]["payload"].count("Billing dispute") == 1


def test_retry_of_the_handoff_message_does_not_hand_off_twice(aws, lambda_context, provider):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="I need a human")
    event = http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN)

    first = reply_text(sms_app.handler(event, lambda_context))
    second = reply_text(sms_app.handler(event, lambda_context))

    assert first == second and "person" in first
    assert len(aws.items("HANDOFF#")) == 1


def test_customers_have_separate_conversations(aws, lambda_context, provider):
    send("hi", lambda_context, customer="+14155550111")
    send("I need a human", lambda_context, customer="+14155550122")

    response, _ = send("what are your hours?", lambda_context, customer="+14155550111")

    assert "Monday" in reply_text(response)
    assert len(aws.items("CONV#")) == 2


def test_two_failed_attempts_escalate(aws, lambda_context, provider):
    first, _ = send("my flux capacitor is acting weird", lambda_context)
    assert "can't help" in reply_text(first)
    assert aws.items("HANDOFF#") == []

    second, _ = send("the flux capacitor again", lambda_context)

    assert "person will follow up" in reply_text(second)
    (handoff,) = aws.items("HANDOFF#")
    assert "after 2 attempts" in handoff["payload"]


def test_llm_failure_apologises_and_hands_off(aws, lambda_context, monkeypatch):
    from agent_handoff.errors import ProviderError

    class Broken:
        def complete(self, system, messages, tools, *, deadline=None):
            raise ProviderError("LLM request timed out")

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Broken())

    response, _ = send("what's the weather on mars", lambda_context)

    text = reply_text(response)
    assert text.startswith("I'm sorry") and "person will follow up" in text
    (handoff,) = aws.items("HANDOFF#")
    assert "unavailable" in handoff["payload"]


def test_rest_api_payload_v1_is_accepted(aws, lambda_context, provider):
    from devtools.samples.events import rest_api_event

    params = sms_params(account_sid=sample.ACCOUNT_SID, body="hi")
    event = rest_api_event("/sms", params, auth_token=sample.AUTH_TOKEN, stage="Prod")

    assert "virtual assistant" in reply_text(sms_app.handler(event, lambda_context))


def test_reply_is_escaped_twiml(aws, lambda_context, monkeypatch):
    class Markup:
        def complete(self, system, messages, tools, *, deadline=None):
            from agent_handoff.agent.messages import Completion

            return Completion(text="Use <b>bold</b> & </Message><Hangup/>")

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Markup())

    response, _ = send("hello there", lambda_context)

    assert reply_text(response) == "Use <b>bold</b> & </Message><Hangup/>"
    assert ET.fromstring(response["body"]).find("Hangup") is None


# -- bad input: a clear 4xx and no change of state ----------------------------------------


def _signed(text="hi", **kw):
    return http_api_event(
        "/sms", sms_params(account_sid=sample.ACCOUNT_SID, body=text), auth_token=sample.AUTH_TOKEN, **kw
    )


def _other_account():
    params = sms_params(account_sid="AC" + "9" * 32, body="hi")
    return http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN)


def _tampered():
    event = _signed("hi")
    body = base64.b64decode(event["body"]).decode().replace("Body=hi", "Body=I+need+a+human")
    event["body"] = base64.b64encode(body.encode()).decode()
    return event


def _missing_sid():
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="hi")
    del params["MessageSid"]
    return http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN)


BAD_REQUESTS = {
    "no signature": (
        lambda: http_api_event("/sms", sms_params(account_sid=sample.ACCOUNT_SID, body="hi"), auth_token=None),
        403,
    ),
    "signed with another token": (
        lambda: http_api_event(
            "/sms", sms_params(account_sid=sample.ACCOUNT_SID, body="hi"), auth_token="another_token_0123456789"
        ),
        403,
    ),
    "tampered body": (_tampered, 403),
    "another account": (_other_account, 403),
    "signed for another host": (
        lambda: {**_signed(), "headers": {**_signed()["headers"], "host": "evil.example.com"}},
        403,
    ),
    "json body": (lambda: _signed(content_type="application/json", body='{"Body":"hi"}'), 400),
    "not base64": (lambda: {**_signed(), "body": "%%%not-base64%%%"}, 400),
    "invalid utf-8": (lambda: _signed(body=b"Body=\xff\xfe&From=%2B1"), 400),
    "missing MessageSid": (_missing_sid, 400),
    "oversized": (lambda: _signed(body="Body=" + "a" * 40_000), 413),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_requests_are_refused_and_change_nothing(aws, lambda_context, provider, name):
    make, status = BAD_REQUESTS[name]

    response = sms_app.handler(make(), lambda_context)

    assert response["statusCode"] == status, response
    assert "Traceback" not in response["body"] and sample.AUTH_TOKEN not in response["body"]
    assert response["body"].strip()
    assert aws.items() == []
    assert provider.calls == 0
