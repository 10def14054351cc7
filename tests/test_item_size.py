"""Conversation items stay well under DynamoDB's 400 KB item limit (issue #12, item 11).

Sizes are computed as DynamoDB counts them; the worst cases are written through moto, which
refuses an item over its own (smaller) count of the limit, as DynamoDB would.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from agent_handoff import wiring
from agent_handoff.agent.messages import Completion
from agent_handoff.sms.twiml import MAX_SMS_CHARS
from agent_handoff.storage.dynamo import (
    HISTORY_MAX_BYTES,
    ITEM_LIMIT_BYTES,
    attribute_size,
    history_attribute,
    item_size,
    n,
    s,
)
from agent_handoff.storage.records import Conversation, Turn, TurnCommit
from agent_handoff.storage.session_store import conversation_key
from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params

sms_app = load_handler("inbound_sms")
WIDE = "😀"  # four bytes of UTF-8 each: the widest text a customer can send


def texts(attribute):
    return [element["M"]["text"]["S"] for element in attribute["L"]]


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (s("abc"), 3),
        (s("é😀"), 6),
        (n(7), 2),
        (n(1_000_000), 2),  # trailing zeros are trimmed
        (n(123456), 4),  # three digit pairs and one byte
        ({"BOOL": True}, 1),
        ({"NULL": True}, 1),
        ({"L": []}, 3),
        ({"L": [s("ab"), s("c")]}, 3 + (1 + 2) + (1 + 1)),
        ({"M": {"role": s("user"), "text": s("hi")}}, 3 + (1 + 4 + 4) + (1 + 4 + 2)),
    ],
)
def test_attribute_sizes_follow_dynamodb_s_rules(value, size):
    assert attribute_size(value) == size


def test_an_item_counts_its_attribute_names():
    assert item_size({"pk": s("CONV#1"), "version": n(12)}) == (2 + 6) + (7 + 2)


def test_history_keeps_the_newest_turns_that_fit():
    turns = [Turn("user" if i % 2 == 0 else "assistant", f"{i:04d}" + "x" * 996) for i in range(10)]
    attribute = history_attribute(turns, max_bytes=3_500)
    assert [text[:4] for text in texts(attribute)] == ["0007", "0008", "0009"]
    assert attribute_size(attribute) <= 3_500
    assert texts(history_attribute(turns)) == [t.text for t in turns]  # small enough: all kept


def test_a_single_turn_bigger_than_the_budget_is_cut_on_a_character_boundary():
    attribute = history_attribute([Turn("user", WIDE * 1000)], max_bytes=1_001)
    assert attribute_size(attribute) <= 1_001
    (text,) = texts(attribute)
    assert text and set(text) == {WIDE}


def test_a_turn_cut_to_fit_loses_its_card_numbers_before_the_cut():
    """A cut inside a card number would keep digits that no longer pass Luhn, so the page could not remove them."""
    text = "x" * 980 + " 4111 1111 1111 1111 and then some more words"  # the cut falls inside the number
    (kept,) = texts(history_attribute([Turn("user", text)], max_bytes=1_020))
    assert "4111" not in kept and "[card" in kept and kept.startswith("x" * 980)


def _plain_items(aws, prefix):
    return [
        item
        for page in aws.dynamodb.get_paginator("scan").paginate(TableName=sample.TABLE_NAME)
        for item in page["Items"]
        if item["pk"]["S"].startswith(prefix)
    ]


def test_the_worst_sms_conversation_is_written_and_stays_well_under_the_limit(aws, monkeypatch, lambda_context):
    """HISTORY_LIMIT 200, every message 1,600 four-byte characters: 1.3 MB of history if nothing trimmed it."""
    monkeypatch.setenv("HISTORY_LIMIT", "200")
    wiring.reset()
    store = wiring.session_store()
    key = conversation_key("SMS", sample.CUSTOMER_NUMBER, sample.AGENT_NUMBER)
    history = tuple(Turn("user" if i % 2 == 0 else "assistant", f"{i:03d}" + WIDE * 1597) for i in range(200))
    conversation = Conversation(
        key=key,
        conversation_id="conv_" + "0" * 32,
        channel="sms",
        customer=sample.CUSTOMER_NUMBER,
        agent_number=sample.AGENT_NUMBER,
        history=history,
    )
    claim = store.claim_message("SM" + "0" * 32, now=1_000, lease_seconds=30)

    store.commit_turn(TurnCommit(conversation, "SM" + "0" * 32, claim.token, "ok"), now=1_000, ttl_seconds=3600)

    (stored,) = _plain_items(aws, "CONV#")
    assert item_size(stored) <= HISTORY_MAX_BYTES + 1_000 < ITEM_LIMIT_BYTES * 0.8
    kept = store.load_conversation(key).history
    assert kept == history[-len(kept) :] and 40 < len(kept) < 200  # the newest turns, whole and in order

    # The conversation keeps working: a wide message and a reply longer than an SMS can carry.
    class Verbose:
        def complete(self, system, messages, tools, *, deadline=None):
            return Completion(text="We open at eight. " + WIDE * 5_000)

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Verbose())
    wiring.sms_service.cache_clear()
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=WIDE * 1600)
    response = sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)

    assert response["statusCode"] == 200
    sent = ET.fromstring(response["body"]).find("Message").text
    assert sent.startswith("We open at eight.") and len(sent) == MAX_SMS_CHARS
    (stored,) = _plain_items(aws, "CONV#")
    assert item_size(stored) <= HISTORY_MAX_BYTES + 1_000
    last = store.load_conversation(key).history[-2:]
    assert last == (Turn("user", WIDE * 1600), Turn("assistant", sent))  # history holds what was sent


def test_the_worst_voice_history_fits_through_the_same_helper(aws):
    """200 prompts of 8,000 four-byte characters, stored the way a call record holds its history."""
    history = [Turn("user" if i % 2 == 0 else "assistant", WIDE * 8_000) for i in range(200)]
    item = {"pk": s("CALL#CA" + "0" * 32), "kind": s("call"), "history": history_attribute(history)}

    aws.dynamodb.put_item(TableName=sample.TABLE_NAME, Item=item)

    (stored,) = _plain_items(aws, "CALL#")
    assert item_size(stored) <= HISTORY_MAX_BYTES + 100 and len(stored["history"]["L"]) == 9
