"""The transcript link in a handoff's attributes: signed, expiring, and a page of every turn in order.

AWS is moto; the handoffs are made by the real handlers (SMS webhook, the voice functions), the
page is read through the HandoffTranscriptFunction handler with the link exactly as it was issued.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from agent_handoff import wiring
from agent_handoff.signing import Signer, signing_key
from agent_handoff.transcript_link import PATH, QUERY, TranscriptLinks
from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import DEFAULT_HOST, http_api_event, http_get_event, sms_params
from devtools.template import ROOT

sms_app = load_handler("inbound_sms")
transcript_app = load_handler("handoff_transcript")
release_app = load_handler("handoff_release")
CUSTOMER = "+14155550123"
LINK_BASE = f"https://{DEFAULT_HOST}{PATH}?{QUERY}="


def text(body, lambda_context, customer=CUSTOMER):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer, agent=sample.AGENT_NUMBER)
    response = sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)
    assert response["statusCode"] == 200
    return response


def handed_off_payload(aws, customer=CUSTOMER) -> dict:
    (record,) = [h for h in aws.items("HANDOFF#") if h["to"] == customer]
    return json.loads(record["payload"])


def open_link(url: str, lambda_context, *, accept: str = "text/html,*/*;q=0.8") -> dict:
    return transcript_app.handler(http_get_event(PATH, query=urlsplit(url).query, accept=accept), lambda_context)


def redirect_query(twiml: str) -> dict[str, str]:
    url = ET.fromstring(twiml).find("Redirect").text
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)[QUERY][0]


def with_token(token: str) -> str:
    return LINK_BASE + token


class Page(HTMLParser):
    """What a reader of the page (or a screen reader) gets: elements, their attributes, the turns' text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.turns: list[tuple[str, str]] = []
        self._in: list[str] = []
        self._turn: list[str] | None = None
        self.style = ""
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        self._in.append(attributes.get("class", "") or tag)
        if tag == "li":
            self._turn = [attributes.get("class", ""), ""]

    def handle_endtag(self, tag):
        if self._in:
            self._in.pop()
        if tag == "li" and self._turn is not None:
            self.turns.append((self._turn[0], self._turn[1]))
            self._turn = None

    def handle_data(self, data):
        if self._in and self._in[-1] == "style":
            self.style += data
        if self._turn is not None and self._in and self._in[-1] in ("said", "em"):
            self._turn[1] += data

    def has(self, tag: str) -> bool:
        return any(t == tag for t, _ in self.tags)


# -- SMS: the link Studio receives opens every turn -------------------------------------------


@pytest.fixture
def sms_handoff(aws, lambda_context):
    for body in ("What are your opening hours?", "Do you deliver to Canada?", "I want to talk to a real person"):
        text(body, lambda_context)
    return handed_off_payload(aws)


def test_sms_handoff_carries_a_summary_and_a_link_with_no_phone_number(sms_handoff, aws):
    attributes = sms_handoff["attributes"]
    assert attributes["summary"].startswith("The customer said, latest last: \u201cWhat are your opening hours?\u201d")
    link = attributes["transcriptUrl"]
    assert link.startswith(LINK_BASE + "v1." + sms_handoff["conversationId"] + ".")
    assert "4155550123" not in link and "4155550199" not in link
    (pointer,) = aws.items("TRANSCRIPT#")
    # The pointer, written in the handoff's transaction, is keyed by the random id alone.
    assert pointer["pk"] == f"TRANSCRIPT#{sms_handoff['conversationId']}"
    assert pointer["target"] == aws.items("CONV#")[0]["pk"] and pointer["trigger"] == "human_requested"


