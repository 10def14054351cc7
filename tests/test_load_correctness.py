"""Concurrent webhooks over loopback on the local stack: nothing answered twice, nothing lost.

A small run of what `make load` does at scale (moto copies its tables on every transaction,
so large runs measure moto more than the product; see README, Benchmarks).
"""

from __future__ import annotations

import os
import time

from devtools.bench.load import run_load
from devtools.local.stack import PASS_THROUGH, LocalStack


def test_concurrent_customers_duplicates_and_handoffs():
    environ = {k: v for k, v in os.environ.items() if k not in PASS_THROUGH}
    with LocalStack(port=0, log_level="ERROR", environ=environ) as stack:
        # Four senders: concurrent enough to race, few enough that moto (one request at a time)
        # answers inside the functions' 5 s DynamoDB read timeout even on a loaded machine.
        report = run_load(stack.url, messages=150, customers=30, workers=4, duplicate_share=0.1, human_share=0.1)
        deadline = time.time() + 60
        while time.time() < deadline and any(h["status"] in ("pending", "dispatching") for h in stack.handoffs()):
            time.sleep(0.2)
        handoffs = stack.handoffs()
        executions = [r for r in stack.studio.requests if r.status == 201]

    assert report.statuses == {200: report.sent}  # no 5xx, no refusal
    assert report.sent == 165 and len(report.replies) == 150
    assert all(len(bodies) == 1 for bodies in report.replies.values())  # a retry gets the same answer
    assert {h["status"] for h in handoffs} == {"delivered"}
    assert sorted(r.to for r in executions) == sorted(report.handed_off)  # one execution per customer
    assert len(handoffs) == len(report.handed_off) > 0


def test_with_faults_every_customer_told_gets_one_execution_or_a_dead_letter():
    """The same load with faults sprinkled in (throttled AWS calls, Studio 5xx, killed invocations).

    Throttling is 1 in 20 AWS calls as in `make load --faults`; Studio 5xx and kills are denser
    (1 in 10, 1 in 40 instead of 1 in 50, 1 in 100) so that a run this small meets each of them.
    """
    from devtools.bench.load import check_promises
    from devtools.local.faults import FaultPlan

    environ = {k: v for k, v in os.environ.items() if k not in PASS_THROUGH}
    plan = FaultPlan(throttle_every=20, studio_5xx_every=10, kill_every=40, seed=3)
    with LocalStack(port=0, log_level="CRITICAL", environ=environ, faults=plan, schedule_seconds=2) as stack:
        report = run_load(stack.url, messages=120, customers=30, workers=4, duplicate_share=0.1, human_share=0.3)
        check = check_promises(stack, report, settle_seconds=120)
        injected = stack.fault_injector
        watchdog_runs = stack.schedules["HandoffWatchdogFunction"].runs
        studio_faults = stack.studio.chaos_faults

    assert injected.throttled > 0 and injected.killed > 0 and studio_faults > 0  # the faults happened
    assert set(report.statuses) <= {200, 500}  # a fault is a 500 Twilio sees, never a wrong answer
    assert all(len(bodies) == 1 for bodies in report.replies.values())  # a retry still gets the same answer
    assert check.told > 10 and watchdog_runs > 0
    assert check.broken == []  # told "a person will follow up": one execution, or a dead letter
    assert check.doubled == []  # never two executions for a customer
    assert check.undelivered == []  # nothing left stuck once the watchdog has had its turn
