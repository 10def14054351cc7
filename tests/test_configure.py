"""The configure command against moto's CloudFormation and a loopback Twilio REST API."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from moto import mock_aws

from devtools.fakes.twilio_api import TwilioApiFake
from devtools.ops import configure
from devtools.samples import sample

OUTPUTS = {
    "SmsWebhookUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/sms",
    "VoiceWebhookUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/voice",
    "VoiceActionUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/voice/action",
    "RelayWebSocketUrl": "wss://ws123.execute-api.us-east-1.amazonaws.com/live",
}


@pytest.fixture
def stack(monkeypatch):
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        secret = boto3.client("secretsmanager").create_secret(
            Name="twilio",
            SecretString=json.dumps({"TWILIO_ACCOUNT_SID": sample.ACCOUNT_SID, "TWILIO_AUTH_TOKEN": sample.AUTH_TOKEN}),
        )["ARN"]
        outputs = {**OUTPUTS, "TwilioSecretArn": secret}
        template = {
            "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        boto3.client("cloudformation").create_stack(StackName="ai-handoff", TemplateBody=json.dumps(template))
        yield outputs


@pytest.fixture
def twilio():
    fake = TwilioApiFake(account_sid=sample.ACCOUNT_SID, auth_token=sample.AUTH_TOKEN)
    yield fake
    fake.stop()


def run(twilio, *args):
    out = io.StringIO()
    code = configure.main(["--stack", "ai-handoff", *args], http_client=twilio.http_client(), out=out)
    return code, out.getvalue()


def test_dry_run_prints_the_change_and_makes_none(stack, twilio):
    sid = twilio.add_number(sample.AGENT_NUMBER, sms_url="https://old.example.com/sms")

    code, out = run(twilio, "--phone-number", sample.AGENT_NUMBER, "--dry-run")

    assert code == 0
    assert f"sms_url: https://old.example.com/sms -> {OUTPUTS['SmsWebhookUrl']}" in out
    assert "dry run" in out and twilio.numbers[sid]["sms_url"] == "https://old.example.com/sms"
    assert [method for method, _, _ in twilio.requests] == ["GET"]


def test_points_the_number_at_the_stack_with_the_secret_s_credentials(stack, twilio):
    sid = twilio.add_number(sample.AGENT_NUMBER)

    code, out = run(twilio, "--phone-number", sample.AGENT_NUMBER)

    assert code == 0 and "updated" in out and OUTPUTS["VoiceActionUrl"] in out
    number = twilio.numbers[sid]
    assert (number["sms_url"], number["voice_url"]) == (OUTPUTS["SmsWebhookUrl"], OUTPUTS["VoiceWebhookUrl"])
    assert number["sms_method"] == number["voice_method"] == "POST"
    assert run(twilio, "--phone-number", sample.AGENT_NUMBER)[1].startswith(f"{sample.AGENT_NUMBER} already points")


def test_calls_can_go_through_the_studio_flow(stack, twilio):
    sid = twilio.add_number(sample.AGENT_NUMBER)

    assert run(twilio, "--phone-number", sample.AGENT_NUMBER, "--voice-flow", sample.FLOW_SID)[0] == 0

    expected = f"https://webhooks.twilio.com/v1/Accounts/{sample.ACCOUNT_SID}/Flows/{sample.FLOW_SID}"
    assert twilio.numbers[sid]["voice_url"] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phone-number", "+14155550000"], "is not a number of account"),
        (["--phone-number", "4155550199"], "must be E.164"),
        (["--phone-number", sample.AGENT_NUMBER, "--voice-flow", "FW1"], "must be a Studio Flow SID"),
    ],
)
def test_mistakes_are_explained(stack, twilio, capsys, args, message):
    twilio.add_number(sample.AGENT_NUMBER)
    assert run(twilio, *args)[0] == 2
    assert message in capsys.readouterr().err


def test_unknown_stack_is_explained(stack, twilio, capsys):
    out = io.StringIO()
    assert (
        configure.main(
            ["--stack", "nope", "--phone-number", sample.AGENT_NUMBER], http_client=twilio.http_client(), out=out
        )
        == 2
    )
    assert "cannot read stack 'nope'" in capsys.readouterr().err
