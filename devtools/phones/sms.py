"""An SMS phone for the agent: type as the customer, watch replies, handoffs and Studio executions.

    python -m devtools.phones.sms                   # interactive (Ctrl-D to end)
    python -m devtools.phones.sms --script FILE     # one message per line, for demos and tests
    python -m devtools.phones.sms --url URL         # against a running stack (make local prints URL)

Runs InboundSmsFunction and HandoffDispatchFunction in this process, on moto's DynamoDB and
SQS (tables from template.yaml) and a loopback Studio recorder, with webhooks signed by
twilio's RequestValidator exactly as Twilio signs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import TextIO

from devtools.local.lambdas import LambdaContext, load_function
from devtools.samples import sample
from devtools.template import ROOT

for _key, _value in sample.FAKE_AWS.items():
    os.environ.setdefault(_key, _value)


Send = Callable[[dict[str, str]], tuple[int, str]]


def _conversation(
    lines: Iterable[str],
    out: TextIO,
    *,
    customer: str,
    account_sid: str,
    prompt: bool,
    send: Send,
    executions: Callable[[], list[dict]],
) -> int:
    """Each line goes out as a signed SMS webhook; the reply and any new Studio execution are shown."""
    from devtools.samples.events import sms_params

    seen = len(executions())
    for line in _prompted(lines, out, prompt):
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if not prompt:
            out.write(f"you> {text}\n")
        status, body = send(sms_params(account_sid=account_sid, body=text, customer=customer))
        out.write(_describe_reply(status, body))
        rows = executions()
        for execution in rows[seen:]:
            data = json.loads(execution["parameters"])["HandoffData"]
            out.write(
                f"   [studio] {execution['status']} execution {execution['sid'] or '-'} on {execution['flow_sid']}"
                f" To={execution['to']} From={execution['from_']}\n"
                f"   [studio] HandoffData reason: {data['attributes'].get('reason')}\n"
            )
        seen = len(rows)
    return sum(1 for execution in executions() if execution["status"] == 201)


def converse(lines: Iterable[str], out: TextIO, *, customer: str, prompt: bool, log_level: str = "WARNING") -> int:
    """In this process: the functions on moto, the outbox delivered after each message."""
    import boto3
    from moto import mock_aws

    from agent_handoff import wiring
    from devtools.fakes.studio_recorder import StudioRecorder
    from devtools.local.streams import StreamReader, filter_patterns, lambda_event, matches
    from devtools.samples.events import http_api_event
    from devtools.template import create_queue, create_table, resource

    saved = dict(os.environ)
    with mock_aws(), StudioRecorder(username=sample.ACCOUNT_SID, password=sample.AUTH_TOKEN) as studio:
        table = create_table(boto3.client("dynamodb"), "SessionsTable", sample.TABLE_NAME)
        queue_url = create_queue(boto3.client("sqs"), "DispatchDeadLetterQueue", sample.DEAD_LETTER_QUEUE_NAME)
        os.environ.update(
            sample.environment(
                STUDIO_BASE_URL=studio.base_url, DEAD_LETTER_QUEUE_URL=queue_url, POWERTOOLS_LOG_LEVEL=log_level
            )
        )
        wiring.reset()
        sms, dispatch = load_function("inbound_sms"), load_function("handoff_dispatch")
        outbox = StreamReader(boto3.client("dynamodbstreams"), table["LatestStreamArn"])
        mapping = resource("HandoffDispatchFunction")["Properties"]["Events"]["HandoffOutbox"]["Properties"]
        patterns = filter_patterns(mapping)

        def send(params: dict[str, str]) -> tuple[int, str]:
            response = sms.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), LambdaContext())
            records = [r for r in outbox.poll() if any(matches(p, r) for p in patterns)]
            if records:
                dispatch.handler(lambda_event(records, table["LatestStreamArn"]), LambdaContext())
            return response["statusCode"], response["body"]

        try:
            return _conversation(
                lines,
                out,
                customer=customer,
                account_sid=sample.ACCOUNT_SID,
                prompt=prompt,
                send=send,
                executions=lambda: [vars(r) for r in studio.requests],
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
) -> int:
    """Against a running stack over HTTP (make local); Studio's side is shown when it is a local stack."""
    import time

    from devtools.local.stack import STUDIO_PATH
    from devtools.phones.twilio_side import get_json, post_signed

    base = url.rstrip("/")

    def send(params: dict[str, str]) -> tuple[int, str]:
        answer = post_signed(f"{base}/sms", params, auth_token, signed_url=f"{(signed_base or base).rstrip('/')}/sms")
        # Let the dispatcher deliver any handoff the message caused before showing Studio's side.
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and _undelivered(base, get_json):
            time.sleep(0.1)
        return answer

    return _conversation(
        lines,
        out,
        customer=customer,
        account_sid=account_sid,
        prompt=prompt,
        send=send,
        executions=lambda: _executions(base, STUDIO_PATH, get_json),
    )


def _undelivered(base: str, get_json) -> bool:
    from devtools.local.stack import HANDOFFS_PATH

    try:
        return any(h["status"] in ("pending", "dispatching") for h in get_json(base + HANDOFFS_PATH))
    except OSError:
        return False


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


def _describe_reply(status: int, body: str) -> str:
    if status != 200:
        return f"   [http {status}] {body.strip()}\n"
    messages = [m.text or "" for m in ET.fromstring(body).findall("Message")]  # noqa: S314 - our own TwiML
    if not messages:
        return "   (no reply: a person has this conversation)\n"
    return "".join(f"agent> {m}\n" for m in messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", type=argparse.FileType("r"), help="a file with one customer message per line")
    parser.add_argument("--customer", default=sample.CUSTOMER_NUMBER, help="the customer's number (From)")
    parser.add_argument("--logs", action="store_true", help="show the functions' structured logs")
    parser.add_argument("--url", help="a running stack's base URL (make local prints it); default: in-process")
    parser.add_argument("--signed-url", help="the base URL Twilio would sign, when it differs (a tunnel)")
    args = parser.parse_args(argv)
    interactive = args.script is None and sys.stdin.isatty()
    if interactive:
        print("Text the agent as the customer. Try 'what are your hours?', then 'I want a human'. Ctrl-D ends.")
        sys.stdout.write("you> ")
        sys.stdout.flush()
    source = args.script or sys.stdin
    if not interactive and args.script is None:
        # Nothing piped in (as under CI, or `make demo` without a terminal): play the bundled demo.
        source = sys.stdin.readlines() or (ROOT / "devtools" / "scripts" / "sms-demo.txt").open()
    if args.url:
        executions = converse_remote(
            source,
            sys.stdout,
            url=args.url,
            customer=args.customer,
            prompt=interactive,
            account_sid=os.environ.get("TWILIO_ACCOUNT_SID", sample.ACCOUNT_SID),
            auth_token=os.environ.get("TWILIO_AUTH_TOKEN", sample.AUTH_TOKEN),
            signed_base=args.signed_url,
        )
    else:
        executions = converse(
            source, sys.stdout, customer=args.customer, prompt=interactive, log_level="INFO" if args.logs else "WARNING"
        )
    print(f"\n{executions} Studio execution(s) started.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
