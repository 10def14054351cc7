"""HandoffReleaseFunction: the human is done, the AI answers again; nobody else may release."""

from __future__ import annotations

import base64
import json

import pytest

from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params

sms_app = load_handler("inbound_sms")
release_app = load_handler("handoff_release")


def text(body, lambda_context, customer=sample.CUSTOMER_NUMBER):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer)
    return sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)


def release(lambda_context, *, authorization=f"Bearer {sample.RELEASE_TOKEN}", body=None, form=False, **fields):
    fields = fields or {"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER}
    if form:
        event = http_api_event("/handoff/release", fields, auth_token=None)
    else:
        event = http_api_event(
            "/handoff/release",
            {},
            auth_token=None,
            content_type="application/json",
            body=body if body is not None else json.dumps(fields),
        )
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    response = release_app.handler(event, lambda_context)
    return response["statusCode"], json.loads(response["body"])


def basic(password):
    return "Basic " + base64.b64encode(f"studio:{password}".encode()).decode()


def test_released_conversation_gets_ai_answers_again(aws, lambda_context):
    text("I need a human", lambda_context)
    assert "<Message>" not in text("hello?", lambda_context)["body"]
    held = aws.items("CONV#")[0]

    status, body = release(lambda_context)

    assert (status, body) == (200, {"released": True, "handoffId": held["hold"]["handoffId"], "execution": None})
    answer = text("what are your opening hours?", lambda_context)["body"]
    assert "Monday" in answer
    conversation = aws.items("CONV#")[0]
    assert conversation["conversationId"] != held["conversationId"]  # a new conversation for the AI
    assert "hold" not in conversation or conversation["hold"]["until"] <= conversation["updatedAt"]


def test_release_from_a_studio_form_with_basic_auth(aws, lambda_context):
    text("agent please", lambda_context)
    assert release(lambda_context, authorization=basic(sample.RELEASE_TOKEN), form=True)[0] == 200


def test_nothing_to_release_is_404_and_releasing_twice_is_harmless(aws, lambda_context):
    assert release(lambda_context)[0] == 404
    text("I need a human", lambda_context)
    assert release(lambda_context)[0] == 200
    assert release(lambda_context)[0] == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token-wrong-token-wrong",
        basic("wrong-token-wrong-token-wrong"),
        "Basic !!!notbase64",
        f"Token {sample.RELEASE_TOKEN}",
        f"Bearer {sample.AUTH_TOKEN}",
    ],
)
def test_wrong_credentials_are_refused_and_change_nothing(aws, lambda_context, authorization):
    text("I need a human", lambda_context)
    before = aws.items()

    status, body = release(lambda_context, authorization=authorization)

    assert status == 403 and sample.RELEASE_TOKEN not in json.dumps(body)
    assert aws.items() == before


