"""The watchdog: every minute it finds overdue promises in the PromisesIndex and keeps them.

Handoff records carry `promise = "handoff"` and `promiseDue` while they owe their customer
something; the watchdog queries what fell due (never a Scan), delivers it through the
dispatcher's own path, or fails it loudly once past its delivery budget.
"""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from agent_handoff import wiring
from agent_handoff.deadline import Deadline
from agent_handoff.delivery.watchdog import HandoffKeeper, KeeperReport, Watchdog
from agent_handoff.storage.session_store import HANDOFF_GRACE_SECONDS
from conftest import load_handler
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.local.lambdas import LambdaContext
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from devtools.template import resource
from streams import Outbox

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")
watchdog_app = load_handler("handoff_watchdog")


def text(body, customer=sample.CUSTOMER_NUMBER):
    params = sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer)
    return sms_app.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), LambdaContext())["body"]


def later(monkeypatch, seconds):
    """Every clock of the watchdog's path, `seconds` from now (the store's clock is its callers')."""
    dispatcher = wiring.dispatcher()
    for service in (wiring.watchdog(), dispatcher, dispatcher._busy, dispatcher._failures, wiring.sms_service()):
        monkeypatch.setattr(service, "_clock", lambda: time.time() + seconds)


def run_watchdog():
    return watchdog_app.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, LambdaContext())


def emf(output):
    return [json.loads(line) for line in output.splitlines() if '"_aws"' in line]


