"""Load over loopback: many customers texting the local stack at once. `make load`.

Sends N signed SMS webhooks from C customers with W concurrent senders, a share of them
duplicated (Twilio retries) and a share asking for a person, then checks what a customer would
see: exactly one reply per MessageSid (duplicates get the same one), exactly one Studio
execution per handed-off customer, no 5xx. Prints throughput and latency percentiles.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from devtools.cli import run
from devtools.phones.twilio_side import post_signed
from devtools.samples import sample
from devtools.samples.events import sms_params

QUESTIONS = ("What are your opening hours?", "How do I track my order?", "How do I reset my password?", "Hi")
HUMAN = "I want to talk to a real person"


@dataclass
class LoadReport:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    replies: dict[str, set[str]] = field(default_factory=dict)  # MessageSid -> distinct bodies
    seconds: float = 0.0
    handed_off: set[str] = field(default_factory=set)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def run_load(
    url: str, *, messages: int, customers: int, workers: int, duplicate_share: float, human_share: float, seed: int = 7
) -> LoadReport:
    rng = random.Random(seed)
    numbers = [f"+1628{n:07d}" for n in range(customers)]
    plan: list[dict[str, str]] = []
    for index in range(messages):
        customer = numbers[index % customers]
        body = HUMAN if rng.random() < human_share else rng.choice(QUESTIONS)
        plan.append(sms_params(account_sid=sample.ACCOUNT_SID, body=body, customer=customer))
    duplicates = [dict(p) for p in rng.sample(plan, int(messages * duplicate_share))]
    sends = plan + duplicates
    rng.shuffle(sends)
    report = LoadReport()

    def send(params: dict[str, str]) -> tuple[dict[str, str], int, str, float]:
        started = time.perf_counter()
        status, body = post_signed(f"{url}/sms", params, sample.AUTH_TOKEN, timeout=120)
        return params, status, body, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for params, status, body, seconds in pool.map(send, sends):
            report.sent += 1
            report.statuses[status] = report.statuses.get(status, 0) + 1
            report.latencies.append(seconds)
            if status == 200:
                report.replies.setdefault(params["MessageSid"], set()).add(body)
                if params["Body"] == HUMAN:
                    report.handed_off.add(params["From"])
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    from devtools.local.stack import LocalStack

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args(argv)
    with LocalStack(port=0, log_level="ERROR") as stack:
        report = run_load(
            stack.url,
            messages=args.messages,
            customers=args.customers,
            workers=args.workers,
            duplicate_share=0.1,
            human_share=0.05,
        )
        deadline = time.time() + 60
        while time.time() < deadline and any(h["status"] in ("pending", "dispatching") for h in stack.handoffs()):
            time.sleep(0.2)
        executions = [r for r in stack.studio.requests if r.status == 201]
    print(
        f"{report.sent} webhooks in {report.seconds:.1f} s: {report.sent / report.seconds:.0f}/s, "
        f"p50 {report.percentile(0.5) * 1000:.0f} ms, p99 {report.percentile(0.99) * 1000:.0f} ms; "
        f"statuses {report.statuses}"
    )
    duplicated_differently = [sid for sid, bodies in report.replies.items() if len(bodies) > 1]
    print(
        f"{len(report.handed_off)} customers asked for a person; {len(executions)} Studio executions; "
        f"{len(report.replies)} MessageSids answered, {len(duplicated_differently)} with differing replies"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "make load"))
