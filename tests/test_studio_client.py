"""StudioClient against the loopback recorder: timeouts, Retry-After, answers it must not trust."""

from __future__ import annotations

import httpx

from agent_handoff.studio import StudioClient
from devtools import sample
from devtools.studio_recorder import ScriptedFault


def client(studio, *, sleeps, **kw):
    return StudioClient(
        base_url=studio.base_url, credentials=(sample.ACCOUNT_SID, sample.AUTH_TOKEN), sleep=sleeps.append, **kw
    )


def start(c):
    return c.start_execution(
        flow_sid=sample.FLOW_SID, to="+14155550100", from_=sample.AGENT_NUMBER, parameters='{"HandoffData":{}}'
    )


def test_timeout_is_retried_and_the_repeat_meets_409(studio):
    sleeps = []
    # Studio received the first POST but answered too late: the retry finds the execution active.
    studio.fail_next(ScriptedFault(201, {"sid": "FN" + "a" * 32}, delay=0.5))
    studio.active[(sample.FLOW_SID, "+14155550100")] = "FN" + "a" * 32

    result = start(client(studio, sleeps=sleeps, timeout_seconds=0.2))

    assert result.kind == "already_active"
    assert len(sleeps) == 1


def test_retry_after_is_honoured_and_capped(studio):
    sleeps = []
    studio.fail_next(
        ScriptedFault(429, headers={"Retry-After": "2"}), ScriptedFault(429, headers={"Retry-After": "999"})
    )

    assert start(client(studio, sleeps=sleeps)).kind == "created"
    assert 1.6 <= sleeps[0] <= 2.4 and sleeps[1] <= 12.0


def test_gives_up_after_max_attempts(studio):
    sleeps = []
    studio.fail_next(*[ScriptedFault(502)] * 3)

    result = start(client(studio, sleeps=sleeps, max_attempts=3))

    assert result.kind == "transient" and result.status_code == 502
    assert len(sleeps) == 2 and len(studio.requests) == 3


def test_success_without_an_execution_sid_is_not_trusted(studio):
    studio.fail_next(ScriptedFault(201, {"status": "active"}))
    result = start(client(studio, sleeps=[], max_attempts=1))
    assert result.kind == "transient" and "no execution sid" in result.detail


def test_phone_numbers_in_twilio_errors_are_masked():
    def handler(request):
        return httpx.Response(400, json={"code": 21211, "message": "Invalid 'To' Phone Number: +14155550100"})

    c = StudioClient(base_url="https://studio.test", credentials=("a", "b"), transport=httpx.MockTransport(handler))
    result = c.start_execution(flow_sid="FW1", to="+14155550100", from_="+1", parameters="{}")
    assert result.kind == "permanent" and "+14155550100" not in result.detail and "21211" in result.detail
