"""SMS turns that lose nothing (issue #12, items 3, 4 and 5), asserted as the texter sees them.

Faults are injected where they happen: DynamoDB's answers through moto's client (a cancelled
transaction as botocore raises it), the model's HTTP through a loopback fake, and the runtime
stopping the function as a BaseException raised by a timer (nothing in the code catches it).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError

from agent_handoff import wiring
from agent_handoff.agent.rules import RulesProvider
from agent_handoff.errors import ConfigError, StoreError
from agent_handoff.sms import service as sms_service
from agent_handoff.sms.service import InboundSms, claim_lease_seconds, webhook_deadline
from conftest import load_handler
from devtools.fakes.llm import LlmAnswer, ScriptedLlmFake
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params

sms_app = load_handler("inbound_sms")
OPENING_HOURS = "Monday to Friday"


class CountdownContext:
    """A Lambda context whose remaining time runs down from `timeout` seconds, as the runtime's does."""

    function_name = "sms"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sms"
    aws_request_id = "00000000-0000-0000-0000-000000000001"

    def __init__(self, timeout: float) -> None:
        self.ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.ends - time.monotonic()) * 1000))


class LambdaTimedOut(BaseException):
    """The runtime stopping the function at its timeout: no `except Exception` catches it."""


@contextmanager
def function_timeout(seconds: float):
    def expire(signum, frame):
        raise LambdaTimedOut(f"the function ran past its {seconds} s timeout")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def webhook(body: str, sid: str | None = None) -> dict:
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, sid=sid)
    return http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN)


def texted(response) -> str | None:
    """What the texter receives; an empty <Response/> is None."""
    assert response["statusCode"] == 200, response
    messages = ET.fromstring(response["body"]).findall("Message")
    return messages[0].text if messages else None


class CountingRules(RulesProvider):
    def __init__(self) -> None:
        self.calls = 0

    def complete(self, system, messages, tools, *, deadline=None):
        self.calls += 1
        return super().complete(system, messages, tools, deadline=deadline)


@pytest.fixture
def rules(monkeypatch):
    counting = CountingRules()
    monkeypatch.setattr(wiring, "chat_provider", lambda settings: counting)
    return counting


def cancelled(*reasons: str) -> ClientError:
    """TransactWriteItems cancelled as botocore raises it, one reason per item of the transaction."""
    return ClientError(
        {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": f"Transaction cancelled [{', '.join(reasons)}]",
            },
            "CancellationReasons": [{"Code": r} for r in reasons],
        },
        "TransactWriteItems",
    )


def failing_first(monkeypatch, client, operation: str, *faults: Exception) -> list:
    """`operation` raises each of `faults` in turn, then reaches moto; returns the list of calls made."""
    real = getattr(client, operation)
    calls, pending = [], list(faults)

    def patched(**kwargs):
        calls.append(kwargs)
        if pending:
            raise pending.pop(0)
        return real(**kwargs)

    monkeypatch.setattr(client, operation, patched)
    return calls


# -- item 3: a transaction cancelled by a conflict or throttling is sent again ---------------


@pytest.mark.parametrize(
    "reasons",
    [
        ("None", "TransactionConflict"),  # the message item: Twilio's retry claiming it
        ("TransactionConflict", "None"),  # the conversation: another message's transaction
        ("None", "None", "TransactionConflict"),
        ("ThrottlingError", "None"),
        ("ProvisionedThroughputExceeded", "None", "None"),
    ],
    ids=["conflict-on-message", "conflict-on-conversation", "conflict-on-handoff", "throttled", "throughput"],
)
def test_a_busy_transaction_is_sent_again_and_the_texter_is_answered(aws, rules, lambda_context, monkeypatch, reasons):
    asks_for_a_person = len(reasons) == 3  # the turn that writes a handoff record is a three-item transaction
    client = wiring.session_store()._client
    sends = failing_first(monkeypatch, client, "transact_write_items", cancelled(*reasons), cancelled(*reasons))

    response = sms_app.handler(
        webhook("I need a human" if asks_for_a_person else "what are your hours?"), lambda_context
    )

    text = texted(response)
    assert len(sends) == 3  # twice refused, then committed
    if asks_for_a_person:
        assert "person will follow up" in text
        assert len(aws.items("HANDOFF#")) == 1
    else:
        assert OPENING_HOURS in text and aws.items("HANDOFF#") == []
        assert rules.calls == 1  # the same commit went again; the model was not asked twice
    (message,) = aws.items("MSG#")
    assert message["status"] == "done" and message["reply"] == text


