"""The handoff payload as it reaches Flex: within 1,024 characters by a stated rule, and no card numbers.

The Studio routes are checked by rendering the committed flow's own Send to Flex templates; the
`<Enqueue><Task>` route by reading the TwiML the product returns. TAC's model reads every payload.
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tac.models.handoff import HandoffPayload as TacHandoffPayload

from agent_handoff import config
from agent_handoff.agent.messages import Completion, ToolCall
from agent_handoff.errors import ConfigError
from agent_handoff.handoff import HandoffPayload, build_payload
from agent_handoff.pan_redaction import MASK, luhn_valid, redact_pans
from agent_handoff.payload_limits import (
    CALLER_RESERVE,
    ELLIPSIS,
    FLEX_ATTRIBUTES_LIMIT,
    REASON_FLOOR,
    ROUTING_ATTRIBUTES_MAX,
    SUMMARY_FLOOR,
    flex_width,
    shorten,
    within_width,
)
from agent_handoff.voice.twiml import enqueue_to_flex, resume_studio_flow, start_studio_flow
from devtools.samples import studio_flow

ACCOUNT = "AC" + "0" * 32
FLOW = "FW" + "0" * 32
WORKFLOW = "WW" + "0" * 32
ROUTING = {"department": "support", "priority": "normal"}
FLOW_STATES = {s["name"]: s for s in json.loads(studio_flow.FLOW_FILE.read_text())["states"]}


# -- what each route gives Flex --------------------------------------------------------------


def render_liquid(template: str, context: dict) -> str:
    """The Liquid the flow's templates use: a path, then `| to_json` or `| default: "..."`."""

    def value(match: re.Match[str]) -> str:
        path, *filters = [part.strip() for part in match.group(1).split("|")]
        found = context
        for name in path.split("."):
            found = found.get(name) if isinstance(found, dict) else None
        for step in filters:
            if step == "to_json":
                found = json.dumps(found)  # the widest form: ASCII-escaped, spaced separators
            elif step.startswith("default:"):
                found = found or json.loads(step.removeprefix("default:").strip())
            else:
                raise AssertionError(f"unknown filter {step}")
        assert isinstance(found, str), (path, found)
        return found

    return re.sub(r"\{\{(.*?)\}\}", value, template)


def sms_task(payload: HandoffPayload, customer: str) -> str:
    context = {"contact": {"channel": {"address": customer}}, "flow": {"data": json.loads(payload.studio_parameters())}}
    return render_liquid(FLOW_STATES["sms_to_flex"]["properties"]["attributes"], context)


def redirect_query(twiml: str) -> dict[str, str]:
    url = ET.fromstring(twiml).find("Redirect").text
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def voice_task(payload: HandoffPayload, caller: str) -> str:
    query = redirect_query(resume_studio_flow(account_sid=ACCOUNT, flow_sid=FLOW, payload=payload))
    context = {"trigger": {"call": {"From": caller}}, "widgets": {"ai_agent": query}}
    return render_liquid(FLOW_STATES["voice_to_flex"]["properties"]["attributes"], context)


def enqueue_task(payload: HandoffPayload, caller: str) -> str:
    return (
        ET.fromstring(enqueue_to_flex(workflow_sid=WORKFLOW, payload=payload, caller=caller)).find("Enqueue/Task").text
    )


def cleaned_reason(text: str) -> str:
    """The reason as the rule cleans it: one line, no double quotes or backslashes, no card numbers."""
    return redact_pans(re.sub(r"[\s\x00-\x1f\x7f]+", " ", text).strip().replace('"', "'").replace("\\", "/"))


def assert_tac_reads(wire: dict) -> None:
    tac = TacHandoffPayload.model_validate(wire)
    assert json.loads(tac.model_dump_json(by_alias=True)) == wire


# -- strategies ------------------------------------------------------------------------------

WORDS = ["the", "customer", "wants", "a", "refund", "for", "order", "billing", "dispute", "über", "😀", '"quoted"']
free_text = st.one_of(
    st.text(max_size=1500),
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=14)), max_size=250).map(" ".join),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
routing_attributes = st.dictionaries(
    st.text(max_size=12).filter(lambda k: k not in ("reason", "summary", "transcriptUrl")), json_values, max_size=5
)
transcript_urls = st.text("abcdef0123456789", min_size=8, max_size=400).map(lambda t: f"https://example.com/t/{t}")
callers = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.from_regex(r"whatsapp:\+[1-9][0-9]{6,14}", fullmatch=True),
    st.text(max_size=300),
)
our_ids = st.builds(lambda: f"conv_{uuid.uuid4().hex}")
realistic_callers = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True), st.from_regex(r"client:[a-z0-9_]{1,50}", fullmatch=True)
)


