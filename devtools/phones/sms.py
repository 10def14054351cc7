"""An SMS phone for the agent: type as the customer, watch replies, handoffs and Studio executions.

    python -m devtools.phones.sms --local              # against the running `make local` (make sms)
    python -m devtools.phones.sms --url URL            # against a stack at URL
    python -m devtools.phones.sms                      # in this process, no server (make demo)
    ... --script FILE                                  # one message per line, for demos and tests
    ... --customer last                                # the number of the previous session (default: a new one)

Lines starting with / are commands: /release gives a conversation that a handoff put on hold
back to the agent (as the human side does when it is done), /help lists them.

In-process, it runs InboundSmsFunction and HandoffDispatchFunction on moto's DynamoDB and SQS
(tables from template.yaml) and a loopback Studio recorder; the functions' logs and metrics go
to stderr (--logs shows them all), never into the conversation. Webhooks are signed by twilio's
RequestValidator exactly as Twilio signs them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.error
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from devtools.cli import UserError, open_script, run
from devtools.local import state
from devtools.local.lambdas import LambdaContext, load_function
from devtools.samples import sample
from devtools.template import ROOT

for _key, _value in sample.FAKE_AWS.items():
    os.environ.setdefault(_key, _value)


Send = Callable[[dict[str, str]], tuple[int, str]]
Release = Callable[[], tuple[int, str]]
COMMANDS = "/release gives the conversation back to the agent; /help shows this"


@dataclass
class Answers:
    """What the stack answered this session's messages, by HTTP status."""

    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def accepted(self) -> bool:
        return self.statuses[200] > 0

    def problem(self, logs: str) -> str | None:
        """One line on the messages that got no answer, with what to do; None when all got one."""
        failed = {status: n for status, n in sorted(self.statuses.items()) if status != 200}
        if not failed:
            return None
        hints = []
        if 403 in failed:
            hints.append("403: the stack refused their signature (its TWILIO_AUTH_TOKEN differs from this shell's)")
        if set(failed) - {403}:
            hints.append(f"{logs} says why the stack failed")
        codes = ", ".join(f"{n} x HTTP {status}" for status, n in failed.items())
        return f"{sum(failed.values())} of {sum(self.statuses.values())} message(s) got no answer ({codes}): " + (
            "; ".join(hints)
        )


def _conversation(
    lines: Iterable[str],
    out: TextIO,
    *,
    customer: str,
    agent: str,
    account_sid: str,
    prompt: bool,
    send: Send,
    executions: Callable[[], list[dict]],
    release: Release,
    answers: Answers | None = None,
) -> int:
    """Each line goes out as a signed SMS webhook; the reply and any new Studio execution are shown.

    Returns the Studio executions this session started for this customer (not the stack's total);
    `answers` counts the stack's answers by status.
    """
    answers = Answers() if answers is None else answers
    from devtools.phones.release import describe
    from devtools.samples.events import sms_params

    seen = len(executions())
    started = 0
    told_about_hold = False
    for line in _prompted(lines, out, prompt):
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if not prompt:
            out.write(f"you> {text}\n")
        if text.startswith("/"):
            command = text.strip().lower()
            if command == "/release":
                status, _ = release()
                out.write(f"   [release] {describe(status, customer)}\n")
            else:
                out.write(f"   commands: {COMMANDS}\n")
            continue
        status, body = send(sms_params(account_sid=account_sid, body=text, customer=customer, agent=agent))
        answers.statuses[status] += 1
        reply = _describe_reply(status, body)
        if reply is None:
            reply = "   (no reply: a person has this conversation)\n"
            if not told_about_hold:
                reply = (
                    "   (no reply: a person has this conversation, so the agent stays silent until the hold ends;"
                    " /release gives it back)\n"
                )
                told_about_hold = True
        out.write(reply)
        rows = executions()
        for execution in rows[seen:]:
            if execution["to"] != customer:
                continue  # another phone on the same stack
            data = json.loads(execution["parameters"])["HandoffData"]
            out.write(
                f"   [studio] {execution['status']} execution {execution['sid'] or '-'} on {execution['flow_sid']}"
                f" To={execution['to']} From={execution['from_']}\n"
                f"   [studio] HandoffData reason: {data['attributes'].get('reason')}\n"
            )
            started += execution["status"] == 201
        seen = len(rows)
    return started


