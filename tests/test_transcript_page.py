"""The transcript page on its own: every stored value escaped, every turn in order, JSON on request."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_handoff.pan_redaction import redact_pans
from agent_handoff.storage.records import Turn
from agent_handoff.storage.transcripts import Transcript
from agent_handoff.transcript import page

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


def transcript(**overrides) -> Transcript:
    values = {
        "conversation_id": "conv_1",
        "channel": "voice",
        "customer": "+14155550123",
        "turns": (Turn("user", "hours?"), Turn("assistant", "We're open", interrupted=True)),
        "trigger": "dtmf_zero",
        "reason": "The caller pressed 0 to speak with a person.",
        "summary": "The caller asked for the opening hours.",
        "handed_off_at": 1_795_000_000,
        "kept_until": 1_795_086_400,
    }
    return Transcript(**{**values, **overrides})


@given(
    said=st.lists(
        st.tuples(
            st.sampled_from(["user", "assistant"]),
            st.text(min_size=1, max_size=60).filter(lambda t: redact_pans(t) == t),  # card numbers go: tested apart
        ),
        max_size=8,
    ),
    reason=st.text(max_size=60),
    summary=st.text(max_size=60),
    trigger=st.text(max_size=20),
)
def test_any_stored_text_is_escaped_and_every_turn_kept_in_order(said, reason, summary, trigger):
    turns = tuple(Turn(role, text) for role, text in said)
    html = page.render_html(
        transcript(turns=turns, reason=reason, summary=summary, trigger=trigger, customer=""), link_expires_at=1
    )

    # Markup exists only where the page put it: no stored text opens an element of its own.
    assert html.count("<li ") == len(turns) and html.count("<script") == 0 and html.count("<img") == 0
    shown = re.findall(
        r'<li class="(customer|agent)"><p class="who">[^<]*</p><p class="said">(.*?)</p></li>', html, re.S
    )
    assert [(kind, unescape(text)) for kind, text in shown] == [
        ("customer" if role == "user" else "agent", text) for role, text in said
    ]


def test_hostile_values_are_shown_as_text_everywhere_on_the_page():
    html = page.render_html(
        transcript(
            turns=(Turn("user", HOSTILE),),
            reason=HOSTILE,
            summary=HOSTILE,
            trigger=HOSTILE,
            conversation_id='conv_"><script>',
        ),
        link_expires_at=1_795_086_400,
    )

    assert "<script" not in html and "<img" not in html
    assert html.count("&lt;script&gt;") == 4 + 1  # reason, trigger, summary, the turn; and the id
    assert "&amp;amp;" in html  # an entity the customer typed stays literal text


def test_a_voice_page_marks_what_the_caller_heard_of_an_interrupted_reply():
    html = page.render_html(transcript(), link_expires_at=1_795_086_400)

    assert "<h1>Phone call conversation handed to a person</h1>" in html
    assert (
        '<p class="who">AI agent (interrupted: the caller heard only this)</p><p class="said">We&#x27;re open' in html
    )
    assert "<dt>Caller</dt><dd>+14*******23</dd>" in html and "the caller pressed 0" in html
    assert '<time datetime="2026-11-19T11:06:40Z">2026-11-19 11:06 UTC</time>' in html  # kept until, in UTC


def test_an_empty_conversation_says_so():
    html = page.render_html(transcript(turns=()), link_expires_at=1)

    assert "No messages were stored" in html and "<ol" not in html and "Transcript (0 messages)" in html


def test_json_has_the_same_facts_masked():
    data = json.loads(page.render_json(transcript(), link_expires_at=1_795_086_400))

    assert data["customer"] == "+14*******23" and data["channel"] == "voice"
    assert data["turns"] == [
        {"role": "customer", "text": "hours?", "interrupted": False},
        {"role": "agent", "text": "We're open", "interrupted": True},
    ]
    assert data["handoff"] == {
        "trigger": "dtmf_zero",
        "reason": "The caller pressed 0 to speak with a person.",
        "summary": "The caller asked for the opening hours.",
        "at": "2026-11-18T11:06:40Z",
    }
    assert data["keptUntil"] == data["linkExpiresAt"] == "2026-11-19T11:06:40Z"


@pytest.mark.parametrize(
    ("accept", "as_json"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/json, */*;q=0.5", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # a browser
        ("*/*", False),  # curl
        ("", False),
        ("text/html, application/json", False),
    ],
)
def test_json_only_when_asked_for(accept, as_json):
    assert page.wants_json(accept) is as_json


# The customer's own number, as people write it: the page masks it in every form, wherever it is shown.
OWN_NUMBER_FORMS = [
    "+14155550123",
    "+1 415 555 0123",
    "+1 (415) 555-0123",
    "(415) 555-0123",
    "415-555-0123",
    "415.555.0123",
    "415 555 0123",
    "4155550123",
    "1-415-555-0123",
    "+1\u00a0415\u2013555\u20130123",
]


@pytest.mark.parametrize("written", OWN_NUMBER_FORMS)
def test_the_customers_own_number_is_masked_in_any_common_format_everywhere_on_the_page(written):
    said = f"call me back on {written}, or on my wife's 415-555-0199, about order 20240115"
    shown = transcript(
        turns=(Turn("user", said),),
        reason=f"Customer at {written} wants a callback.",
        summary=f"The caller said: \u201c{said}\u201d.",
    )

    html = unescape(page.render_html(shown, link_expires_at=1))
    data = json.loads(page.render_json(shown, link_expires_at=1))

    for text in (html, json.dumps(data, ensure_ascii=False)):
        assert written not in text and "555-0123" not in text and "5550123" not in text
        # Other numbers stay: the human may need the callback number or the order the customer gave.
        assert "415-555-0199" in text and "order 20240115" in text
    assert html.count("+14*******23") == 1 + 3  # the caller fact; the turn, the reason, the summary
    assert data["turns"][0]["text"].startswith("call me back on +14*******23, or on")
    assert data["handoff"]["reason"] == "Customer at +14*******23 wants a callback."


def test_a_uk_number_written_nationally_or_with_00_is_the_same_number():
    shown = transcript(customer="+442079460958", turns=(Turn("user", "ring 020 7946 0958 or 0044 20 7946 0958"),))

    data = json.loads(page.render_json(shown, link_expires_at=1))

    assert data["turns"][0]["text"] == "ring +44********58 or +44********58"


def test_the_customers_number_is_masked_when_other_digits_follow_it():
    shown = transcript(turns=(Turn("user", "call 415 555 0123 2 times, not 1415 555 0124"),))

    data = json.loads(page.render_json(shown, link_expires_at=1))

    assert data["turns"][0]["text"] == "call +14*******23 2 times, not 1415 555 0124"