def test_the_page_shows_every_turn_in_order_and_the_handoff(sms_handoff, aws, lambda_context):
    response = open_link(sms_handoff["attributes"]["transcriptUrl"], lambda_context)

    assert response["statusCode"] == 200
    page = Page(response["body"])
    said = [turn for turn in aws.items("CONV#")[0]["history"]]
    assert [(kind, words) for kind, words in page.turns] == [
        ("customer" if t["role"] == "user" else "agent", t["text"]) for t in said
    ]
    assert len(page.turns) == 6 and page.turns[0] == ("customer", "What are your opening hours?")
    body = response["body"]
    assert "The customer asked to speak with a human agent." in body  # the reason
    assert "the customer asked for a person" in body  # the trigger, in words
    assert "+14*******23" in body and CUSTOMER not in body  # the customer, masked
    assert re.search(r"kept until <time datetime=\"\d{4}-\d\d-\d\dT", body)  # and until when


def test_the_page_is_accessible_static_html_under_a_strict_policy(sms_handoff, lambda_context):
    response = open_link(sms_handoff["attributes"]["transcriptUrl"], lambda_context)
    headers, page = response["headers"], Page(response["body"])

    assert ("html", {"lang": "en"}) in page.tags
    assert [t for t, _ in page.tags if t in ("h1", "h2")] == ["h1", "h2", "h2"]
    assert ("ol", {"class": "turns", "role": "list", "aria-label": "Messages, oldest first"}) in page.tags
    assert page.has("main") and page.has("header") and page.has("dl") and page.has("time")
    # Nothing to load: no script, image, frame, font or link; no attribute that points anywhere.
    assert not any(t in ("script", "img", "iframe", "link", "object", "embed", "form") for t, _ in page.tags)
    assert not any(k in ("src", "href", "action") or k.startswith("on") for _, attrs in page.tags for k in attrs)
    policy = headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none';") and "script-src" not in policy
    style_hash = base64.b64encode(hashlib.sha256(page.style.encode()).digest()).decode()
    assert f"style-src 'sha256-{style_hash}'" in policy  # the only stylesheet allowed is the page's own
    assert "frame-ancestors 'none'" in policy
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_json_for_accept_application_json(sms_handoff, lambda_context):
    response = open_link(sms_handoff["attributes"]["transcriptUrl"], lambda_context, accept="application/json")

    assert response["statusCode"] == 200 and response["headers"]["Content-Type"].startswith("application/json")
    data = json.loads(response["body"])
    assert data["conversationId"] == sms_handoff["conversationId"] and data["channel"] == "sms"
    assert data["customer"] == "+14*******23"
    assert data["handoff"]["trigger"] == "human_requested"
    # Flex's 1,024 characters shortened the payload's summary; the page has no such limit and shows it whole.
    sent = sms_handoff["attributes"]["summary"]
    assert sent.endswith("\u2026") and data["handoff"]["summary"].startswith(sent.removesuffix("\u2026"))
    assert data["handoff"]["summary"].endswith("3 to 5 business days.\u201d")
    assert [t["role"] for t in data["turns"]] == ["customer", "agent"] * 3
    assert data["turns"][-2]["text"] == "I want to talk to a real person"
    assert data["keptUntil"] > data["handoff"]["at"] and data["linkExpiresAt"] > data["handoff"]["at"]


