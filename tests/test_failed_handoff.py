"""A failed handoff releases the customer (issue #12 item 10).

Before: a dead-lettered handoff left its hold on, so the customer's follow-ups got silence for
24 hours while nobody was coming. Now the failure lifts the hold (if it is still that
handoff's), the AI's next reply says plainly that a person could not be reached, one SMS tells
the customer at once, and the operator is alerted (dead letter, DispatchFailures).
"""

from __future__ import annotations

import json

import pytest

from agent_handoff import wiring
from agent_handoff.deadline import Deadline
from agent_handoff.delivery.messages import TwilioMessages
from agent_handoff.storage.records import Hold
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")
NOT_FOUND = ScriptedFault(404, {"code": 20404, "message": "no such flow"})
DEFAULT_NOTICE = "Sorry, we couldn't reach a member of our team right now."


def text(body, lambda_context, customer=sample.CUSTOMER_NUMBER):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer)
    return sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)["body"]


def fail_a_handoff(aws, studio, lambda_context):
    studio.fail_next(NOT_FOUND)
    text("I need a human", lambda_context)
    outbox = Outbox(aws.dynamodb)
    event = outbox.next_event()
    assert dispatch_app.handler(event, lambda_context) == {"batchItemFailures": []}
    return event


def emf(output):
    lines = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    return {
        (d["Name"], line.get("status", "")) for line in lines for d in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }


def test_a_failed_handoff_lifts_the_hold_and_the_ai_says_nobody_is_coming(
    aws, studio, twilio_api, lambda_context, function_logs, monkeypatch
):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    assert "person will follow up" in text("I need a human", lambda_context)  # the promise
    studio.fail_next(NOT_FOUND)
    function_logs.readouterr()
    dispatch_app.handler(Outbox(aws.dynamodb).next_event(), lambda_context)
    metrics = emf(function_logs.readouterr().out)

    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "failed" and "promise" not in record  # nothing more is owed
    (letter,) = aws.dead_letters()
    assert letter["body"]["handoffId"] == record["handoffId"]
    assert ("DispatchFailures", "") in metrics and ("CustomerNotices", "sent") in metrics
    (sms,) = twilio_api.messages  # told at once, from the agent's number
    assert (sms["to"], sms["from"]) == (sample.CUSTOMER_NUMBER, sample.AGENT_NUMBER)
    assert sms["body"].startswith(DEFAULT_NOTICE)

    answer = text("What are your opening hours?", lambda_context)

    assert DEFAULT_NOTICE in answer and "Monday" in answer  # the notice, then the AI's own answer
    assert answer.index(DEFAULT_NOTICE) < answer.index("Monday")
    conversation = aws.items("CONV#")[0]
    assert "hold" not in conversation  # a fresh conversation; the notice is said once
    assert DEFAULT_NOTICE not in text("And on Sundays?", lambda_context)


def test_the_message_is_configurable(aws, studio, twilio_api, lambda_context, monkeypatch):
    monkeypatch.setenv("HANDOFF_FAILED_MESSAGE", "Our team is unavailable; reply HUMAN to try again later.")
    wiring.reset()
    fail_a_handoff(aws, studio, lambda_context)

    assert [m["body"] for m in twilio_api.messages] == ["Our team is unavailable; reply HUMAN to try again later."]
    assert "reply HUMAN" in text("hello?", lambda_context)


def test_the_customer_is_told_once_however_often_the_failure_is_seen(aws, studio, twilio_api, lambda_context):
    event = fail_a_handoff(aws, studio, lambda_context)
    record = aws.items("HANDOFF#")[0]
    failures = wiring.dispatcher()._failures

    dispatch_app.handler(event, lambda_context)  # a redelivered stream record
    failures.aftermath(wiring.session_store().get_handoff(record["handoffId"]), deadline=Deadline.after(5))

    assert len(twilio_api.messages) == 1 and len(aws.dead_letters()) == 1


