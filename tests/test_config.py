"""Configuration: validated once, errors that name the variable, secrets from Secrets Manager."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws

from agent_handoff import wiring
from agent_handoff.config import Settings
from agent_handoff.errors import ConfigError
from devtools.samples import sample


def test_sample_environment_is_valid():
    settings = Settings.from_mapping(sample.environment())
    assert settings.handoff_attributes == {"department": "support", "priority": "normal"}
    assert settings.llm_provider == "rules" and settings.memory_store_id == ""
    assert settings.studio_base_url == "https://studio.twilio.com"
    assert settings.rest_credentials == (sample.ACCOUNT_SID, sample.AUTH_TOKEN)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TWILIO_STUDIO_HANDOFF_FLOW_SID", "FW123", "TWILIO_STUDIO_HANDOFF_FLOW_SID"),
        ("TWILIO_ACCOUNT_SID", "SK" + "0" * 32, "TWILIO_ACCOUNT_SID"),
        ("TWILIO_PHONE_NUMBER", "4155550100", "TWILIO_PHONE_NUMBER"),
        ("HANDOFF_ATTRIBUTES", "{not json", "HANDOFF_ATTRIBUTES: must be a JSON object"),
        ("HANDOFF_ATTRIBUTES", "[1, 2]", "HANDOFF_ATTRIBUTES: must be a JSON object, not list"),
        ("HANDOFF_ATTRIBUTES", '{"reason": "x"}', "must not set 'reason'"),
        ("LLM_PROVIDER", "gpt", "LLM_PROVIDER"),
        ("LLM_TIMEOUT_SECONDS", "60", "LLM_TIMEOUT_SECONDS"),
        ("HISTORY_LIMIT", "many", "HISTORY_LIMIT"),
        ("STUDIO_BASE_URL", "studio.twilio.com", "STUDIO_BASE_URL"),
    ],
)
def test_invalid_values_name_the_variable(variable, value, expected):
    with pytest.raises(ConfigError) as error:
        Settings.from_mapping(sample.environment(**{variable: value}))
    assert expected in str(error.value)
    assert sample.AUTH_TOKEN not in str(error.value)


def test_blank_values_mean_the_default():
    settings = Settings.from_mapping(sample.environment(HANDOFF_ATTRIBUTES="", STUDIO_BASE_URL="  ", LLM_PROVIDER=""))
    assert settings.handoff_attributes == {} and settings.llm_provider == "rules"
    assert settings.studio_base_url == "https://studio.twilio.com"


def test_require_lists_every_missing_variable():
    settings = Settings.from_mapping({"LLM_PROVIDER": "rules"})
    with pytest.raises(ConfigError) as error:
        settings.require("TWILIO_AUTH_TOKEN", "SESSIONS_TABLE_NAME")
    assert str(error.value) == "missing required environment variable(s): TWILIO_AUTH_TOKEN, SESSIONS_TABLE_NAME"


def test_api_key_wins_for_rest_calls():
    settings = Settings.from_mapping(
        sample.environment(TWILIO_API_KEY="SK" + "2" * 32, TWILIO_API_SECRET="secretvalue")
    )
    assert settings.rest_credentials == ("SK" + "2" * 32, "secretvalue")


@pytest.fixture
def secret_env(monkeypatch):
    with mock_aws():
        import boto3

        arn = boto3.client("secretsmanager").create_secret(
            Name="twilio",
            SecretString=json.dumps(
                {
                    "TWILIO_ACCOUNT_SID": sample.ACCOUNT_SID,
                    "TWILIO_AUTH_TOKEN": "token_from_the_secret_0001",
                    "OPENAI_API_KEY": "sk-from-secret",
                }
            ),
        )["ARN"]
        for key in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "OPENAI_API_KEY"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("TWILIO_SECRET_ARN", arn)
        wiring.reset()
        yield arn
        wiring.reset()


def test_credentials_come_from_the_secret(secret_env):
    settings = wiring.settings()
    assert settings.twilio_auth_token == "token_from_the_secret_0001"
    assert settings.openai_api_key == "sk-from-secret"


def test_plain_variables_win_over_the_secret(secret_env, monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", sample.ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token_from_the_environment")
    assert wiring.settings().twilio_auth_token == "token_from_the_environment"


def test_unreadable_secret_names_the_variable(secret_env, monkeypatch):
    monkeypatch.setenv("TWILIO_SECRET_ARN", secret_env + "-missing")
    with pytest.raises(ConfigError, match="TWILIO_SECRET_ARN: cannot read the secret"):
        wiring.settings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LLM_TIMEOUT_SECONDS", "0", "LLM_TIMEOUT_SECONDS: must be greater than 0"),
        ("LLM_TIMEOUT_SECONDS", "nan", "LLM_TIMEOUT_SECONDS: must be a number of seconds"),
        ("HISTORY_LIMIT", "1", "HISTORY_LIMIT: must be at least 2"),
        ("HISTORY_LIMIT", "2.5", "HISTORY_LIMIT: must be a whole number"),
        ("TWILIO_AUTH_TOKEN", "short", "TWILIO_AUTH_TOKEN: must be at least 16 characters"),
        ("HANDOFF_HOLD_MESSAGE", "x" * 1601, "HANDOFF_HOLD_MESSAGE: must be at most 1600 characters"),
        ("TWILIO_ACCOUNT_SID", "AC123", "TWILIO_ACCOUNT_SID: must be an Account SID: AC and 32 hex digits"),
        ("RELAY_WEBSOCKET_URL", "https://x.example/live", "RELAY_WEBSOCKET_URL: must be a wss:// URL"),
        ("OPENAI_BASE_URL", "https:// spaced", "OPENAI_BASE_URL: must be an http(s):// URL with a host"),
        ("LLM_PROVIDER", "gpt", "LLM_PROVIDER: must be one of rules, openai, bedrock"),
    ],
)
def test_error_messages_say_what_is_expected(variable, value, message):
    with pytest.raises(ConfigError) as error:
        Settings.from_mapping(sample.environment(**{variable: value}))
    assert str(error.value) == "invalid configuration: " + message


def test_every_problem_is_reported_at_once_without_the_values():
    with pytest.raises(ConfigError) as error:
        Settings.from_mapping(sample.environment(TWILIO_AUTH_TOKEN="tiny-secret", HISTORY_LIMIT="0"))
    assert "TWILIO_AUTH_TOKEN" in str(error.value) and "HISTORY_LIMIT" in str(error.value)
    assert "tiny-secret" not in str(error.value)


def test_values_are_typed_and_urls_lose_their_trailing_slash():
    settings = Settings.from_mapping(
        sample.environment(
            OPENAI_BASE_URL="http://127.0.0.1:9/v1/",
            LLM_TIMEOUT_SECONDS="2.5",
            HISTORY_LIMIT=" 40 ",
            LLM_PROVIDER="openai",
        )
    )
    assert settings.openai_base_url == "http://127.0.0.1:9/v1"
    assert settings.llm_timeout_seconds == 2.5 and settings.history_limit == 40
    assert settings.llm_provider == "openai"


def test_settings_are_frozen():
    settings = Settings.from_mapping(sample.environment())
    with pytest.raises(AttributeError):
        settings.history_limit = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("llm_timeout", "function_timeout", "fits"), [("8", 20, True), ("16.5", 20, True), ("17", 20, False)]
)
def test_an_llm_budget_must_fit_the_function_timeout_with_the_fallback_s_reserve(llm_timeout, function_timeout, fits):
    settings = Settings.from_mapping(sample.environment(LLM_PROVIDER="openai", LLM_TIMEOUT_SECONDS=llm_timeout))
    if fits:
        assert settings.check_llm_fits(function_timeout, reserve_seconds=3.5) is settings
        return
    with pytest.raises(ConfigError) as error:
        settings.check_llm_fits(function_timeout, reserve_seconds=3.5)
    message = str(error.value)
    assert "LLM_TIMEOUT_SECONDS (17 s)" in message and "Timeout (20 s" in message and "at most 16.5" in message


def test_the_rules_agent_calls_no_model_and_needs_no_budget():
    settings = Settings.from_mapping(sample.environment(LLM_PROVIDER="rules", LLM_TIMEOUT_SECONDS="25"))
    assert settings.check_llm_fits(10, reserve_seconds=3.5) is settings