def converse(
    lines: Iterable[str],
    out: TextIO,
    *,
    customer: str,
    prompt: bool,
    log_level: str = "WARNING",
    logs: TextIO | None = None,
    answers: Answers | None = None,
) -> int:
    """In this process: the functions on moto, the outbox delivered after each message.

    The functions print their logs and metrics (EMF) to stdout, as in Lambda: here stdout is
    `logs` (stderr by default) while they run, so only the conversation reaches `out`.
    """
    import boto3
    from moto import mock_aws

    from agent_handoff import wiring
    from devtools.fakes.studio_recorder import StudioRecorder
    from devtools.local.streams import StreamReader, filter_patterns, lambda_event, matches
    from devtools.samples.events import http_api_event
    from devtools.template import create_queue, create_table, resource

    saved = dict(os.environ)
    log_stream = logs if logs is not None else sys.stderr
    with (
        mock_aws(),
        StudioRecorder(username=sample.ACCOUNT_SID, password=sample.AUTH_TOKEN) as studio,
        contextlib.redirect_stdout(log_stream),
    ):
        table = create_table(boto3.client("dynamodb"), "SessionsTable", sample.TABLE_NAME)
        queue_url = create_queue(boto3.client("sqs"), "DispatchDeadLetterQueue", sample.DEAD_LETTER_QUEUE_NAME)
        os.environ.update(
            sample.environment(
                STUDIO_BASE_URL=studio.base_url, DEAD_LETTER_QUEUE_URL=queue_url, POWERTOOLS_LOG_LEVEL=log_level
            )
        )
        wiring.reset()
        sms, dispatch = load_function("inbound_sms"), load_function("handoff_dispatch")
        release_function = load_function("handoff_release")
        outbox = StreamReader(boto3.client("dynamodbstreams"), table["LatestStreamArn"])
        mapping = resource("HandoffDispatchFunction")["Properties"]["Events"]["HandoffOutbox"]["Properties"]
        patterns = filter_patterns(mapping)

        def send(params: dict[str, str]) -> tuple[int, str]:
            response = sms.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), LambdaContext())
            records = [r for r in outbox.poll() if any(matches(p, r) for p in patterns)]
            if records:
                dispatch.handler(lambda_event(records, table["LatestStreamArn"]), LambdaContext())
            return response["statusCode"], response["body"]

        def release() -> tuple[int, str]:
            from devtools.samples.events import release_event

            response = release_function.handler(
                release_event(customer, sample.AGENT_NUMBER, sample.RELEASE_TOKEN), LambdaContext()
            )
            if response["statusCode"] == 200:
                studio.end_execution(customer)
            return response["statusCode"], response["body"]

        try:
            return _conversation(
                lines,
                out,
                customer=customer,
                agent=sample.AGENT_NUMBER,
                account_sid=sample.ACCOUNT_SID,
                prompt=prompt,
                send=send,
                executions=lambda: [vars(r) for r in studio.requests],
                release=release,
                answers=answers,
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)
            wiring.reset()


def converse_remote(
    lines: Iterable[str],
    out: TextIO,
    *,
    url: str,
    customer: str,
    prompt: bool,
    account_sid: str,
    auth_token: str,
    signed_base: str | None = None,
    wait_seconds: float = 5.0,
    agent: str | None = None,
    release_token: str = "",
    answers: Answers | None = None,
) -> int:
    """Against a running stack over HTTP (make local); Studio's side is shown when it is a local stack."""
    import time

    from devtools.local.stack import STUDIO_PATH
    from devtools.phones import release as releasing
    from devtools.phones.twilio_side import get_json, post_signed

    base = url.rstrip("/")
    agent = agent or sample.AGENT_NUMBER
    _reachable(base, get_json)

    def send(params: dict[str, str]) -> tuple[int, str]:
        try:
            answer = post_signed(
                f"{base}/sms", params, auth_token, signed_url=f"{(signed_base or base).rstrip('/')}/sms"
            )
        except OSError as exc:
            raise releasing.unreachable(base, exc) from exc
        # Let the dispatcher deliver any handoff the message caused before showing Studio's side.
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and _undelivered(base, get_json, params["From"]):
            time.sleep(0.1)
        return answer

    def release() -> tuple[int, str]:
        if not release_token:
            raise UserError("no release token for this stack: set HANDOFF_RELEASE_TOKEN to the one it printed")
        return releasing.release(base, customer, token=release_token, agent=agent)

    return _conversation(
        lines,
        out,
        customer=customer,
        agent=agent,
        account_sid=account_sid,
        prompt=prompt,
        send=send,
        executions=lambda: _executions(base, STUDIO_PATH, get_json),
        release=release,
        answers=answers,
    )


def _reachable(base: str, get_json) -> None:
    """Fail before the first message, not after the customer typed it, when no stack is there."""
    from devtools.local.stack import STUDIO_PATH
    from devtools.phones.release import unreachable

    try:
        get_json(base + STUDIO_PATH)
    except urllib.error.HTTPError:
        pass  # something answers; not a local stack (a tunnel, a deployed stack)
    except OSError as exc:
        raise unreachable(base, exc) from exc


