"""No lost update, no stuck claim: the SMS service under races, retries and store faults."""

from __future__ import annotations

import pytest

from agent_handoff import wiring
from agent_handoff.agent.rules import RulesProvider
from agent_handoff.deadline import Deadline
from agent_handoff.errors import StoreError
from agent_handoff.sms.service import InboundSms
from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params

sms_app = load_handler("inbound_sms")


def message(body, sid):
    return InboundSms(message_sid=sid, customer=sample.CUSTOMER_NUMBER, agent_number=sample.AGENT_NUMBER, body=body)


def test_concurrent_messages_in_one_conversation_lose_nothing(aws, monkeypatch):
    service_holder = {}

    class Racing(RulesProvider):
        raced = False

        def complete(self, system, messages, tools, *, deadline=None):
            if not Racing.raced:
                Racing.raced = True
                # Another invocation commits a turn on the same conversation in the meantime.
                service_holder["service"].handle(message("what are your hours?", "SM" + "2" * 32))
            return super().complete(system, messages, tools)

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Racing())
    service = service_holder["service"] = wiring.sms_service()

    reply = service.handle(message("how do I track my order?", "SM" + "1" * 32))

    assert "track" in reply.text
    (conversation,) = aws.items("CONV#")
    texts = [t["text"] for t in conversation["history"] if t["role"] == "user"]
    assert sorted(texts) == ["how do I track my order?", "what are your hours?"]
    assert conversation["version"] == 2


def test_stale_claim_of_a_dead_invocation_is_taken_over(aws):
    store = wiring.session_store()
    store.claim_message("SM" + "3" * 32, now=1_000, lease_seconds=30)  # that invocation then died

    reply = wiring.sms_service().handle(message("hi", "SM" + "3" * 32))

    assert "virtual assistant" in reply.text and not reply.duplicate


def test_duplicate_while_the_first_is_in_progress_waits_for_its_reply(aws):
    from agent_handoff.sms.service import SmsService

    service = wiring.sms_service()
    store = wiring.session_store()
    sid = "SM" + "4" * 32
    import time

    claim = store.claim_message(sid, now=int(time.time()), lease_seconds=30)
    ticks = iter(range(10_000))

    def finish_first(seconds):
        if next(ticks) == 2:  # the first invocation finishes while the duplicate polls
            service._answer(message("hi", sid), claim.token, Deadline.after(10), Deadline.after(10))

    waiting = SmsService(store, service._agent, service._policy, sleep=finish_first)

    reply = waiting.handle(message("hi", sid))

    assert reply.duplicate and "virtual assistant" in reply.text


def test_duplicate_gives_up_quietly_when_the_first_never_finishes(aws):
    from agent_handoff.sms.service import SmsService

    service = wiring.sms_service()
    import time

    wiring.session_store().claim_message("SM" + "5" * 32, now=int(time.time()), lease_seconds=30)
    clock = iter(x * 0.5 for x in range(10_000))
    waiting = SmsService(
        wiring.session_store(), service._agent, service._policy, clock=lambda: 1_000 + next(clock), sleep=lambda s: None
    )

    reply = waiting.handle(message("hi", "SM" + "5" * 32))

    assert reply.duplicate and reply.text is None


def test_store_failure_answers_an_apology_and_releases_the_claim(aws, lambda_context, monkeypatch):
    """Not a 500 (Twilio does not retry one): an apology that promises nothing, and nothing half-done."""
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="I need a human")
    event = http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN)
    store = wiring.session_store()
    real_commit = store.commit_turn

    def throttled(*args, **kwargs):
        raise StoreError("DynamoDB transact_write_items failed: ProvisionedThroughputExceededException")

    monkeypatch.setattr(store, "commit_turn", throttled)
    failed = sms_app.handler(event, lambda_context)
    assert failed["statusCode"] == 200 and "try again in a few minutes" in failed["body"]
    assert "Exception" not in failed["body"] and "person" not in failed["body"]
    assert aws.items() == []  # nothing half-done: no conversation, no handoff, no claim left behind

    monkeypatch.setattr(store, "commit_turn", real_commit)
    retried = sms_app.handler(event, lambda_context)

    assert retried["statusCode"] == 200 and "person" in retried["body"]
    assert len(aws.items("HANDOFF#")) == 1


def test_boto_errors_become_store_errors(aws):
    import boto3

    from agent_handoff.storage.session_store import SessionStore

    store = SessionStore(boto3.client("dynamodb"), "no-such-table")
    with pytest.raises(StoreError, match="ResourceNotFoundException"):
        store.load_conversation("CONV#x")


def test_hold_expires_and_the_ai_answers_a_new_conversation(aws, monkeypatch):
    import time

    from agent_handoff.sms.service import SmsService

    service = wiring.sms_service()
    now = time.time()
    service.handle(message("I need a human", "SM" + "6" * 32))
    held = aws.items("CONV#")[0]
    assert service.handle(message("hello?", "SM" + "7" * 32)).text is None

    later = now + held["hold"]["until"] - int(now) + 1
    after = SmsService(wiring.session_store(), service._agent, service._policy, clock=lambda: later)
    reply = after.handle(message("what are your opening hours?", "SM" + "8" * 32))

    assert "Monday" in reply.text
    conversation = aws.items("CONV#")[0]
    assert conversation["conversationId"] != held["conversationId"] and "hold" not in conversation
    assert [t["text"] for t in conversation["history"]][-2] == "what are your opening hours?"
