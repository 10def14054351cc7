"""Adversarial review of issue 15: the local agent desk's "this machine only" promise.

Kept apart from test_adversarial_context.py: the local stack runs in-process and changes the functions'
environment while it is up.
"""

from __future__ import annotations

import pytest

from devtools.samples import sample

# -- the local desk ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_stack():
    import os

    from devtools.local.stack import PASS_THROUGH, LocalStack

    environ = {k: v for k, v in os.environ.items() if k not in PASS_THROUGH}
    with LocalStack(port=0, log_level="WARNING", environ=environ) as running:
        yield running


def _get(stack_url: str, path: str, host: str) -> tuple[int, str]:
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(stack_url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    connection.request("GET", path, headers={"Host": host})
    answer = connection.getresponse()
    return answer.status, answer.read().decode()


def test_the_desk_and_its_release_token_answer_a_dns_rebound_foreign_origin(local_stack):
    """README: the desk answers 'this machine only' (it embeds HANDOFF_RELEASE_TOKEN and /desk/handoffs gives
    customers' full numbers). The gateway checks only the peer address and proxy headers, never the Host:
    a web page the developer visits (attacker.example, DNS-rebound to 127.0.0.1) is served the desk, the
    release token and every customer's number, and can then release holds with POST /handoff/release."""
    io_text(local_stack, "+14155550177", "I want to talk to a person")
    assert any(r.to == "+14155550177" for r in local_stack.studio.created)  # a handoff is on the desk

    status, page = _get(local_stack.url, "/desk", "attacker.example:3000")
    data_status, data = _get(local_stack.url, "/desk/handoffs", "attacker.example:3000")

    leaked = local_stack.env["HANDOFF_RELEASE_TOKEN"] in page or "+14155550177" in data
    assert not leaked, f"desk served to Host attacker.example: {status}/{data_status}, token or full number included"


def io_text(stack, customer: str, *lines: str) -> str:
    import io

    from devtools.phones import sms as sms_phone

    out = io.StringIO()
    sms_phone.converse_remote(
        [line + "\n" for line in lines],
        out,
        url=stack.url,
        customer=customer,
        prompt=False,
        account_sid=sample.ACCOUNT_SID,
        auth_token=sample.AUTH_TOKEN,
    )
    return out.getvalue()