def test_a_customers_markup_is_shown_as_text_never_run(aws, lambda_context):
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)"> & "quotes" I want a human'
    text(hostile, lambda_context)

    response = open_link(handed_off_payload(aws)["attributes"]["transcriptUrl"], lambda_context)

    page = Page(response["body"])
    assert page.turns[0] == ("customer", hostile)  # shown exactly as typed
    assert "<script" not in response["body"] and "<img" not in response["body"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response["body"]


def test_card_numbers_and_the_customers_own_number_are_kept_off_the_page(aws, lambda_context):
    text(f"My card is 4111 1111 1111 1111 and my number is {CUSTOMER}, refund me", lambda_context)

    response = open_link(handed_off_payload(aws)["attributes"]["transcriptUrl"], lambda_context)

    assert "4111" not in response["body"] and CUSTOMER not in response["body"]
    assert "[card number removed]" in response["body"] and "my number is +14*******23" in response["body"]


# -- refusals: a link opens one conversation, for a while, and nothing else --------------------


def tampered(token: str) -> list[str]:
    version, subject, expires, nonce, mac = token.split(".")
    other = "conv_" + "f" * 32
    flip = {"A": "B"}.get(mac[5], "A")
    return [
        f"{version}.{subject}.{expires}.{nonce}.{mac[:5]}{flip}{mac[6:]}",  # the MAC
        f"{version}.{other}.{expires}.{nonce}.{mac}",  # another conversation, same MAC
        f"{version}.{subject}.{int(expires) + 3600}.{nonce}.{mac}",  # kept alive longer
        f"{version}.{subject}.{expires}.{nonce[:-1]}x.{mac}",  # the nonce
        token[:-1],  # cut short
        token + "A",
        "",
        "v1..1.x.y",
        "<script>",
    ]


def test_a_tampered_or_garbage_link_gets_403_and_reads_nothing(sms_handoff, lambda_context, monkeypatch):
    store = wiring.transcript_service()._store
    monkeypatch.setattr(store, "_get", lambda key: pytest.fail("a refused link must not read the table"))
    token = token_of(sms_handoff["attributes"]["transcriptUrl"])

    for bad in tampered(token):
        response = open_link(with_token(bad), lambda_context)
        assert response["statusCode"] == 403, bad
        assert "not valid" in response["body"] and "conv_" not in response["body"]
    missing = transcript_app.handler(http_get_event(PATH), lambda_context)
    assert missing["statusCode"] == 403


def test_a_link_signed_for_another_conversation_opens_only_that_one(aws, lambda_context):
    text("I want to talk to a real person", lambda_context, customer="+14155550001")
    text("I want to talk to a real person", lambda_context, customer="+14155550002")
    first = handed_off_payload(aws, "+14155550001")
    second = handed_off_payload(aws, "+14155550002")

    page_one = open_link(first["attributes"]["transcriptUrl"], lambda_context, accept="application/json")
    assert json.loads(page_one["body"])["conversationId"] == first["conversationId"]
    # Moving one link's MAC onto the other's id, expiry or nonce does not open anything.
    _, _, expires, nonce, mac = token_of(first["attributes"]["transcriptUrl"]).split(".")
    forged = f"v1.{second['conversationId']}.{expires}.{nonce}.{mac}"
    assert open_link(with_token(forged), lambda_context)["statusCode"] == 403


def test_a_voice_socket_binding_is_no_transcript_link(sms_handoff, lambda_context):
    """Same key, same token format, another purpose: refused."""
    binding = wiring.relay_bindings().issue(sms_handoff["conversationId"])  # valid for 5 minutes, as a binding
    assert open_link(with_token(binding), lambda_context)["statusCode"] == 403
    # ... while the same signer's link for it opens the page.
    link = TranscriptLinks(Signer(signing_key(None, sample.AUTH_TOKEN))).url(
        sms_handoff["conversationId"], base_url=f"https://{DEFAULT_HOST}", now=wiring.transcript_service()._clock()
    )
    assert open_link(link, lambda_context)["statusCode"] == 200


def test_an_expired_link_gets_410(sms_handoff, lambda_context, monkeypatch):
    url = sms_handoff["attributes"]["transcriptUrl"]
    expires = int(token_of(url).split(".")[2])
    assert expires - wiring.transcript_service()._clock() == pytest.approx(24 * 3600, abs=5)
    monkeypatch.setattr(wiring.transcript_service(), "_clock", lambda: expires + 1)

    response = open_link(url, lambda_context)

    assert response["statusCode"] == 410 and "expired" in response["body"]
    as_json = open_link(url, lambda_context, accept="application/json")
    assert json.loads(as_json["body"])["status"] == 410


def test_a_valid_link_to_a_conversation_gone_from_the_table_gets_404(sms_handoff, aws, lambda_context):
    url = sms_handoff["attributes"]["transcriptUrl"]
    aws.dynamodb.delete_item(TableName=sample.TABLE_NAME, Key={"pk": {"S": aws.items("CONV#")[0]["pk"]}})

    response = open_link(url, lambda_context)

    assert response["statusCode"] == 404 and "no longer available" in response["body"]


def test_a_conversation_past_its_ttl_is_gone_before_dynamodb_deletes_it(sms_handoff, aws, lambda_context, monkeypatch):
    url = sms_handoff["attributes"]["transcriptUrl"]
    conversation = aws.items("CONV#")[0]
    aws.dynamodb.update_item(
        TableName=sample.TABLE_NAME,
        Key={"pk": {"S": conversation["pk"]}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": str(conversation["updatedAt"] - 1)}},
    )
    assert open_link(url, lambda_context)["statusCode"] == 404


def test_after_release_the_restarted_conversation_is_not_behind_the_old_link(sms_handoff, aws, lambda_context):
    url = sms_handoff["attributes"]["transcriptUrl"]
    release = http_api_event(
        "/handoff/release",
        {},
        auth_token=None,
        content_type="application/json",
        body=json.dumps({"customer": CUSTOMER, "agentNumber": sample.AGENT_NUMBER}),
    )
    release["headers"]["authorization"] = f"Bearer {sample.RELEASE_TOKEN}"
    assert release_app.handler(release, lambda_context)["statusCode"] == 200
    assert open_link(url, lambda_context)["statusCode"] == 200  # released, not yet restarted

    text("Hello again, what are your opening hours?", lambda_context)  # a new conversation id

    assert open_link(url, lambda_context)["statusCode"] == 404


def test_the_lifetime_is_the_setting(aws, lambda_context, monkeypatch):
    monkeypatch.setenv("TRANSCRIPT_LINK_SECONDS", "600")
    wiring.reset()
    text("I want to talk to a real person", lambda_context)
    url = handed_off_payload(aws)["attributes"]["transcriptUrl"]
    expires = int(token_of(url).split(".")[2])
    assert expires - wiring.transcript_service()._clock() == pytest.approx(600, abs=5)
    # A link dated further ahead than links now live was not made under this setting.
    longer = TranscriptLinks(wiring.signer(), 3600).url(
        handed_off_payload(aws)["conversationId"], base_url=f"https://{DEFAULT_HOST}", now=expires - 600
    )
    assert open_link(longer, lambda_context)["statusCode"] == 403


def test_access_is_logged_with_the_conversation_id_only(sms_handoff, lambda_context, function_logs):
    url = sms_handoff["attributes"]["transcriptUrl"]
    function_logs.readouterr()

    open_link(url, lambda_context)
    open_link(with_token(tampered(token_of(url))[0]), lambda_context)

    lines = [json.loads(line) for line in function_logs.readouterr().out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["message"] == "transcript request"]
    assert [(a.get("conversation_id"), a["status"], a["outcome"]) for a in access] == [
        (sms_handoff["conversationId"], 200, "served"),
        (None, 403, "refused:signature"),
    ]
    logged = json.dumps(lines)
    assert "4155550123" not in logged and "opening hours" not in logged  # no number, no message text
    assert token_of(url) not in logged and token_of(url).split(".")[-1] not in logged  # never the credential


def test_the_sample_event_is_a_genuine_link_that_has_expired(aws, lambda_context):
    event = json.loads((ROOT / "events" / "handoff-transcript.json").read_text())
    assert transcript_app.handler(event, lambda_context)["statusCode"] == 410


# -- voice: the caller's turns, what they heard before an interrupt, the trigger -----------------


@pytest.fixture
def linked_call(voice_call, monkeypatch):
    # The relay learns the HTTP API's URL from the template (TRANSCRIPT_BASE_URL).
    monkeypatch.setenv("TRANSCRIPT_BASE_URL", f"https://{DEFAULT_HOST}")
    wiring.reset()
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    return call


def test_voice_handoff_links_to_the_calls_turns_including_what_was_heard_before_an_interrupt(
    linked_call, aws, lambda_context
):
    call = linked_call
    call.say("What are your opening hours?")
    call.interrupt("We're open Monday")  # the caller talked over the rest of the answer
    frames = call.press("0")

    payload = json.loads(frames[-1]["handoffData"])
    attributes = payload["attributes"]
    assert attributes["reason"] == "The caller pressed 0 to speak with a person."
    assert attributes["summary"] == (
        "The caller said, latest last: \u201cWhat are your opening hours?\u201d / \u201c(pressed 0)\u201d. "
        "The AI agent last answered (interrupted): \u201cWe're open Monday\u201d."
    )
    assert attributes["transcriptUrl"].startswith(LINK_BASE + "v1." + payload["conversationId"] + ".")
    routed = json.loads(redirect_query(call.finish())["HandoffData"])
    assert routed["attributes"]["transcriptUrl"] == attributes["transcriptUrl"]  # the route carries it to Flex

    response = open_link(attributes["transcriptUrl"], lambda_context)

    assert response["statusCode"] == 200
    page = Page(response["body"])
    assert page.turns[:2] == [("customer", "What are your opening hours?"), ("agent", "We're open Monday")]
    assert page.turns[2][0] == "customer" and "(pressed 0)" in page.turns[2][1]
    body = response["body"]
    assert "AI agent (interrupted: the caller heard only this)" in body
    assert "the caller pressed 0" in body and "Phone call" in body and "Caller" in body
    assert "+14*******00" in body and call.caller not in body


HOURS = "We're open Monday to Friday, nine to five, and on Saturday mornings."
CANADA = "Yes, we deliver to Canada within five working days."


def test_a_barge_in_whose_interrupt_frame_runs_late_keeps_every_answer_in_order(
    linked_call, monkeypatch, lambda_context
):
    """The caller talks over answer A to ask B: Twilio sends `interrupt` (for A), then `prompt` B. API Gateway
    runs each frame as its own invocation, unordered: here the interrupt runs while B's turn is in flight.
    The page must show A as heard, then B and B's answer, which the caller heard in full."""
    from agent_handoff.agent.messages import Completion, ToolCall

    call = linked_call

    class Answers:
        def complete(self, system, messages, tools, *, deadline=None):
            if any(m.role == "tool" for m in messages):
                return Completion(text="A person will take it from here.")
            asked = messages[-1].text
            if "hours" in asked:
                return Completion(text=HOURS)
            if "Canada" in asked:
                call.interrupt("We're open Monday")  # the late frame of the barge-in on HOURS
                return Completion(text=CANADA)
            return Completion(text="", tool_calls=(ToolCall("c1", "handoff", {"reason": "asked for a person"}),))

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Answers())
    wiring.reset()
    call.say("What are your opening hours?")
    heard_b = call.spoken(call.say("Do you deliver to Canada?"))
    call.press("0")
    attributes = json.loads(call.end_message["handoffData"])["attributes"]
    turns = Page(open_link(attributes["transcriptUrl"], lambda_context)["body"]).turns

    assert heard_b == CANADA  # the late interrupt did not stop B's answer...
    assert turns[:4] == [  # ...and the human reads what the caller heard, in order
        ("customer", "What are your opening hours?"),
        ("agent", "We're open Monday"),
        ("customer", "Do you deliver to Canada?"),
        ("agent", CANADA),
    ]
    assert f"The AI agent last answered: \u201c{CANADA}\u201d" in attributes["summary"]


def test_a_call_handed_off_by_the_action_callback_links_to_its_transcript_too(linked_call, aws, lambda_context):
    """The socket failed twice: the action callback builds the payload, with a summary, a link and its pointer."""
    call = linked_call
    call.say("What are your opening hours?")
    call.reconnect_from(call.drop())
    assert call.connect() == 200 and call.setup() == []

    twiml = call.drop()

    attributes = json.loads(redirect_query(twiml)["HandoffData"])["attributes"]
    assert attributes["reason"].startswith("The voice connection to the AI agent failed")
    assert attributes["summary"].startswith("The caller said: \u201cWhat are your opening hours?\u201d")
    response = open_link(attributes["transcriptUrl"], lambda_context, accept="application/json")
    data = json.loads(response["body"])
    assert response["statusCode"] == 200 and data["channel"] == "voice"
    assert data["handoff"]["trigger"] == "connection_failed"
    assert data["turns"][0]["text"] == "What are your opening hours?"
