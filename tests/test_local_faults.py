"""The local stack's fault injection and schedules: faults land where and as often as planned."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from devtools.local.faults import Cadence, FaultPlan, Faults, LambdaTimeout
from devtools.local.lambdas import LambdaContext
from devtools.local.schedules import ScheduleRunner
from devtools.template_functions import schedule_triggers


def test_a_cadence_hits_once_every_n_calls():
    import random

    cadence = Cadence(5, random.Random(1))
    hits = [cadence() for _ in range(50)]
    assert sum(hits) == 10 and cadence.hits == 10
    first = hits.index(True)
    assert all(hits[i] == ((i - first) % 5 == 0) for i in range(first, 50))


def test_one_aws_call_in_n_is_throttled_past_the_sdks_retries():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        faults = Faults(FaultPlan(throttle_every=4, studio_5xx_every=0, kill_every=0, seed=1))
        faults.install([client])
        errors = []
        for _ in range(20):
            try:
                client.list_tables()
            except ClientError as exc:
                errors.append(exc.response["Error"]["Code"])
    assert errors == ["ThrottlingException"] * 5 and faults.throttled == 5


def test_a_killed_invocation_gets_past_except_exception_and_is_reported_as_a_failure():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        faults = Faults(FaultPlan(throttle_every=0, studio_5xx_every=0, kill_every=1, seed=2))
        faults.install([client])
        swallowed = []

        def handler(event, context):
            for _ in range(3):
                try:
                    client.list_tables()
                except Exception as exc:  # the product's own handling must not see a kill
                    swallowed.append(exc)
            return {"ok": True}

        invoke = faults.wrap("SomeFunction", handler)
        for _ in range(5):
            with pytest.raises(LambdaTimeout, match="SomeFunction was killed"):
                invoke({}, LambdaContext())
    assert swallowed == [] and faults.killed == 5 and faults.invocations == 5


def test_without_a_plan_nothing_is_injected():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        faults = Faults(FaultPlan(throttle_every=0, studio_5xx_every=0, kill_every=0))
        faults.install([client])
        invoke = faults.wrap("F", lambda event, context: client.list_tables())
        assert all("TableNames" in invoke({}, LambdaContext()) for _ in range(30))


def test_the_watchdog_is_the_templates_one_schedule():
    (trigger,) = schedule_triggers()
    assert (trigger.function, trigger.expression) == ("HandoffWatchdogFunction", "rate(1 minute)")


def test_a_scheduled_run_gets_eventbridges_event_and_a_countdown():
    seen = []

    def handler(event, context):
        seen.append((event["detail-type"], event["source"], context.get_remaining_time_in_millis()))
        if len(seen) == 2:
            raise RuntimeError("one run fails; the next comes anyway")
        return {"n": len(seen)}

    runner = ScheduleRunner(function="W", handler=handler, interval=60, timeout_seconds=50, rule="r")
    assert runner.run_once() == {"n": 1}
    assert runner.run_once() is None
    assert runner.run_once() == {"n": 3}

    assert [s[:2] for s in seen] == [("Scheduled Event", "aws.events")] * 3
    assert all(40_000 < s[2] <= 50_000 for s in seen)
    assert runner.runs == 3 and runner.failures == 1 and list(runner.results) == [{"n": 1}, {"n": 3}]
