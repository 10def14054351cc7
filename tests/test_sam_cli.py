"""The SAM CLI itself validates and builds the bundle, with no Docker and no Python 3.13 needed.

`make test` installs the SAM CLI in its own venv and passes it as SAM_CLI; CI always runs these.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.bench.deployment import install_runtime, missing_bytecode
from devtools.template import ROOT
from devtools.template_functions import functions as template_functions

SAM = os.environ.get("SAM_CLI") or shutil.which("sam")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SAM and not os.environ.get("CI"), reason="SAM CLI not installed: `make test` installs it in .venv-sam"
    ),
]


def sam(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    assert SAM, "CI must run these: the SAM CLI was not found (SAM_CLI or PATH)"
    result = subprocess.run(
        [SAM, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", **(env or {})},
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_sam_validate_lint():
    result = sam("validate", "--lint")
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_build_default_arm64(tmp_path):
    build = tmp_path / "build"
    # No Python 3.13 needed: without one the build ships no bytecode and says so.
    result = sam("build", "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache"), env={"PYC_PYTHON": ""})

    assert "ships without bytecode" in result.stdout + result.stderr
    # Each layer is built for the Architecture parameter, which its CompatibleArchitectures lists.
    assert "not listed in CompatibleArchitectures" not in result.stdout + result.stderr
    for function in template_functions():
        assert [p.name for p in (build / function).rglob("*") if p.is_file()] == ["app.py"]
    assert (build / "CoreLayer" / "python" / "agent_handoff" / "wiring.py").is_file()
    assert (build / "DependenciesLayer" / "python" / "twilio" / "request_validator.py").is_file()
    assert not (build / "DependenciesLayer" / "python" / "twilio" / "rest").exists()
    assert (build / "template.yaml").is_file()


RUNNER = """
import importlib, json, sys
paths, module, event_file = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.path[:0] = paths
class Context:
    function_name = "built"; function_version = "$LATEST"; memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:built"
    aws_request_id = "built-0001"; log_group_name = "/aws/lambda/built"; log_stream_name = "built"
    def get_remaining_time_in_millis(self): return 20000
handler = importlib.import_module(module).handler
print("RESULT " + json.dumps(handler(json.load(open(event_file)), Context())))
"""

SAMPLES = {
    "InboundSmsFunction": ["sms-message.json"],
    "HandoffDispatchFunction": ["dispatch-stream.json"],
    "IncomingCallFunction": ["voice-incoming-call.json"],
    "VoiceRelayFunction": ["relay-connect.json", "relay-setup.json", "relay-prompt.json"],
    "VoiceActionFunction": ["voice-action-hangup.json"],
    "HandoffReleaseFunction": ["handoff-release.json"],
    "HandoffTranscriptFunction": ["handoff-transcript.json"],
    "HandoffWatchdogFunction": ["watchdog-schedule.json"],  # last: the dispatch sample's handoff is delivered
}


def test_every_function_runs_from_the_build_output_as_lambda_imports_it(tmp_path):
    """Host-architecture build; each function sees only its folder, the layers and a boto3 runtime."""
    import json
    import platform
    import sys

    import boto3
    from moto.server import ThreadedMotoServer

    from devtools.fakes.connections import ConnectionsEndpoint
    from devtools.fakes.studio_recorder import StudioRecorder
    from devtools.local.stack import free_port
    from devtools.samples import sample
    from devtools.template import create_queue, create_table, load_template

    arch = "x86_64" if platform.machine().lower() in ("x86_64", "amd64") else "arm64"
    build = tmp_path / "build"
    sam(
        "build",
        "--build-dir",
        str(build),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--parameter-overrides",
        f"Architecture={arch}",
        env={
            "LAYER_ARCH": "x86_64" if arch == "x86_64" else "aarch64",
            "LAYER_PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
            "PYC_PYTHON": sys.executable,
        },
    )
    # What Lambda will run: no module left to compile on a cold start, in the function or its layers.
    for directory in (build / "CoreLayer", build / "DependenciesLayer", *(build / f for f in SAMPLES)):
        assert missing_bytecode(directory, sys.implementation.cache_tag) == [], directory
    runtime = install_runtime(tmp_path)
    layers = [str(build / "CoreLayer" / "python"), str(build / "DependenciesLayer" / "python")]
    events = json.loads((ROOT / "events" / "env.json").read_text())["Parameters"]

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        with (
            StudioRecorder(username=sample.ACCOUNT_SID, password=sample.AUTH_TOKEN) as studio,
            ConnectionsEndpoint() as connections,
        ):
            aws = {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
            dynamodb = session.client("dynamodb", endpoint_url=aws["AWS_ENDPOINT_URL"])
            create_table(dynamodb, "SessionsTable", sample.TABLE_NAME)
            queue = create_queue(
                session.client("sqs", endpoint_url=aws["AWS_ENDPOINT_URL"]), "DispatchDeadLetterQueue", "dlq"
            )
            dispatch_event = json.loads((ROOT / "events" / "dispatch-stream.json").read_text())
            dynamodb.put_item(TableName=sample.TABLE_NAME, Item=dispatch_event["Records"][0]["dynamodb"]["NewImage"])
            env = {
                "PATH": os.environ.get("PATH", ""),
                **aws,
                **events,
                "STUDIO_BASE_URL": studio.base_url,
                "DEAD_LETTER_QUEUE_URL": queue,
                "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": connections.url,
                "TWILIO_API_BASE_URL": studio.base_url,  # loopback: no customer SMS may leave this machine
                "POWERTOOLS_LOG_LEVEL": "WARNING",
                "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            }
            for logical_id, samples in SAMPLES.items():
                handler = load_template()["Resources"][logical_id]["Properties"]["Handler"]
                paths = [str(build / logical_id), *layers, str(runtime)]
                for sample_event in samples:
                    result = subprocess.run(
                        [
                            sys.executable,
                            "-I",
                            "-S",
                            "-c",
                            RUNNER,
                            json.dumps(paths),
                            handler.rpartition(".")[0],
                            str(ROOT / "events" / sample_event),
                        ],
                        capture_output=True,
                        text=True,
                        env=env,
                        timeout=120,
                        check=False,
                    )
                    assert result.returncode == 0, (logical_id, sample_event, result.stderr[-3000:])
                    answer = json.loads(result.stdout.split("RESULT ", 1)[1])
                    if logical_id == "HandoffDispatchFunction":
                        assert answer == {"batchItemFailures": []}
                    elif logical_id == "HandoffReleaseFunction":
                        assert answer["statusCode"] == 404, answer  # authenticated; nobody is on hold
                    elif logical_id == "HandoffTranscriptFunction":
                        assert answer["statusCode"] == 410, answer  # a genuine link, issued long ago
                    elif logical_id == "HandoffWatchdogFunction":
                        assert answer["handoff"]["overdue"] == 0 and answer["handoff"]["errors"] == 0, answer
                    else:
                        assert answer["statusCode"] == 200, (logical_id, sample_event, answer)
            assert len(studio.created) == 1
            assert any(connections.frames.values())  # the prompt's reply went out through @connections
    finally:
        moto.stop()
