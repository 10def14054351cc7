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