def _undelivered(base: str, get_json, customer: str) -> bool:
    from devtools.local.stack import HANDOFFS_PATH

    try:
        rows = get_json(base + HANDOFFS_PATH)
    except OSError:
        return False
    return any(h["status"] in ("pending", "dispatching") and h.get("to") == customer for h in rows)


def _executions(base: str, path: str, get_json) -> list[dict]:
    try:
        return get_json(base + path)
    except OSError:
        return []  # not a local stack: no recorder to show


def _prompted(lines: Iterable[str], out: TextIO, prompt: bool) -> Iterable[str]:
    for line in lines:
        yield line
        if prompt:
            out.write("you> ")
            out.flush()


def _describe_reply(status: int, body: str) -> str | None:
    """What the customer's phone shows; None when the agent said nothing."""
    if status == 403:
        return f"   [http 403] the stack refused the signature: both sides need the same TWILIO_AUTH_TOKEN ({body.strip()})\n"
    if status != 200:
        return f"   [http {status}] {body.strip()}   (the stack's terminal says why)\n"
    messages = [m.text or "" for m in ET.fromstring(body).findall("Message")]  # noqa: S314 - our own TwiML
    if not messages:
        return None
    return "".join(f"agent> {m}\n" for m in messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", help="a file with one customer message per line")
    parser.add_argument(
        "--customer", help="the customer's number (From): E.164, 'new' (default) or 'last' (the previous session's)"
    )
    parser.add_argument("--logs", action="store_true", help="in-process: show every log line and metric (stderr)")
    parser.add_argument("--json", action="store_true", help="in-process: the functions' raw JSON lines on stderr")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running stack's base URL")
    target.add_argument("--local", action="store_true", help="the running `make local` (its URL, or port 3000)")
    parser.add_argument("--signed-url", help="the base URL Twilio would sign, when it differs (a tunnel)")
    args = parser.parse_args(argv)
    script = open_script(args.script) if args.script else None
    interactive = script is None and sys.stdin.isatty()
    remote = bool(args.url or args.local)
    if remote:
        from devtools.phones import release as releasing

        base = releasing.stack_url(args.url)
        customer = state.choose_number("customer", args.customer)
        agent = releasing.agent_number(base)
        print(f"You are {customer}, texting the agent at {agent} through {base} (CUSTOMER=last: this number again).")
    else:
        customer = state.choose_number("customer", args.customer) if args.customer else sample.CUSTOMER_NUMBER
    if interactive:
        print(f"Type as the customer; try 'what are your hours?', then 'I want a human'. {COMMANDS}. Ctrl-D ends.")
        sys.stdout.write("you> ")
    sys.stdout.flush()
    source: Iterable[str] = script or sys.stdin
    if not interactive and script is None:
        # Nothing piped in (as under CI, or `make demo` without a terminal): play the bundled demo.
        source = sys.stdin.readlines() or (ROOT / "devtools" / "scripts" / "sms-demo.txt").open()
    answers = Answers()
    try:
        if remote:
            executions = converse_remote(
                source,
                sys.stdout,
                url=base,
                customer=customer,
                prompt=interactive,
                account_sid=os.environ.get("TWILIO_ACCOUNT_SID", sample.ACCOUNT_SID),
                auth_token=os.environ.get("TWILIO_AUTH_TOKEN", sample.AUTH_TOKEN),
                signed_base=args.signed_url,
                agent=agent,
                release_token=releasing.session_value(base, "release_token", "HANDOFF_RELEASE_TOKEN", ""),
                answers=answers,
            )
        else:
            executions = converse(
                source,
                sys.stdout,
                customer=customer,
                prompt=interactive,
                log_level="INFO" if args.logs or args.json else "WARNING",
                logs=_log_stream(args.logs, args.json),
                answers=answers,
            )
    finally:
        if remote and answers.accepted:  # CUSTOMER=last: a number the stack has seen, not one that reached nothing
            state.remember("customer", customer)
    print(f"\n{executions} Studio execution(s) started in this session.")
    problem = answers.problem("its terminal (make local)" if remote else "the log lines above (LOGS=1: all of them)")
    if problem:
        raise UserError(problem)
    return 0


def _log_stream(verbose: bool, raw: bool) -> TextIO:
    if raw:
        return sys.stderr
    from devtools.local.logs import HumanLogs

    return HumanLogs(sys.stderr, metrics=verbose)


def command_name(argv: list[str]) -> str:
    """The make target a person ran: the phone against a stack (`make sms`), or in-process (`make demo`)."""
    remote = any(arg == "--local" or arg.startswith("--url") for arg in argv)
    return "make sms" if remote else "make demo"


if __name__ == "__main__":
    sys.exit(run(main, command_name(sys.argv[1:])))