def test_release_is_refused_when_no_token_is_configured(aws, lambda_context, monkeypatch):
    from agent_handoff import wiring

    monkeypatch.delenv("HANDOFF_RELEASE_TOKEN")
    wiring.reset()
    status, body = release(lambda_context)
    assert status == 403 and "not configured" in body["error"]


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ({"customer": "14155550100", "agentNumber": sample.AGENT_NUMBER}, None),
        ({"customer": sample.CUSTOMER_NUMBER}, None),
        ({"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER, "channel": "voice"}, None),
        ({"x": "y"}, "[1, 2]"),
        ({"x": "y"}, "{not json"),
        ({"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER, "handoffId": ["sms-SM1"]}, None),
        ({"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER, "handoffId": 12}, None),
        ({"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER, "conversationId": "a b"}, None),
        ({"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER, "conversationId": "c" * 129}, None),
    ],
)
def test_bad_release_bodies_are_400(aws, lambda_context, fields, body):
    text("I need a human", lambda_context)
    before = aws.items()
    assert release(lambda_context, body=body, **fields)[0] == 400
    assert aws.items() == before


# -- a release names its handoff --------------------------------------------------------------------

CUSTOMER_FIELDS = {"customer": sample.CUSTOMER_NUMBER, "agentNumber": sample.AGENT_NUMBER}


def hand_off_twice(aws, lambda_context):
    """H1 handed off and released, then H2 with a person: (H1's hold, H2's hold, H2's conversation item)."""
    text("I need a human", lambda_context)
    first = aws.items("CONV#")[0]
    assert release(lambda_context)[0] == 200
    text("I want to talk to a real person", lambda_context)
    second = aws.items("CONV#")[0]
    assert second["hold"]["handoffId"] != first["hold"]["handoffId"]
    return first, second


@pytest.mark.parametrize(
    "names_h1",
    [
        lambda h1: {"handoffId": h1["hold"]["handoffId"]},
        lambda h1: {"conversationId": h1["conversationId"]},
        lambda h1: {"handoffId": h1["hold"]["handoffId"], "conversationId": h1["conversationId"]},
    ],
    ids=["handoffId", "conversationId", "both"],
)
def test_a_late_release_of_one_handoff_is_409_and_leaves_the_next_one_with_its_person(aws, lambda_context, names_h1):
    first, _ = hand_off_twice(aws, lambda_context)
    before = aws.items()

    status, body = release(lambda_context, **CUSTOMER_FIELDS, **names_h1(first))

    assert status == 409 and body["released"] is False and "another handoff" in body["error"]
    assert aws.items() == before  # H2's hold, its version and its record untouched
    assert "<Message>" not in text("hello?", lambda_context)["body"]  # the AI still stays silent


def test_a_release_that_names_the_current_handoff_releases_it(aws, lambda_context):
    _, second = hand_off_twice(aws, lambda_context)
    named = {"handoffId": second["hold"]["handoffId"], "conversationId": second["conversationId"]}

    status, body = release(lambda_context, **CUSTOMER_FIELDS, **named)

    assert (status, body["released"], body["handoffId"]) == (200, True, second["hold"]["handoffId"])
    assert release(lambda_context, **CUSTOMER_FIELDS, **named)[0] == 404  # a second click: nothing left to release
    assert "Monday" in text("what are your opening hours?", lambda_context)["body"]


def test_a_release_naming_a_handoff_of_a_conversation_with_nobody_is_404(aws, lambda_context):
    text("I need a human", lambda_context)
    held = aws.items("CONV#")[0]
    assert release(lambda_context)[0] == 200
    before = aws.items()

    status, body = release(lambda_context, **CUSTOMER_FIELDS, handoffId=held["hold"]["handoffId"])

    assert status == 404 and "already released" in body["error"] and aws.items() == before


def test_a_form_release_with_empty_ids_is_the_two_field_form(aws, lambda_context):
    """A Studio template that renders an absent value leaves the field empty: the current hold is released."""
    text("agent please", lambda_context)
    fields = {**CUSTOMER_FIELDS, "handoffId": "", "conversationId": ""}
    assert release(lambda_context, authorization=basic(sample.RELEASE_TOKEN), form=True, **fields)[0] == 200


def test_a_desk_release_meant_for_one_handoff_leaves_the_customers_next_one_with_its_person(
    aws, studio, lambda_context
):
    """A desk row's Release for H1 (a stale row, a retried click) that arrives after the customer handed off
    again must not release H2 nor end H2's Studio execution (the new human's)."""
    from devtools.local.desk import Desk
    from streams import Outbox

    dispatch_app = load_handler("handoff_dispatch")
    outbox = Outbox(aws.dynamodb)

    def deliver():
        while (event := outbox.next_event()) is not None:
            dispatch_app.handler(event, lambda_context)

    desk = Desk(
        executions=lambda: list(studio.requests), table=sample.TABLE_NAME, release_token="x", dynamodb=aws.dynamodb
    )
    text("I want to talk to a person", lambda_context)
    deliver()
    (first_row,) = desk.handoffs()["handoffs"]
    assert first_row["status"] == "with_person"
    assert release(lambda_context, **first_row["release"])[1]["released"] is True  # H1's human is done

    text("what are your opening hours?", lambda_context)  # the AI answers again: a new conversation
    text("I want to talk to a real person", lambda_context)  # H2
    deliver()
    second_row = next(r for r in desk.handoffs()["handoffs"] if r["id"] != first_row["id"])
    assert second_row["status"] == "with_person" and second_row["conversationId"] != first_row["conversationId"]
    assert studio.ended == [first_row["id"]]  # H1's release ended H1's execution

    status, answer = release(lambda_context, **first_row["release"])  # H1's Release, once more

    assert (status, answer["released"]) == (409, False), f"H1's release released H2 instead: {answer}"
    assert next(r for r in desk.handoffs()["handoffs"] if r["id"] == second_row["id"])["status"] == "with_person"
    assert studio.ended == [first_row["id"]]  # and H2's, the new human's, was not ended
