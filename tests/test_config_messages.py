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


# -- the LLM budget: make local checks it as the model-running functions do at cold start -----------


def test_check_refuses_an_llm_timeout_a_function_s_template_timeout_cannot_hold(aws, monkeypatch):
    from devtools import template_functions

    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "20")
    monkeypatch.setenv("RELAY_WEBSOCKET_URL", "wss://example.execute-api.us-east-1.amazonaws.com/live")
    wiring.reset()
    timeouts = {name: spec.timeout for name, spec in template_functions.functions().items()}

    wiring.check()  # without the template's timeouts there is nothing to hold the budget against
    with pytest.raises(ConfigError) as error:
        wiring.check(timeouts)

    # InboundSmsFunction (20 s, keeps 3.5 s) cannot; VoiceRelayFunction (25 s, keeps 2 s) can.
    (problem,) = error.value.problems
    assert problem.startswith("LLM_TIMEOUT_SECONDS (20 s) and the 3.5 s kept for the apology and handoff")
    assert "InboundSmsFunction's Timeout (20 s in template.yaml)" in problem and "at most 16.5" in problem
    assert explain(error.value) == "configuration problem: " + problem  # said once, not "... invalid configuration:"

    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "16.5")
    wiring.reset()
    wiring.check(timeouts)


def test_the_reserves_checked_are_the_ones_the_handlers_keep():
    from agent_handoff.sms.service import FALLBACK_RESERVE_SECONDS
    from devtools import template_functions

    specs = template_functions.functions()
    reserves = wiring.llm_reserves()

    assert set(reserves) <= set(specs)  # a renamed function would silently escape the check
    assert {specs[name].module_path for name in reserves} == {"inbound_sms.app", "voice_relay.app"}
    assert reserves["VoiceRelayFunction"] == load_handler("voice_relay").RESERVE_SECONDS
    assert reserves["InboundSmsFunction"] == FALLBACK_RESERVE_SECONDS
    assert load_handler("inbound_sms").FALLBACK_RESERVE_SECONDS == FALLBACK_RESERVE_SECONDS


def test_a_deployed_function_says_its_llm_budget_problem_once_in_plain_words(
    aws, monkeypatch, capsys, fresh_cold_start
):
    from devtools.local.lambdas import LambdaContext

    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "18")
    wiring.reset()
    app = load_handler("inbound_sms")

    answer = app.handler(
        http_api_event("/sms", sms_params(account_sid=sample.ACCOUNT_SID, body="hi"), auth_token=sample.AUTH_TOKEN),
        LambdaContext(timeout_seconds=20),
    )

    assert answer["statusCode"] == 500
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (problem,) = [line for line in lines if line.get("level") == "ERROR"]
    assert problem["message"].startswith("configuration problem: LLM_TIMEOUT_SECONDS (18 s) and the 3.5 s kept")
    assert "invalid configuration" not in problem["message"]
