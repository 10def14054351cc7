"""Structured logs carry the ids on every line, and metrics come out as CloudWatch EMF."""

from __future__ import annotations

import json

import pytest

from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params
from streams import Outbox


def lines(text: str) -> list[dict]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


@pytest.fixture
def metrics_on(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "AiHandoffTest")


def emitted(records: list[dict]) -> list[tuple[str, dict, float]]:
    metrics = []
    for record in records:
        directive = record.get("_aws", {}).get("CloudWatchMetrics")
        if not directive:
            continue
        assert directive[0]["Namespace"] == "AiHandoffTest"
        for definition in directive[0]["Metrics"]:
            dimensions = {d: record[d] for d in directive[0]["Dimensions"][0] if d != "service"}
            metrics.append((definition["Name"], dimensions, record[definition["Name"]]))
    return metrics


def test_sms_handoff_logs_and_metrics(aws, studio, lambda_context, function_logs, metrics_on):
    sms, dispatch = load_handler("inbound_sms"), load_handler("handoff_dispatch")
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="I want to speak to a human")
    sms.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)
    dispatch.handler(Outbox(aws.dynamodb).next_event(), lambda_context)

    records = lines(function_logs.readouterr().out)
    core = [r for r in records if r.get("name", "").startswith("agent_handoff")]
    assert core, "core log lines come out as structured JSON"
    handoff_line = next(r for r in core if "handing off" in r["message"])
    assert handoff_line["message_sid"] == params["MessageSid"] and handoff_line["customer"] == "+14*******00"
    replied = next(r for r in records if r.get("message") == "replied")
    assert replied["conversation_id"].startswith("conv_")
    metrics = emitted(records)
    assert ("Turns", {"channel": "sms", "kind": "agent"}, [1.0]) in metrics or (
        "Turns",
        {"channel": "sms", "kind": "agent"},
        1.0,
    ) in metrics
    names = {(name, tuple(sorted(dims.items()))) for name, dims, _ in metrics}
    assert ("Handoffs", (("channel", "sms"), ("trigger", "human_requested"))) in names
    assert ("DispatchOutcomes", (("outcome", "created"), ("status", "delivered"))) in names
    assert any(name == "DispatchLatency" for name, _, _ in metrics)
    assert not any(name == "DispatchFailures" for name, _, _ in metrics)  # this one was delivered


def test_voice_route_metric(aws, lambda_context, function_logs, metrics_on, monkeypatch):
    from devtools.samples.events import action_params

    monkeypatch.setenv("RELAY_WEBSOCKET_URL", "wss://ws.example.com/live")

    action = load_handler("voice_action")
    payload = json.dumps({"conversationId": "conv_1", "storeId": "", "profileId": "", "attributes": {"reason": "r"}})
    params = action_params(
        account_sid=sample.ACCOUNT_SID,
        call_sid="CA" + "8" * 32,
        caller="+14155550100",
        agent=sample.AGENT_NUMBER,
        session_status="ended",
        handoff_data=payload,
    )
    response = action.handler(http_api_event("/voice/action", params, auth_token=sample.AUTH_TOKEN), lambda_context)
    assert response["statusCode"] == 200

    records = lines(function_logs.readouterr().out)
    assert ("VoiceRoutes", {"target": "studio"}) in [(n, d) for n, d, _ in emitted(records)]
    routed = next(r for r in records if "routed to a person" in r.get("message", ""))
    assert routed["call_sid"] == "CA" + "8" * 32 and routed["name"] == "agent_handoff.voice.calls"


def test_ids_learnt_mid_invocation_reach_every_later_line(aws, lambda_context, function_logs, voice_call):
    sms = load_handler("inbound_sms")
    params = sms_params(account_sid=sample.ACCOUNT_SID, body="I need a human")
    sms.handler(http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN), lambda_context)
    handing_off = next(r for r in lines(function_logs.readouterr().out) if "handing off" in r.get("message", ""))
    assert handing_off["conversation_id"].startswith("conv_")

    call = voice_call()
    call.dial()
    call.connect()
    call.setup()
    function_logs.readouterr()
    call.say("agent please")

    records = [r for r in lines(function_logs.readouterr().out) if "message" in r]
    assert records and all(r.get("call_sid") == call.call_sid for r in records), records


@pytest.mark.parametrize(("variable", "value"), [("POWERTOOLS_METRICS_DISABLED", "true"), ("POWERTOOLS_DEV", "true")])
def test_disabled_metrics_print_nothing(monkeypatch, capsys, variable, value):
    from agent_handoff.observability import metric

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv(variable, value)
    metric("Turns", channel="sms", kind="agent")
    assert capsys.readouterr().out == ""

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    metric("Turns", channel="sms", kind="agent")
    assert '"Turns":[1.0]' in capsys.readouterr().out