def test_a_handoff_the_stream_never_delivered_is_delivered_once_due(aws, studio, monkeypatch, function_logs):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    # As deployed: the service dimension the WatchdogAlarm selects comes from the function's environment.
    variables = resource("HandoffWatchdogFunction")["Properties"]["Environment"]["Variables"]
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", variables["POWERTOOLS_SERVICE_NAME"])
    text("I need a human")  # the stream's dispatcher never runs: say, its event source mapping is disabled

    assert run_watchdog()["handoff"]["overdue"] == 0  # not due yet: the stream has its grace
    later(monkeypatch, HANDOFF_GRACE_SECONDS + 1)
    function_logs.readouterr()
    summary = run_watchdog()

    assert summary["handoff"]["recovered"] == 1
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "delivered" and record["outcome"] == "created" and "promise" not in record
    assert [r.to for r in studio.created] == [sample.CUSTOMER_NUMBER]
    recovered = [m for m in emf(function_logs.readouterr().out) if "WatchdogRecovered" in m]
    assert recovered[0]["WatchdogRecovered"] == [1.0] and recovered[0]["service"] == "handoff-watchdog"
    alarmed = resource("WatchdogAlarm")["Properties"]["Metrics"][0]["MetricStat"]["Metric"]
    assert alarmed["MetricName"] == "WatchdogRecovered"
    assert recovered[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert [{"Name": "service", "Value": recovered[0]["service"]}] == alarmed["Dimensions"]

    # The stream comes back later: its record finds the handoff delivered and does nothing.
    assert dispatch_app.handler(Outbox(aws.dynamodb).next_event(), LambdaContext()) == {"batchItemFailures": []}
    assert len(studio.requests) == 1


class Killed(BaseException):
    """The runtime ending an invocation: no `except Exception` sees it."""


def test_a_dispatcher_killed_after_its_post_is_recovered_without_a_second_execution(aws, studio, monkeypatch):
    text("I need a human")
    http = wiring.studio_client()._http
    real = http.request

    def post_then_die(method, url, **kwargs):
        real(method, url, **kwargs)
        raise Killed

    monkeypatch.setattr(http, "request", post_then_die)
    with pytest.raises(Killed):
        dispatch_app.handler(Outbox(aws.dynamodb).next_event(), LambdaContext())
    monkeypatch.setattr(http, "request", real)
    lease_until = aws.items("HANDOFF#")[0]["leaseUntil"]

    assert run_watchdog()["handoff"]["overdue"] == 0  # leased: due when the lease runs out
    later(monkeypatch, lease_until - time.time() + 1)
    summary = run_watchdog()

    assert summary["handoff"]["recovered"] == 1
    record = aws.items("HANDOFF#")[0]
    # Taken over from a dead dispatcher, so Studio was asked first: its execution is found, nothing posted again.
    assert record["outcome"] == "found" and record["executionSid"] == studio.created[0].sid
    assert len(studio.created) == 1 and [r.status for r in studio.requests] == [201]


def test_past_its_budget_a_handoff_fails_loudly(aws, studio, twilio_api, monkeypatch, function_logs):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    text("I need a human")
    later(monkeypatch, wiring.settings().handoff_delivery_budget_seconds + 1)
    function_logs.readouterr()

    summary = run_watchdog()

    assert summary["handoff"]["failed"] == 1 and studio.requests == []
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "failed" and record["outcome"] == "overdue" and "promise" not in record
    (letter,) = aws.dead_letters()
    assert letter["body"]["reason"].startswith("overdue: undelivered after")
    assert len(twilio_api.messages) == 1
    failed = [m for m in emf(function_logs.readouterr().out) if "WatchdogFailed" in m]
    assert failed[0]["WatchdogFailed"] == [1.0]
    assert "couldn't reach" in text("hello?")  # the hold is lifted


def test_a_transient_studio_failure_hands_the_record_back_for_a_later_run(aws, studio, monkeypatch):
    monkeypatch.setattr("agent_handoff.delivery.studio.time.sleep", lambda seconds: None)
    text("I need a human")
    studio.fail_next(*[ScriptedFault(503)] * 4)
    later(monkeypatch, HANDOFF_GRACE_SECONDS + 1)

    summary = run_watchdog()

    assert summary["handoff"]["retried"] == 1 and summary["handoff"]["recovered"] == 0
    record = aws.items("HANDOFF#")[0]
    assert record["status"] == "pending" and record["deliveries"] == 1
    assert record["promiseDue"] > time.time() + HANDOFF_GRACE_SECONDS  # due again one grace later

    later(monkeypatch, 3 * HANDOFF_GRACE_SECONDS)
    assert run_watchdog()["handoff"]["recovered"] == 1 and len(studio.created) == 1


def test_the_watchdog_queries_the_index_and_never_scans(aws, studio, monkeypatch):
    for n in range(3):
        text("I need a human", customer=f"+1415555060{n}")
    client = wiring.session_store()._client
    calls = []

    def refuse_scans(params, **kwargs):
        raise AssertionError("the watchdog scanned the table")

    client.meta.events.register("before-parameter-build.dynamodb.Scan", refuse_scans)
    client.meta.events.register(
        "before-parameter-build.dynamodb.Query", lambda params, **kw: calls.append(params["IndexName"])
    )
    later(monkeypatch, HANDOFF_GRACE_SECONDS + 1)
    try:
        summary = run_watchdog()
    finally:
        client.meta.events.unregister("before-parameter-build.dynamodb.Scan", refuse_scans)

    assert summary["handoff"]["recovered"] == 3 and calls and set(calls) == {"PromisesIndex"}


def test_a_throttled_query_leaves_the_promises_for_the_next_run(aws, studio, monkeypatch):
    text("I need a human")
    client = wiring.session_store()._client

    def throttled(request, **kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "Query")

    client.meta.events.register("before-send.dynamodb.Query", throttled)
    later(monkeypatch, HANDOFF_GRACE_SECONDS + 1)
    try:
        assert run_watchdog()["handoff"]["errors"] == 1  # the run survived it
    finally:
        client.meta.events.unregister("before-send.dynamodb.Query", throttled)

    assert run_watchdog()["handoff"]["recovered"] == 1 and len(studio.created) == 1


def test_one_kind_failing_does_not_keep_the_others_waiting(aws, studio, monkeypatch):
    class Broken:
        kind = "voice_end"

        def keep_overdue(self, *, now, deadline):
            raise RuntimeError("its query failed")

    text("I need a human")
    keeper = HandoffKeeper(wiring.session_store(), wiring.dispatcher())
    watchdog = Watchdog([Broken(), keeper], clock=lambda: time.time() + HANDOFF_GRACE_SECONDS + 1)
    later(monkeypatch, HANDOFF_GRACE_SECONDS + 1)

    reports = watchdog.run(Deadline.after(20))

    assert reports["voice_end"] == KeeperReport(errors=1)
    assert reports["handoff"].recovered == 1


def test_what_does_not_fit_the_deadline_waits_for_the_next_run(aws, studio, monkeypatch):
    for n in range(3):
        text("I need a human", customer=f"+1415555070{n}")
    later(monkeypatch, HANDOFF_GRACE_SECONDS + 1)

    report = wiring.watchdog().run(Deadline.after(0.5))["handoff"]

    assert report.overdue == 3 and report.left == 3 and studio.requests == []


def test_the_keepers_are_named_by_promise_kind(aws):
    # The voice channel's "voice_end" keeper is added to this list in wiring.promise_keepers.
    assert [keeper.kind for keeper in wiring.promise_keepers()] == ["handoff", "voice_end"]