def test_sdk_level_throttling_of_the_commit_is_retried_too(aws, rules, lambda_context, monkeypatch):
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems")
    client = wiring.session_store()._client
    sends = failing_first(monkeypatch, client, "transact_write_items", throttled)

    assert OPENING_HOURS in texted(sms_app.handler(webhook("what are your hours?"), lambda_context))
    assert len(sends) == 2 and rules.calls == 1


def test_a_store_that_stays_busy_gives_up_within_the_deadline_and_leaves_nothing_half_done(
    aws, rules, lambda_context, monkeypatch
):
    client = wiring.session_store()._client
    sends = failing_first(monkeypatch, client, "transact_write_items", *[cancelled("TransactionConflict", "None")] * 50)

    started = time.monotonic()
    response = sms_app.handler(webhook("what are your hours?"), lambda_context)

    # Not a 500, which Twilio would not retry: an apology that promises nothing, since nothing was stored.
    assert texted(response) == sms_service.STORE_DOWN_REPLY and time.monotonic() - started < 10
    assert "person" not in texted(response)
    assert len(sends) == sms_service.MAX_COMMIT_SENDS
    assert aws.items() == []  # the claim was released; no conversation, no handoff


def message(body: str, sid: str) -> InboundSms:
    return InboundSms(message_sid=sid, customer=sample.CUSTOMER_NUMBER, agent_number=sample.AGENT_NUMBER, body=body)


def test_two_quick_messages_ask_the_model_once_each(aws, monkeypatch):
    """The second message commits while the first is with the model: the first is applied on top, not re-run."""
    service_holder = {}

    class Racing(CountingRules):
        def complete(self, system, messages, tools, *, deadline=None):
            answer = super().complete(system, messages, tools, deadline=deadline)
            if self.calls == 1:
                service_holder["service"].handle(message("how do I track my order?", "SM" + "2" * 32))
            return answer

    racing = Racing()
    monkeypatch.setattr(wiring, "chat_provider", lambda settings: racing)
    service = service_holder["service"] = wiring.sms_service()

    first = service.handle(message("what are your hours?", "SM" + "1" * 32))

    assert OPENING_HOURS in first.text and racing.calls == 2
    (conversation,) = aws.items("CONV#")
    assert [t["text"] for t in conversation["history"] if t["role"] == "user"] == [
        "how do I track my order?",
        "what are your hours?",
    ]
    assert conversation["version"] == 2


def test_a_message_racing_a_handoff_stays_with_the_human_and_hands_off_once(aws, monkeypatch):
    """While the model answers one message, the customer's next one asks for a person and commits first."""
    service_holder = {}

    class Racing(CountingRules):
        def complete(self, system, messages, tools, *, deadline=None):
            if self.calls == 0:
                service_holder["service"].handle(message("I want to talk to a person", "SM" + "4" * 32))
            return super().complete(system, messages, tools, deadline=deadline)

    racing = Racing()
    monkeypatch.setattr(wiring, "chat_provider", lambda settings: racing)
    service = service_holder["service"] = wiring.sms_service()

    first = service.handle(message("what are your hours?", "SM" + "3" * 32))

    assert first.on_hold and first.text is None  # the AI is silent once a person has the conversation
    assert racing.calls == 1
    (handoff,) = aws.items("HANDOFF#")
    assert handoff["handoffId"] == "sms-SM" + "4" * 32
    (conversation,) = aws.items("CONV#")
    assert conversation["hold"]["handoffId"] == handoff["handoffId"]
    assert json.loads(handoff["payload"])["conversationId"] == conversation["conversationId"]


