"""Bad settings said in plain words: all at once before `make local` listens (wiring.check), and once
per cold start by a deployed function, never as a traceback on every request."""

from __future__ import annotations

import json

import pytest

from agent_handoff import observability, wiring
from agent_handoff.config import Settings, explain
from agent_handoff.errors import ConfigError
from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import http_api_event, sms_params


def test_explain_names_every_variable_and_what_it_should_be():
    with pytest.raises(ConfigError) as error:
        Settings.from_mapping({"LLM_PROVIDER": "nonsense", "TWILIO_PHONE_NUMBER": "abc"})

    assert explain(error.value) == (
        "configuration problem: TWILIO_PHONE_NUMBER must be an E.164 number such as +14155550100; "
        "LLM_PROVIDER must be one of rules, openai, bedrock"
    )


def test_check_lists_what_every_function_requires_at_once(aws, monkeypatch):
    for name in ("TWILIO_STUDIO_HANDOFF_FLOW_SID", "DEAD_LETTER_QUEUE_URL", "RELAY_WEBSOCKET_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLM_PROVIDER", "bedrock")
    wiring.reset()

    with pytest.raises(ConfigError) as error:
        wiring.check()

    assert set(error.value.problems) == {
        "TWILIO_STUDIO_HANDOFF_FLOW_SID is required and not set",
        "DEAD_LETTER_QUEUE_URL is required and not set",
        "RELAY_WEBSOCKET_URL is required and not set",
        "BEDROCK_MODEL_ID is required and not set",
    }


def test_check_passes_a_runnable_configuration(aws, monkeypatch):
    monkeypatch.setenv("RELAY_WEBSOCKET_URL", "wss://example.execute-api.us-east-1.amazonaws.com/live")
    wiring.reset()

    wiring.check()


@pytest.fixture
def fresh_cold_start():
    observability._config_problems_logged.clear()
    yield
    observability._config_problems_logged.clear()


def test_a_deployed_function_says_a_bad_setting_once_per_cold_start(
    aws, monkeypatch, capsys, fresh_cold_start, lambda_context
):
    monkeypatch.setenv("LLM_PROVIDER", "nonsense")
    wiring.reset()
    app = load_handler("inbound_sms")

    answers = [
        app.handler(
            http_api_event("/sms", sms_params(account_sid=sample.ACCOUNT_SID, body="hi"), auth_token=sample.AUTH_TOKEN),
            lambda_context,
        )
        for _ in range(3)
    ]

    assert [a["statusCode"] for a in answers] == [500, 500, 500]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    problems = [line for line in lines if line.get("level") == "ERROR"]
    assert len(problems) == 1
    assert problems[0]["message"] == "configuration problem: LLM_PROVIDER must be one of rules, openai, bedrock"
    assert "exception" not in problems[0]


def test_the_relay_says_it_too_and_still_answers_api_gateway(
    connections, monkeypatch, capsys, fresh_cold_start, lambda_context
):
    from devtools.samples.events import ws_message_event

    monkeypatch.setenv("HISTORY_LIMIT", "1")
    wiring.reset()
    app = load_handler("voice_relay")

    answer = app.handler(ws_message_event("abc=", json.dumps({"type": "prompt"})), lambda_context)

    assert answer == {"statusCode": 200}  # never an error: API Gateway would send Twilio a non-protocol frame
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (problem,) = [line for line in lines if line.get("level") == "ERROR"]
    assert (
        problem["message"] == "configuration problem: HISTORY_LIMIT must be at least 2" and "exception" not in problem
    )
