"""Load over loopback: many customers texting the local stack at once. `make load`.

Sends N signed SMS webhooks from C customers with W concurrent senders, a share of them
duplicated (Twilio retries) and a share asking for a person, then checks what a customer would
see: exactly one reply per MessageSid (duplicates get the same one), exactly one Studio
execution per handed-off customer, no 5xx. Prints throughput and latency percentiles.

With --faults the local stack throttles 1 in 20 AWS SDK calls, answers 1 in 50 Studio requests
with a 5xx and kills 1 in 100 invocations at a random point (devtools/local/faults.py); 5xx
answers are then expected, and the check is the promise: every customer who was told a person
will follow up has exactly one Studio execution or a dead-lettered handoff, nobody has two, and
nothing is left undelivered once the watchdog has had its turn.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from devtools.cli import run
from devtools.phones.twilio_side import post_signed
from devtools.samples import sample
from devtools.samples.events import sms_params

QUESTIONS = ("What are your opening hours?", "How do I track my order?", "How do I reset my password?", "Hi")
HUMAN = "I want to talk to a real person"
PROMISE = "person will follow up"  # in the reply that tells a customer about their handoff


@dataclass
class LoadReport:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    replies: dict[str, set[str]] = field(default_factory=dict)  # MessageSid -> distinct bodies
    seconds: float = 0.0
    handed_off: set[str] = field(default_factory=set)
    told: set[str] = field(default_factory=set)  # customers whose reply promised a person

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
                if PROMISE in body:
                    report.told.add(params["From"])
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class PromiseCheck:
    """Whether every customer told "a person will follow up" got one, or a dead letter says why not."""

    told: int = 0
    executions: int = 0  # Studio executions created
    dead_lettered: int = 0  # handoffs failed into the dead-letter queue (type handoff.failed)
    stream_batches: int = 0  # Lambda's records of stream batches it gave up on
    broken: list[str] = field(default_factory=list)  # told, but neither an execution nor a dead letter
    doubled: list[str] = field(default_factory=list)  # more than one execution for a customer
    undelivered: list[str] = field(default_factory=list)  # handoff records still pending or dispatching
    seconds_to_settle: float = 0.0

    @property
    def kept(self) -> bool:
        return not (self.broken or self.doubled or self.undelivered)


def undelivered(stack: Any) -> list[str]:
    return [h["handoffId"] for h in stack.handoffs() if h["status"] in ("pending", "dispatching")]


def check_promises(stack: Any, report: LoadReport, *, settle_seconds: float) -> PromiseCheck:
    """Wait for the stream and the watchdog to finish, then hold every promise to account."""
    started = time.time()
    while time.time() < started + settle_seconds and undelivered(stack):
        time.sleep(0.5)
    check = PromiseCheck(told=len(report.told), seconds_to_settle=time.time() - started)
    check.undelivered = undelivered(stack)
    letters = stack.dead_letters()
    failed = {b["handoffId"] for b in letters if b.get("type") == "handoff.failed"}
    check.dead_lettered = len(failed)
    check.stream_batches = sum("DDBStreamBatchInfo" in b for b in letters)
    executions: dict[str, int] = {}
    for request in stack.studio.requests:
        if request.status == 201:
            executions[request.to] = executions.get(request.to, 0) + 1
    check.executions = sum(executions.values())
    handoffs = stack.handoffs()
    for customer in sorted(report.told):
        lettered = any(h["to"] == customer and h["handoffId"] in failed for h in handoffs)
        if executions.get(customer, 0) != 1 and not (executions.get(customer, 0) == 0 and lettered):
            check.broken.append(customer)
    check.doubled = sorted(c for c, n in executions.items() if n > 1)
    return check


def main(argv: list[str] | None = None) -> int:
    from devtools.local.faults import FaultPlan
    from devtools.local.stack import LocalStack

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--faults", action="store_true", help="throttling, Studio 5xx and killed invocations")
    parser.add_argument("--human-share", type=float, default=0.05)
    args = parser.parse_args(argv)
    faults = FaultPlan() if args.faults else None
    with LocalStack(port=0, log_level="CRITICAL" if faults else "ERROR", faults=faults) as stack:
        report = run_load(
            stack.url,
            messages=args.messages,
            customers=args.customers,
            workers=args.workers,
            duplicate_share=0.1,
            human_share=args.human_share,
        )
        check = check_promises(stack, report, settle_seconds=180)
        injected = stack.fault_injector
        watchdog = [r["handoff"] for r in stack.schedules["HandoffWatchdogFunction"].results if "handoff" in r]
        studio_faults = stack.studio.chaos_faults
    print(
        f"{report.sent} webhooks in {report.seconds:.1f} s: {report.sent / report.seconds:.0f}/s, "
        f"p50 {report.percentile(0.5) * 1000:.0f} ms, p99 {report.percentile(0.99) * 1000:.0f} ms; "
        f"statuses {report.statuses}"
    )
    duplicated_differently = [sid for sid, bodies in report.replies.items() if len(bodies) > 1]
    print(
        f"{len(report.handed_off)} customers asked for a person, {check.told} were told one will follow up; "
        f"{check.executions} Studio executions, {check.dead_lettered} handoffs dead-lettered, "
        f"{check.stream_batches} stream-batch failure records; "
        f"{len(report.replies)} MessageSids answered, {len(duplicated_differently)} with differing replies"
    )
    if injected is not None:
        print(
            f"faults: {injected.throttled} AWS calls throttled, {studio_faults} Studio 5xx, "
            f"{injected.killed} of {injected.invocations} invocations killed"
        )
    print(
        f"watchdog: {len(watchdog)} runs, {sum(r['recovered'] for r in watchdog)} recovered, "
        f"{sum(r['failed'] for r in watchdog)} failed, {sum(r['retried'] for r in watchdog)} handed back; "
        f"settled {check.seconds_to_settle:.1f} s after the load"
    )
    verdict = "kept" if check.kept else "BROKEN"
    print(
        f"promises: {verdict} (told without an execution or dead letter: {check.broken or 'none'}; "
        f"two executions: {check.doubled or 'none'}; undelivered: {check.undelivered or 'none'})"
    )
    return 0 if check.kept else 1


if __name__ == "__main__":
    sys.exit(run(main, "make load"))