def payload_of(conversation_id, store_id, routing, reason, summary=None, transcript_url=None) -> HandoffPayload:
    extra = {k: v for k, v in (("summary", summary), ("transcriptUrl", transcript_url)) if v is not None}
    return build_payload(
        conversation_id=conversation_id, reason=reason, routing_attributes={**routing, **extra}, store_id=store_id
    )


# -- the limit -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conversation_id=st.text(max_size=300),
    store_id=st.text(max_size=300),
    routing=routing_attributes,
    reason=free_text,
    summary=st.none() | free_text,
    transcript_url=st.none() | transcript_urls,
    caller=callers,
)
def test_any_payload_reaches_flex_within_the_limit_and_tac_reads_it(
    conversation_id, store_id, routing, reason, summary, transcript_url, caller
):
    payload = payload_of(conversation_id, store_id, routing, reason, summary, transcript_url)

    text = payload.to_json()
    assert_tac_reads(json.loads(text))
    assert HandoffPayload.from_json(text) == payload
    assert_tac_reads(json.loads(payload.studio_parameters())["HandoffData"])
    assert flex_width(payload.wire()) <= FLEX_ATTRIBUTES_LIMIT
    task = enqueue_task(payload, caller)
    assert len(task) <= FLEX_ATTRIBUTES_LIMIT
    assert_tac_reads(json.loads(task)["HandoffData"])
    assert payload.fitted() == payload  # what was built is what every route sends
    # Nothing is invented: free text is the cleaned original or its start; everything else is whole.
    cleaned = {**routing, "summary": redact_pans(summary or ""), "reason": cleaned_reason(reason)}
    for key, value in payload.attributes.items():
        if key in ("reason", "summary"):
            assert cleaned[key].startswith(value.removesuffix(ELLIPSIS)), key
        else:
            assert value == {**routing, "transcriptUrl": transcript_url}[key], key


@settings(max_examples=200, deadline=None)
@given(
    conversation_id=our_ids,
    routing=st.dictionaries(st.sampled_from(["department", "priority", "skill", "language"]), st.text(max_size=60)),
    reason=free_text,
    summary=st.none() | free_text,
    transcript_url=st.none() | transcript_urls,
    caller=realistic_callers,
)
def test_the_committed_flow_gives_flex_valid_json_within_the_limit(
    conversation_id, routing, reason, summary, transcript_url, caller
):
    payload = payload_of(conversation_id, "", routing, reason, summary, transcript_url)

    for task in (sms_task(payload, caller), voice_task(payload, caller)):
        assert len(task) <= FLEX_ATTRIBUTES_LIMIT
        attributes = json.loads(task)  # the flow copies reason in unescaped: it must stay valid JSON
        assert attributes["reason"] == payload.attributes["reason"]
        assert attributes["conversationId"] == conversation_id
        assert attributes["HandoffData"] == payload.wire()
        assert_tac_reads(attributes["HandoffData"])


@settings(max_examples=150, deadline=None)
@given(
    conversation_id=our_ids,
    store_id=st.text("abcdefghijklmnopqrstuvwxyz0123456789_", max_size=64),
    routing=st.dictionaries(
        st.text(max_size=12).filter(lambda k: k not in ("reason", "summary", "transcriptUrl")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=40),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
            max_leaves=4,
        ),
        max_size=4,
    ),
    reason=free_text,
)
def test_accepted_routing_attributes_keep_their_values_and_reason_keeps_its_floor(
    conversation_id, store_id, routing, reason
):
    try:
        config.routing_attributes(json.dumps(routing))
    except ValueError:
        assume(False)

    payload = payload_of(conversation_id, store_id, routing, reason)

    assert {k: v for k, v in payload.attributes.items() if k != "reason"} == routing
    # At least what a cut at the floor keeps (floors count escaped widths; a cut backs off to a word).
    cleaned = cleaned_reason(reason)
    assert len(payload.attributes["reason"]) >= len(shorten(cleaned, len(within_width(cleaned, REASON_FLOOR))))


