"""Point a Twilio number at a deployed stack: `make configure STACK=... NUMBER=+1...`.

    python -m devtools.ops.configure --stack ai-handoff --phone-number +14155550199 --dry-run
    python -m devtools.ops.configure --stack ai-handoff --phone-number +14155550199
    python -m devtools.ops.configure --stack ai-handoff --phone-number +14155550199 --voice-flow FW...

It reads the stack's outputs from CloudFormation and sets the number's Messaging webhook to
SmsWebhookUrl, and its Voice webhook to VoiceWebhookUrl (or, with --voice-flow, to the Studio
Flow whose TwiML Redirect widget hands callers to the agent), both HTTP POST. Credentials come
from TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (or TWILIO_API_KEY / TWILIO_API_SECRET), else from
the stack's secret. --dry-run prints the change and makes none.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from devtools.cli import run
from devtools.ops import aws
from devtools.ops.aws import OpsError

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
FLOW_SID = re.compile(r"^FW[0-9a-fA-F]{32}$")


class ConfigureError(OpsError):
    """Something the operator must fix; the message says what."""


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


stack_outputs = aws.stack_outputs


def credentials(environ: dict[str, str], secrets: Any, outputs: dict[str, str]) -> tuple[str, str, str]:
    """(account SID, username, password) for the REST API."""
    account = environ.get("TWILIO_ACCOUNT_SID", "")
    if account and environ.get("TWILIO_API_KEY") and environ.get("TWILIO_API_SECRET"):
        return account, environ["TWILIO_API_KEY"], environ["TWILIO_API_SECRET"]
    if account and environ.get("TWILIO_AUTH_TOKEN"):
        return account, account, environ["TWILIO_AUTH_TOKEN"]
    secret_arn = outputs.get("TwilioSecretArn")
    if not secret_arn:
        raise ConfigureError("no Twilio credentials: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    with aws.errors(f"cannot read the stack's secret {secret_arn}"):
        value = json.loads(secrets.get_secret_value(SecretId=secret_arn)["SecretString"])
    if not value.get("TWILIO_ACCOUNT_SID") or not value.get("TWILIO_AUTH_TOKEN"):
        raise ConfigureError(f"the stack's secret {secret_arn} has no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN yet")
    return value["TWILIO_ACCOUNT_SID"], value["TWILIO_ACCOUNT_SID"], value["TWILIO_AUTH_TOKEN"]


def configure(
    *,
    client: Any,
    account_sid: str,
    outputs: dict[str, str],
    phone_number: str,
    voice_flow_sid: str | None,
    dry_run: bool,
    out: TextIO,
) -> list[Change]:
    check_arguments(phone_number, voice_flow_sid)
    missing = [name for name in ("SmsWebhookUrl", "VoiceWebhookUrl") if name not in outputs]
    if missing:
        raise ConfigureError(f"the stack has no output(s) {', '.join(missing)}: is it this product's stack?")
    with twilio_errors():
        numbers = client.incoming_phone_numbers.list(phone_number=phone_number, limit=2)
    if not numbers:
        raise ConfigureError(f"{phone_number} is not a number of account {account_sid}")
    number = numbers[0]
    voice_url = (
        f"https://webhooks.twilio.com/v1/Accounts/{account_sid}/Flows/{voice_flow_sid}"
        if voice_flow_sid
        else outputs["VoiceWebhookUrl"]
    )
    wanted = {"sms_url": outputs["SmsWebhookUrl"], "sms_method": "POST", "voice_url": voice_url, "voice_method": "POST"}
    changes = [Change(k, str(getattr(number, k) or ""), v) for k, v in wanted.items() if getattr(number, k) != v]
    for change in changes:
        out.write(f"  {change.field}: {change.before or '(none)'} -> {change.after}\n")
    if not changes:
        out.write(f"{phone_number} already points at the stack.\n")
    elif dry_run:
        out.write(f"dry run: {phone_number} ({number.sid}) was not changed.\n")
    else:
        with twilio_errors():
            client.incoming_phone_numbers(number.sid).update(**{c.field: c.after for c in changes})
        out.write(f"{phone_number} ({number.sid}) updated.\n")
    if outputs.get("VoiceActionUrl"):
        out.write(f"ConversationRelay: {outputs.get('RelayWebSocketUrl', '?')}, action {outputs['VoiceActionUrl']}\n")
    return changes


def check_arguments(phone_number: str, voice_flow_sid: str | None) -> None:
    """What can be checked without AWS or Twilio, checked first."""
    if not E164.match(phone_number or ""):
        raise ConfigureError(f"NUMBER (--phone-number) must be E.164, like +14155550199 (got {phone_number!r})")
    if voice_flow_sid and not FLOW_SID.match(voice_flow_sid):
        raise ConfigureError("FLOW (--voice-flow) must be a Studio Flow SID (FW followed by 32 hex characters)")


@contextlib.contextmanager
def twilio_errors() -> Iterator[None]:
    from twilio.base.exceptions import TwilioException, TwilioRestException

    try:
        yield
    except TwilioRestException as exc:
        hint = ": check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or the stack's secret)" if exc.status == 401 else ""
        raise ConfigureError(f"Twilio refused the request: HTTP {exc.status} {exc.msg}{hint}") from exc
    except (TwilioException, OSError) as exc:
        raise ConfigureError(f"cannot reach Twilio's API: {exc}") from exc


def main(argv: list[str] | None = None, *, http_client: Any = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", help="the deployed stack's name")
    parser.add_argument("--phone-number", help="the Twilio number to point at it (E.164)")
    parser.add_argument("--voice-flow", help="send calls to this Studio Flow (FW...) instead of straight to /voice")
    parser.add_argument("--dry-run", action="store_true", help="print the change, make none")
    args = parser.parse_args(argv)
    try:
        if not args.stack or not args.phone_number:
            raise ConfigureError("say which stack and number: make configure STACK=<stack name> NUMBER=+14155550199")
        check_arguments(args.phone_number, args.voice_flow)
        session = aws.session()
        outputs = stack_outputs(session.client("cloudformation"), args.stack)
        account, username, password = credentials(dict(os.environ), session.client("secretsmanager"), outputs)
        from twilio.rest import Client  # only this operator tool needs the REST client

        client = Client(username, password, account_sid=account, http_client=http_client)
        configure(
            client=client,
            account_sid=account,
            outputs=outputs,
            phone_number=args.phone_number,
            voice_flow_sid=args.voice_flow,
            dry_run=args.dry_run,
            out=out,
        )
    except OpsError as exc:
        print(f"make configure: {exc}", file=sys.stderr)
        return exc.status
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, "make configure"))
