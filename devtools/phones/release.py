"""The human side saying "done": give a customer's conversation back to the agent. `make release`.

    python -m devtools.phones.release --customer last              # the running `make local`
    python -m devtools.phones.release --customer +14155550100 --url URL

It POSTs /handoff/release as Studio's HTTP widget or Flex would, with the running stack's
HANDOFF_RELEASE_TOKEN (HANDOFF_RELEASE_TOKEN in your shell wins; `make local` prints the
session's). The next message from that customer reaches the agent again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from devtools.cli import UserError, connection_refused, run
from devtools.local import state
from devtools.samples import sample

DEFAULT_URL = "http://127.0.0.1:3000"


LOOPBACK = ("localhost", "127.0.0.1", "::1")


def stack_url(url: str | None) -> str:
    """An explicit URL, else the running `make local`'s, else its default address."""
    base = (url or state.running_stack().get("url") or DEFAULT_URL).strip().rstrip("/")
    if not _well_formed(base):
        raise UserError(
            f"URL must start with http:// or https:// and name a host, as URL=http://127.0.0.1:3000 does "
            f"(got {base!r})",
            status=2,
        )
    return base


def _well_formed(base: str) -> bool:
    parts = urllib.parse.urlsplit(base)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def same_stack(first: str, second: str) -> bool:
    """Whether two base URLs reach the same stack: localhost, 127.0.0.1 and ::1 are one machine."""

    def address(url: str) -> tuple[str, str, int | None, str]:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname or ""
        host = "loopback" if host in LOOPBACK or host.startswith("127.") else host
        try:
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            port = None
        return parts.scheme, host, port, parts.path.rstrip("/")

    return address(first) == address(second)


def session_value(base: str, key: str, environ_name: str, default: str) -> str:
    """From the shell, else from the session file of the stack at `base`, else `default`."""
    if os.environ.get(environ_name):
        return os.environ[environ_name]
    running = state.running_stack()
    if running.get(key) and same_stack(running.get("url", ""), base):
        return running[key]
    return default


def agent_number(base: str) -> str:
    return session_value(base, "agent_number", "TWILIO_PHONE_NUMBER", sample.AGENT_NUMBER)


def release(base: str, customer: str, *, token: str, agent: str, timeout: float = 20) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - the developer's own stack
        f"{base}/handoff/release",
        data=json.dumps({"customer": customer, "agentNumber": agent}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as exc:
        raise unreachable(base, exc) from exc


def unreachable(base: str, exc: BaseException) -> UserError:
    if connection_refused(exc):
        return UserError(
            f"nothing answers at {base}: start the stack with `make local` in another terminal (or give its URL=...)"
        )
    return UserError(f"the stack at {base} did not answer ({exc})")


def describe(status: int, customer: str) -> str:
    if status == 200:
        return f"released: {customer}'s next message goes to the agent again"
    if status == 404:
        return f"{customer} has no conversation with a person: nothing to release"
    if status == 403:
        return "the release token was refused: use the one `make local` printed (HANDOFF_RELEASE_TOKEN=...)"
    return f"the stack answered HTTP {status}: its terminal (make local) says why"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customer", help="the customer's number (E.164), or 'last': the last `make sms` customer")
    parser.add_argument("--url", help="the stack's base URL (default: the running make local)")
    args = parser.parse_args(argv)
    if not args.customer or args.customer.lower() == state.NEW:
        raise UserError("say whose conversation: make release CUSTOMER=+14155550100 (or CUSTOMER=last)", status=2)
    customer = state.choose_number("customer", args.customer)
    base = stack_url(args.url)
    token = session_value(base, "release_token", "HANDOFF_RELEASE_TOKEN", "")
    if not token:
        raise UserError(
            f"no release token for {base}: start it with `make local` (it makes one), or set HANDOFF_RELEASE_TOKEN",
            status=2,
        )
    status, _ = release(base, customer, token=token, agent=agent_number(base))
    line = describe(status, customer)
    if status in (200, 404):
        print(line)
        return 0
    raise UserError(line)


if __name__ == "__main__":
    sys.exit(run(main, "make release"))
