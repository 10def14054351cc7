"""StudioClient against the loopback recorder: timeouts, Retry-After, answers it must not trust."""

from __future__ import annotations

from agent_handoff.delivery.studio import StudioClient
from devtools.fakes.studio_recorder import ScriptedFault
from devtools.samples import sample


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


def test_phone_numbers_in_twilio_errors_are_masked(studio):
    studio.fail_next(ScriptedFault(400, {"code": 21211, "message": "Invalid 'To' Phone Number: +14155550100"}))
    result = start(client(studio, sleeps=[]))
    assert result.kind == "permanent" and "+14155550100" not in result.detail and "21211" in result.detail


def test_the_form_and_credentials_reach_studio(studio):
    result = start(client(studio, sleeps=[]))

    assert result.kind == "created" and result.execution_sid.startswith("FN")
    (request,) = studio.requests
    assert (request.flow_sid, request.to, request.from_) == (sample.FLOW_SID, "+14155550100", sample.AGENT_NUMBER)
    assert request.parameters == '{"HandoffData":{}}' and request.username == sample.ACCOUNT_SID


def test_wrong_credentials_are_permanent(studio):
    c = StudioClient(base_url=studio.base_url, credentials=(sample.ACCOUNT_SID, "wrong"), sleep=[].append)
    result = start(c)
    assert result.kind == "permanent" and result.status_code == 401 and len(studio.requests) == 1


def test_a_connection_refused_is_a_network_error_and_retried():
    sleeps = []
    c = StudioClient(base_url="http://127.0.0.1:9", credentials=("a", "b"), sleep=sleeps.append, max_attempts=2)
    result = start(c)
    assert result.kind == "transient" and result.detail.startswith("network error") and len(sleeps) == 1