def test_a_message_that_cannot_be_sent_is_counted_and_blocks_nothing(
    aws, studio, twilio_api, lambda_context, function_logs, monkeypatch
):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    for _ in range(3):
        twilio_api.fail_next_message(503)
    function_logs.readouterr()

    fail_a_handoff(aws, studio, lambda_context)

    assert ("CustomerNotices", "failed") in emf(function_logs.readouterr().out)
    assert twilio_api.messages == [] and len(aws.dead_letters()) == 1
    assert aws.items("HANDOFF#")[0]["status"] == "failed"
    assert DEFAULT_NOTICE in text("hello?", lambda_context)  # the hold was lifted all the same


def test_a_message_whose_answer_was_lost_is_not_sent_again(twilio_api):
    twilio_api.fail_next_message(201, {"sid": "SM" + "1" * 32}, delay=1.5)
    client = TwilioMessages(
        base_url=twilio_api.base_url,
        account_sid=sample.ACCOUNT_SID,
        credentials=(sample.ACCOUNT_SID, sample.AUTH_TOKEN),
    )

    result = client.send(to=sample.CUSTOMER_NUMBER, from_=sample.AGENT_NUMBER, body="x", deadline=Deadline.after(1.0))

    assert not result.sent and "not repeated" in result.detail
    posts = [r for r in twilio_api.requests if r[1].endswith("/Messages.json")]
    assert len(posts) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_a_refused_message_is_retried(twilio_api, status):
    twilio_api.fail_next_message(status)
    client = TwilioMessages(
        base_url=twilio_api.base_url,
        account_sid=sample.ACCOUNT_SID,
        credentials=(sample.ACCOUNT_SID, sample.AUTH_TOKEN),
        sleep=lambda seconds: None,
    )

    result = client.send(to=sample.CUSTOMER_NUMBER, from_=sample.AGENT_NUMBER, body="x", deadline=Deadline.after(5))

    assert result.sent and result.message_sid.startswith("SM") and len(twilio_api.messages) == 1


def test_the_hold_of_a_newer_handoff_is_not_lifted(aws, lambda_context):
    text("I need a human", lambda_context)
    store = wiring.session_store()
    key = aws.items("CONV#")[0]["pk"]

    lifted = store.lift_hold_after_failure(key, "sms-SOMEONE-ELSES", notice="n", now=0)

    assert lifted is False
    assert store.load_conversation(key).hold.notice == ""
    assert "<Message>" not in text("hello?", lambda_context)  # still with a person


def test_the_hold_round_trips_its_notice(aws, lambda_context):
    text("I need a human", lambda_context)
    store = wiring.session_store()
    conversation = store.load_conversation(aws.items("CONV#")[0]["pk"])

    now = conversation.hold.until - 1

    assert store.lift_hold_after_failure(conversation.key, conversation.hold.handoff_id, notice="gone", now=now)
    hold = store.load_conversation(conversation.key).hold
    assert hold == Hold(conversation.hold.handoff_id, conversation.hold.reason, now, "gone")
    assert not hold.active(now)


class Killed(BaseException):
    """The runtime ending an invocation: no `except Exception` sees it."""


def test_a_dispatcher_killed_before_the_aftermath_leaves_it_to_the_watchdog(
    aws, studio, twilio_api, lambda_context, monkeypatch
):
    store = wiring.session_store()
    real_lift = store.lift_hold_after_failure

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(store, "lift_hold_after_failure", die)
    studio.fail_next(NOT_FOUND)
    text("I need a human", lambda_context)
    with pytest.raises(Killed):
        dispatch_app.handler(Outbox(aws.dynamodb).next_event(), lambda_context)
    monkeypatch.setattr(store, "lift_hold_after_failure", real_lift)

    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "failed" and record["promise"] == "handoff"  # the aftermath is still owed
    assert "<Message>" not in text("hello?", lambda_context) and twilio_api.messages == []

    report = wiring.watchdog().run(Deadline.after(20))["handoff"]

    assert report.settled == 1 and report.failed == 0  # counted once, when it failed
    assert len(twilio_api.messages) == 1 and "promise" not in aws.items("HANDOFF#")[0]
    assert DEFAULT_NOTICE in text("hello?", lambda_context)