def test_a_long_reason_is_cut_at_a_word_with_an_ellipsis():
    reason = "The customer disputes three charges on the March invoice " * 20

    payload = build_payload(conversation_id=f"conv_{uuid.uuid4().hex}", reason=reason, routing_attributes=ROUTING)

    cut = payload.attributes["reason"]
    assert cut.endswith(ELLIPSIS) and len(cut) > REASON_FLOOR
    head = cut.removesuffix(ELLIPSIS)
    assert reason.startswith(head) and reason[len(head)] == " "  # a whole word, then the ellipsis
    assert {k: payload.attributes[k] for k in ROUTING} == ROUTING
    assert flex_width(payload.wire()) <= FLEX_ATTRIBUTES_LIMIT


def test_summary_gives_way_first_then_reason_then_summary_is_dropped_before_the_transcript_link():
    conversation = f"conv_{uuid.uuid4().hex}"
    reason = "The customer was charged twice for the same order and wants the duplicate charge refunded."

    def link(length: int) -> str:
        return "https://example.com/t/" + "a" * (length - 22)

    roomy = payload_of(conversation, "", ROUTING, reason, summary="Summary words. " * 100, transcript_url=link(200))
    assert roomy.attributes["reason"] == reason  # whole: the summary gave way
    assert roomy.attributes["transcriptUrl"] == link(200)
    assert SUMMARY_FLOOR <= len(roomy.attributes["summary"]) < 1500 and roomy.attributes["summary"].endswith(ELLIPSIS)

    long_reason = "word " * 200
    both_at_floor = payload_of(conversation, "", ROUTING, long_reason, summary="s " * 500, transcript_url=link(250))
    assert len(both_at_floor.attributes["summary"]) == SUMMARY_FLOOR
    assert len(both_at_floor.attributes["reason"]) == REASON_FLOOR

    tight = payload_of(conversation, "", ROUTING, long_reason, summary="s " * 500, transcript_url=link(300))
    assert "summary" not in tight.attributes  # dropped first
    assert tight.attributes["transcriptUrl"] == link(300)  # a link is kept whole or not at all
    assert len(tight.attributes["reason"]) > REASON_FLOOR  # the summary's room went to the reason

    tighter = payload_of(conversation, "", ROUTING, long_reason, summary="s " * 500, transcript_url=link(400))
    assert "summary" not in tighter.attributes and "transcriptUrl" not in tighter.attributes
    assert len(tighter.attributes["reason"]) > len(tight.attributes["reason"])
    for payload in (roomy, both_at_floor, tight, tighter):
        assert flex_width(payload.wire()) <= FLEX_ATTRIBUTES_LIMIT
        assert payload.attributes["department"] == "support" and payload.attributes["priority"] == "normal"


def test_the_worst_case_still_fits():
    huge = "é" * 5000
    payload = HandoffPayload(huge, huge, huge, {"team": "x" * 3000, "reason": "y " * 2000, "summary": huge})

    fitted = payload.fitted(caller="sip:" + "z" * 3000)

    assert flex_width(fitted.wire(), "sip:" + "z" * 3000) <= FLEX_ATTRIBUTES_LIMIT
    assert len(enqueue_task(fitted, "sip:" + "z" * 3000)) <= FLEX_ATTRIBUTES_LIMIT
    assert fitted.attributes["reason"].endswith(ELLIPSIS)
    assert "team" not in fitted.attributes  # only because it is far beyond what config accepts


def test_a_caller_address_longer_than_the_reserve_is_accounted_for():
    caller = "sip:" + "agent" * 18 + "@example.com"
    assert len(caller) > CALLER_RESERVE
    payload = build_payload(conversation_id="conv_1", reason="word " * 300, routing_attributes=ROUTING)

    task = enqueue_task(payload, caller)

    assert len(task) <= FLEX_ATTRIBUTES_LIMIT and json.loads(task)["name"] == caller
    assert len(json.loads(task)["reason"]) < len(payload.attributes["reason"])  # trimmed for this caller


def test_voice_routes_trim_a_payload_that_did_not_come_through_build_payload():
    # E.g. HandoffData as Twilio returns it, or a record stored before the limit existed.
    raw = HandoffPayload("conv_1", "", "", {**ROUTING, "reason": 'He said "4111 1111 1111 1111"\n' + "x " * 900})

    for twiml in (
        resume_studio_flow(account_sid=ACCOUNT, flow_sid=FLOW, payload=raw),
        start_studio_flow(account_sid=ACCOUNT, flow_sid=FLOW, payload=raw),
    ):
        handoff_data = HandoffPayload.from_json(redirect_query(twiml)["HandoffData"])
        assert flex_width(handoff_data.wire()) <= FLEX_ATTRIBUTES_LIMIT
        assert handoff_data.attributes["reason"].startswith(f"He said '{MASK}' x x")
    assert "4111" not in enqueue_task(raw, "+14155550100")
    studio = json.loads(raw.studio_parameters())["HandoffData"]
    assert flex_width(studio) <= FLEX_ATTRIBUTES_LIMIT and "4111" not in json.dumps(studio)


