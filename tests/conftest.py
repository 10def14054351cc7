"""Shared fixtures: moto's AWS, the table and queue from template.yaml, a Studio recorder."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Fake credentials before any client exists; never reach a real account.
from devtools.samples.sample import FAKE_AWS  # noqa: E402

for _key, _value in {
    **FAKE_AWS,
    "TAC_ANALYTICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}.items():
    os.environ[_key] = _value
os.environ.pop("AWS_PROFILE", None)

from moto import mock_aws  # noqa: E402

from agent_handoff import wiring  # noqa: E402
from devtools.fakes.studio_recorder import StudioRecorder  # noqa: E402
from devtools.local.lambdas import LambdaContext, load_function  # noqa: E402
from devtools.samples import sample  # noqa: E402
from devtools.template import create_queue, create_table  # noqa: E402


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


def load_handler(function_dir: str):
    return load_function(function_dir)


@pytest.fixture
def studio():
    with StudioRecorder(username=sample.ACCOUNT_SID, password=sample.AUTH_TOKEN) as recorder:
        yield recorder


@pytest.fixture
def twilio_api():
    """Twilio's REST API on loopback (Messages, IncomingPhoneNumbers): no test reaches api.twilio.com."""
    from devtools.fakes.twilio_api import TwilioApiFake

    fake = TwilioApiFake(account_sid=sample.ACCOUNT_SID, auth_token=sample.AUTH_TOKEN)
    yield fake
    fake.stop()


@pytest.fixture
def aws(monkeypatch, studio, twilio_api):
    """moto's AWS with the template's table and dead-letter queue, and the functions' environment."""
    with mock_aws():
        import boto3

        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, "SessionsTable", sample.TABLE_NAME)
        sqs = boto3.client("sqs")
        queue_url = create_queue(sqs, "DispatchDeadLetterQueue", sample.DEAD_LETTER_QUEUE_NAME)
        env = sample.environment(
            STUDIO_BASE_URL=studio.base_url, DEAD_LETTER_QUEUE_URL=queue_url, TWILIO_API_BASE_URL=twilio_api.base_url
        )
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        wiring.reset()
        yield AwsHandles(dynamodb=dynamodb, sqs=sqs, queue_url=queue_url)
        wiring.reset()


@dataclass
class AwsHandles:
    dynamodb: object
    sqs: object
    queue_url: str

    def items(self, prefix: str = "") -> list[dict]:
        from agent_handoff.storage.dynamo import plain_item

        pages = self.dynamodb.get_paginator("scan").paginate(TableName=sample.TABLE_NAME)
        rows = [plain_item(item) for page in pages for item in page["Items"]]
        return sorted((r for r in rows if r["pk"].startswith(prefix)), key=lambda r: r["pk"])

    def dead_letters(self) -> list[dict]:
        import json

        messages = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(
                    {"body": json.loads(message["Body"]), "attributes": message.get("MessageAttributes", {})}
                )
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


class _LiveStdout:
    """Whatever sys.stdout is at the moment of writing (pytest swaps it between phases and tests)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def _function_logs_to_live_stdout():
    """Powertools' StreamHandlers keep the stdout of the moment their module was imported, an
    earlier pytest capture; point every one at the live stdout so capsys/capfd see function logs."""
    import logging

    for logger in [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _LiveStdout):
                handler.stream = _LiveStdout()  # not setStream: it would flush a capture pytest closed
    yield


@pytest.fixture
def function_logs(capsys):
    return capsys


RELAY_URL = "wss://wsabc12345.execute-api.us-east-1.amazonaws.com/live"


@pytest.fixture
def connections(aws, monkeypatch):
    """A loopback @connections endpoint the relay posts its frames to."""
    from devtools.fakes.connections import ConnectionsEndpoint

    with ConnectionsEndpoint() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", endpoint.url)
        monkeypatch.setenv("RELAY_WEBSOCKET_URL", RELAY_URL)
        wiring.reset()
        yield endpoint


@pytest.fixture
def voice_call(connections, lambda_context):
    """Make a caller playing Twilio's side of a call against the voice functions."""
    from devtools.phones.voice_caller import Functions, VoiceCall

    loaded: list[Functions] = []

    def make(**kwargs):
        # Loaded by the test itself, so the handlers' loggers write to the stdout the test captures.
        if not loaded:
            loaded.append(Functions.load())
        return VoiceCall(
            loaded[0],
            connections,
            account_sid=sample.ACCOUNT_SID,
            auth_token=sample.AUTH_TOKEN,
            context=lambda_context,
            **kwargs,
        )

    return make