# -- item 4: Twilio's retry while the first delivery fails -----------------------------------


def test_a_retry_waiting_on_a_first_delivery_that_fails_answers_itself(aws, lambda_context, monkeypatch):
    event = webhook("I need a human")
    store = wiring.session_store()
    real_commit = store.commit_turn
    first_is_committing, let_first_fail = threading.Event(), threading.Event()

    def commit(commit, **kwargs):
        if not first_is_committing.is_set():
            first_is_committing.set()
            let_first_fail.wait(10)
            raise StoreError("DynamoDB transact_write_items failed: InternalServerError")
        return real_commit(commit, **kwargs)

    monkeypatch.setattr(store, "commit_turn", commit)
    first = {}
    thread = threading.Thread(target=lambda: first.update(response=sms_app.handler(event, lambda_context)))
    thread.start()
    assert first_is_committing.wait(10)
    threading.Timer(0.6, let_first_fail.set).start()  # fails while Twilio's retry waits on it

    retried = sms_app.handler(event, lambda_context)
    thread.join(10)

    assert texted(first["response"]) == sms_service.STORE_DOWN_REPLY  # an apology Twilio no longer waits for
    assert "person will follow up" in texted(retried)
    assert len(aws.items("HANDOFF#")) == 1  # exactly one: one Studio execution
    assert aws.items("MSG#")[0]["reply"] == texted(retried)


def test_a_retry_takes_over_once_a_stopped_first_delivery_s_lease_is_over(aws, lambda_context):
    """The runtime stopped the first delivery (no release): its claim's lease ends with its runtime."""
    sid = "SM" + "5" * 32
    event = webhook("I need a human", sid=sid)
    wiring.session_store().claim_message(sid, now=int(time.time()), lease_seconds=1)

    started = time.monotonic()
    retried = sms_app.handler(event, lambda_context)

    assert "person will follow up" in texted(retried)
    assert len(aws.items("HANDOFF#")) == 1 and time.monotonic() - started < 4


def test_a_retry_still_repeats_the_first_delivery_s_answer(aws, lambda_context, monkeypatch):
    event = webhook("what are your hours?")
    store = wiring.session_store()
    real_commit = store.commit_turn
    first_is_committing, let_first_commit = threading.Event(), threading.Event()

    def commit(commit, **kwargs):
        if not first_is_committing.is_set():
            first_is_committing.set()
            let_first_commit.wait(10)
        return real_commit(commit, **kwargs)

    monkeypatch.setattr(store, "commit_turn", commit)
    first = {}
    thread = threading.Thread(target=lambda: first.update(response=sms_app.handler(event, lambda_context)))
    thread.start()
    assert first_is_committing.wait(10)
    threading.Timer(0.6, let_first_commit.set).start()

    retried = sms_app.handler(event, lambda_context)
    thread.join(10)

    assert texted(retried) == texted(first["response"]) and OPENING_HOURS in texted(retried)
    assert len(aws.items("CONV#")[0]["history"]) == 2  # answered once


# -- item 5: the turn works to the runtime's deadline ----------------------------------------


@pytest.fixture
def openai_llm(aws, monkeypatch):
    fakes = []

    def start(*answers, timeout="3"):
        fake = ScriptedLlmFake(*answers)
        fakes.append(fake)
        for key, value in {
            "LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "sk-test",
            "LLM_TIMEOUT_SECONDS": timeout,
        }.items():
            monkeypatch.setenv(key, value)
        wiring.reset()
        return fake

    yield start
    for fake in fakes:
        fake.stop()


def trickling_answer():
    """A model that writes for 12 s, a few bytes every 0.1 s: no read timeout ever fires."""
    words = {"choices": [{"message": {"role": "assistant", "content": "We open at eight. " * 30}}]}
    return LlmAnswer.json(words, dribble=0.1, piece=5)