def test_shorten_cuts_words_not_letters_when_a_boundary_is_near():
    assert shorten("short", 10) == "short"
    assert shorten("one two three four", 12) == "one two" + ELLIPSIS
    assert shorten("abcdefghijklmnop", 6) == "abcde" + ELLIPSIS  # no boundary in reach: a hard cut
    assert shorten("anything", 0) == ""


def test_config_refuses_routing_attributes_that_leave_no_room_for_the_reason():
    accepted = {"department": "d" * (ROUTING_ATTRIBUTES_MAX - 20)}
    assert config.Settings.from_mapping({"HANDOFF_ATTRIBUTES": json.dumps(accepted)}).handoff_attributes == accepted
    with pytest.raises(ConfigError, match=r"HANDOFF_ATTRIBUTES: must be at most 200 characters"):
        config.Settings.from_mapping({"HANDOFF_ATTRIBUTES": json.dumps({"department": "d" * ROUTING_ATTRIBUTES_MAX})})


# -- card numbers ----------------------------------------------------------------------------


def luhn_complete(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def grouped(digits: str, sizes: list[int], separator: str) -> str:
    groups, at = [], 0
    for size in sizes:
        if at < len(digits):
            groups.append(digits[at : at + size])
            at += size
    if at < len(digits):
        groups.append(digits[at:])
    return separator.join(groups)


pans = st.integers(min_value=12, max_value=18).flatmap(
    lambda n: st.text("0123456789", min_size=n, max_size=n).map(luhn_complete)
)
# How people and models separate a card's groups: spaces (NBSP too), dashes of every kind, dots, slashes.
SEPARATORS = [" ", "-", " - ", "\u00a0", "\u2010", "\u2013", "\u2014", " \u2013 ", "\u2212", ".", "/", " / "]
pan_layouts = st.one_of(
    st.just(("plain", [], "")),
    st.tuples(st.just("fours"), st.just([4, 4, 4, 4]), st.sampled_from(SEPARATORS)),
    st.tuples(st.just("random"), st.lists(st.integers(1, 6), min_size=1, max_size=8), st.sampled_from(SEPARATORS)),
)
boundaries = st.sampled_from([" ", ", ", ": ", "\n", "(", " #", "."])


@settings(max_examples=300, deadline=None)
@given(
    pan=pans,
    layout=pan_layouts,
    before=st.text(max_size=200),
    after=st.text(max_size=200),
    left=boundaries,
    right=boundaries,
)
def test_a_card_number_anywhere_in_the_reason_is_gone_from_everything_sent(pan, layout, before, after, left, right):
    _, sizes, separator = layout
    written = grouped(pan, sizes, separator) if sizes else pan
    reason = before + left + written + right + after
    payload = build_payload(conversation_id="conv_1", reason=reason, routing_attributes=ROUTING)

    sent = [
        payload.to_json(),
        payload.studio_parameters(),
        enqueue_task(payload, "+14155550100"),
        "\n".join(redirect_query(resume_studio_flow(account_sid=ACCOUNT, flow_sid=FLOW, payload=payload)).values()),
    ]
    for text in sent:
        assert written not in text
        assert pan not in re.sub(r"[\s\-\u2010-\u2015\u2212./]", "", text)


phones = st.one_of(
    st.from_regex(r"\+1 \([2-9][0-9]{2}\) [2-9][0-9]{2}-[0-9]{4}", fullmatch=True),
    st.from_regex(r"\+1 [2-9][0-9]{2} [2-9][0-9]{2} [0-9]{4}", fullmatch=True),
    st.from_regex(r"\+44 20 [0-9]{4} [0-9]{4}", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9]{6,11}", fullmatch=True),
)
orders = st.integers(min_value=13, max_value=19).flatmap(
    lambda n: st.text("0123456789", min_size=n, max_size=n).filter(lambda d: not luhn_valid(d))
)
# Words around the numbers; ASCII, so that the reason is never long enough to be cut.
prose = st.text(st.characters(categories=["L", "P", "Zs"], max_codepoint=0x7E, exclude_characters="-"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(phone=phones, order=orders, first=prose, middle=prose, last=prose)
def test_phone_numbers_and_order_numbers_that_fail_luhn_survive(phone, order, first, middle, last):
    reason = f"{first} order {order} {middle} call {phone} {last}"
    assert redact_pans(reason) == reason
    payload = build_payload(conversation_id="conv_1", reason=reason, routing_attributes=ROUTING)
    assert order in payload.attributes["reason"] and phone in payload.attributes["reason"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111111111111111 exp 12/27", f"card {MASK} exp 12/27"),
        ("card 4111-1111-1111-1111.", f"card {MASK}."),
        ("amex 3782 822463 10005 ok", f"amex {MASK} ok"),
        ("order 12 card 4222 2222 2222 2 thanks", f"order 12 card {MASK} thanks"),
        ("card 6011 1111 1111 1117 1234", f"card {MASK} 1234"),  # the card, then other digits
        ("order 4111111111111112 (not a card)", "order 4111111111111112 (not a card)"),
        ("call +1 415 555 0100 or 020 7946 0958", "call +1 415 555 0100 or 020 7946 0958"),
        ("ref 12345678901234567890123", "ref 12345678901234567890123"),  # 23 digits: not a card number
        ("card 4111\u20131111\u20131111\u20131111 ok", f"card {MASK} ok"),  # en dashes, as a model writes it
        ("card 4111\u20141111\u20141111\u20141111", f"card {MASK}"),  # em dashes
        ("card 4111 \u2013 1111 \u2013 1111 \u2013 1111", f"card {MASK}"),
        ("card 4111.1111.1111.1111.", f"card {MASK}."),
        ("card 4111/1111/1111/1111", f"card {MASK}"),
        ("card 4111\u00a01111\u00a01111\u00a01111", f"card {MASK}"),  # no-break spaces
        ("call 415.555.0123 or 415/555/0100", "call 415.555.0123 or 415/555/0100"),  # phones fail the length
        ("order 4111.1111.1111.1112 on 2024/01/15", "order 4111.1111.1111.1112 on 2024/01/15"),  # fails Luhn
    ],
)
def test_redaction_examples(text, expected):
    assert redact_pans(text) == expected


# -- both channels, end to end ---------------------------------------------------------------

CARD_REASON = "Customer read out card 4111 1111 1111 1111 to pay the disputed invoice; call +1 415 555 0100."


class HandsOffWithACardNumber:
    """An LLM that calls the handoff tool with a reason quoting the customer's card number."""

    def complete(self, system, messages, tools, *, deadline=None):
        if any(m.role == "tool" for m in messages):
            return Completion(text="A person will follow up with you shortly.")
        return Completion(text="", tool_calls=(ToolCall("call_1", "handoff", {"reason": CARD_REASON}),))


@pytest.fixture
def card_llm(monkeypatch):
    from agent_handoff import wiring

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: HandsOffWithACardNumber())
    wiring.reset()


def test_sms_handoff_stores_and_sends_studio_no_card_number(aws, studio, card_llm, lambda_context):
    from conftest import load_handler
    from devtools.samples import sample
    from devtools.samples.events import http_api_event, sms_params
    from streams import Outbox

    params = sms_params(account_sid=sample.ACCOUNT_SID, body="hello there")
    response = load_handler("inbound_sms").handler(
        http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context
    )
    assert response["statusCode"] == 200
    (record,) = aws.items("HANDOFF#")
    assert "4111" not in record["payload"]
    assert json.loads(record["payload"])["attributes"]["reason"] == CARD_REASON.replace("4111 1111 1111 1111", MASK)

    load_handler("handoff_dispatch").handler(Outbox(aws.dynamodb).next_event(), lambda_context)

    (execution,) = studio.requests
    assert execution.handoff_data["attributes"]["reason"] == CARD_REASON.replace("4111 1111 1111 1111", MASK)
    assert "+1 415 555 0100" in execution.handoff_data["attributes"]["reason"]


def test_voice_handoff_ends_and_enqueues_with_no_card_number(voice_call, card_llm, monkeypatch):
    from agent_handoff import wiring

    monkeypatch.setenv("TWILIO_TASKROUTER_WORKFLOW_SID", WORKFLOW)
    wiring.reset()
    call = voice_call()
    call.dial()
    call.connect()
    call.setup()

    frames = call.say("hello there")

    assert frames[-1]["type"] == "end"
    handoff_data = frames[-1]["handoffData"]
    assert "4111" not in handoff_data and MASK in handoff_data
    task = ET.fromstring(call.finish()).find("Enqueue/Task").text
    assert "4111" not in task and len(task) <= FLEX_ATTRIBUTES_LIMIT
    assert json.loads(task)["reason"] == CARD_REASON.replace("4111 1111 1111 1111", MASK)