def test_a_trickling_model_gets_the_texter_an_apology_and_handoff_before_the_function_times_out(
    aws, openai_llm, monkeypatch
):
    openai_llm(trickling_answer(), timeout="2")  # 2 s a call, 12 s of trickle: bounded per read, it ran 12 s
    context = CountdownContext(timeout=6)

    with function_timeout(6):
        started = time.monotonic()
        response = sms_app.handler(webhook("what's the weather on mars"), context)
        elapsed = time.monotonic() - started

    text = texted(response)
    assert text.startswith("I'm sorry") and "person will follow up" in text
    (handoff,) = aws.items("HANDOFF#")
    assert "ran past the turn's deadline" in json.loads(handoff["payload"])["attributes"]["reason"]
    assert elapsed < 6 - sms_service.RUNTIME_RESERVE_SECONDS


def test_a_handoff_turn_s_second_model_call_cannot_pass_the_deadline(aws, openai_llm):
    handoff_call = {
        "choices": [
            {"message": {"tool_calls": [{"id": "c1", "function": {"name": "handoff", "arguments": '{"reason": "r"}'}}]}}
        ]
    }
    llm = openai_llm(LlmAnswer.json(handoff_call, dribble=0.2, piece=60), trickling_answer(), timeout="2")
    context = CountdownContext(timeout=6)

    with function_timeout(6):
        response = sms_app.handler(webhook("my router keeps failing"), context)

    assert "person will follow up" in texted(response)
    assert len(llm.requests) == 2
    (handoff,) = aws.items("HANDOFF#")
    assert json.loads(handoff["payload"])["attributes"]["reason"] == "r"


def test_the_model_s_deadline_stays_inside_twilio_s_window_however_long_the_runtime_allows(aws, monkeypatch):
    given = []

    class Timed(CountingRules):
        def complete(self, system, messages, tools, *, deadline=None):
            given.append(deadline.remaining())
            return super().complete(system, messages, tools, deadline=deadline)

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Timed())
    runtime = webhook_deadline(CountdownContext(timeout=60))
    assert 58.5 < runtime.remaining() <= 59

    wiring.sms_service().handle(message("what are your hours?", "SM" + "6" * 32), deadline=runtime)

    window = sms_service.ANSWER_WITHIN_SECONDS - sms_service.COMMIT_RESERVE_SECONDS
    assert len(given) == 1 and window - 1 < given[0] <= window
    assert claim_lease_seconds(CountdownContext(timeout=20)) == 21


def test_an_llm_budget_that_cannot_fit_the_function_timeout_is_refused(aws, openai_llm, function_logs):
    openai_llm(LlmAnswer.json({"choices": [{"message": {"content": "hi"}}]}), timeout="18")

    with pytest.raises(ConfigError) as error:
        wiring.check_llm_budget(CountdownContext(timeout=20), reserve_seconds=sms_service.FALLBACK_RESERVE_SECONDS)
    assert "LLM_TIMEOUT_SECONDS (18 s)" in str(error.value) and "Timeout (20 s" in str(error.value)

    response = sms_app.handler(webhook("hi"), CountdownContext(timeout=20))
    assert response["statusCode"] == 500 and aws.items() == []
    assert "LLM_TIMEOUT_SECONDS (18 s)" in function_logs.readouterr().out


def test_the_budget_is_checked_once_per_cold_start(aws, openai_llm, monkeypatch):
    openai_llm(LlmAnswer.json({"choices": [{"message": {"content": "We open at 8."}}]}), timeout="8")
    checks = []
    real_check = type(wiring.settings()).check_llm_fits
    monkeypatch.setattr(
        type(wiring.settings()), "check_llm_fits", lambda *a, **k: checks.append(a) or real_check(*a, **k)
    )

    for n in range(3):
        assert texted(sms_app.handler(webhook("hello?", sid=f"SM{n:032d}"), CountdownContext(timeout=20)))

    assert len(checks) == 1
