"""Every user-facing command, run as a person runs it (`make ...`, CI=true, no stdin): on each failure
it ends with one clear line and a non-zero status, never a traceback; DEBUG=1 shows the traceback.

`make` runs with VENV pointing at a stand-in whose python is this interpreter and whose setup stamp
is fresh, so the real Makefile recipes run without creating (or touching) any virtualenv.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from make_runs import TRACEBACK, make, stand_in_venv

from devtools.local.stack import free_port
from devtools.template import ROOT

NO_AWS = {
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask the instance metadata service for credentials
}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    return stand_in_venv(tmp_path_factory.mktemp("venv"))


@pytest.fixture
def environ(tmp_path) -> dict[str, str]:
    """A clean shell: no AWS or Twilio settings of the developer's, and a state directory of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TWILIO_", "DEBUG", "MAKE"))}
    env.update(CI="true", LOCAL_STATE_DIR=str(tmp_path / "state"), PYTHONUNBUFFERED="1")
    for name in ("LLM_PROVIDER", "HANDOFF_RELEASE_TOKEN", "PYTHONPATH"):
        env.pop(name, None)
    return env


def last_line(result: subprocess.CompletedProcess) -> str:
    """The command's own last line on stderr (make adds its `make: *** ... Error N` after it)."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("make: ***")]
    assert lines, result
    return lines[-1]


def assert_fails_plainly(result: subprocess.CompletedProcess, status: int, *expected: str) -> str:
    assert TRACEBACK not in result.stdout + result.stderr, result.stderr
    assert f"Error {status}" in result.stderr, result.stderr  # make reports the command's own status
    line = last_line(result)
    for text in expected:
        assert text in line, line
    return line


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# -- make sms, make call, make release without a stack ------------------------------------------


@pytest.mark.parametrize("target", ["sms", "call"])
def test_phones_without_a_stack_say_to_start_make_local(venv, environ, target):
    url = closed_url()

    result = make(venv, environ, target, f"URL={url}")

    assert_fails_plainly(result, 1, f"make {target}: nothing answers at {url}", "`make local`")


def test_phones_go_where_make_local_said_it_listens(venv, environ):
    from devtools.local import state

    url = closed_url()
    os.environ["LOCAL_STATE_DIR"] = environ["LOCAL_STATE_DIR"]
    try:
        state.save_stack(url=url, release_token="t" * 40, agent_number="+14155550199")  # then it died
    finally:
        del os.environ["LOCAL_STATE_DIR"]

    result = make(venv, environ, "sms")  # no URL: the running make local's

    assert_fails_plainly(result, 1, f"nothing answers at {url}", "`make local`")


def test_release_without_a_stack_or_a_customer(venv, environ):
    assert_fails_plainly(make(venv, environ, "release"), 2, "make release: say whose conversation", "CUSTOMER=")
    assert_fails_plainly(make(venv, environ, "release", "CUSTOMER=last"), 1, "no last customer number yet")
    result = make(venv, environ, "release", "CUSTOMER=+14155550100", f"URL={closed_url()}")
    assert_fails_plainly(result, 2, "no release token", "make local")


def test_a_malformed_number_is_refused(venv, environ):
    result = make(venv, environ, "sms", "CUSTOMER=12345", f"URL={closed_url()}")

    assert_fails_plainly(result, 1, "the customer number must be E.164 like +14155550100, 'new' or 'last'")


def test_debug_shows_the_traceback_behind_the_message(venv, environ):
    url = closed_url()

    result = make(venv, environ, "sms", f"URL={url}", "DEBUG=1")

    assert TRACEBACK in result.stderr and "ConnectionRefusedError" in result.stderr
    assert f"nothing answers at {url}" in last_line(result)


@pytest.mark.parametrize(("target", "name"), [("sms", "make sms"), ("call", "make call")])
def test_ctrl_c_stops_a_phone_with_a_line_and_130(venv, environ, target, name):
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-s", target, f"URL={closed_url()}", f"VENV={venv}"],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.PIPE,  # kept open: the phone waits for the customer's lines
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job is
    )
    try:
        assert process.stdout.readline().startswith("You are +1"), "the phone did not start"
        time.sleep(0.5)  # now reading the customer's lines
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0
    assert TRACEBACK not in err and f"{name}: stopped (Ctrl-C)" in err, err


# -- make local -----------------------------------------------------------------------------


def test_make_local_refuses_a_taken_port_and_names_another(venv, environ):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = make(venv, environ, "local", f"PORT={port}")

    # The port it names binds: tests/test_first_hour.py takes that one too.
    assert_fails_plainly(result, 1, f"port {port} is already in use", "make local PORT=")
    assert "Local stack running" not in result.stdout


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"LLM_PROVIDER": "nonsense"}, ["LLM_PROVIDER must be one of rules, openai, bedrock"]),
        ({"TWILIO_PHONE_NUMBER": "abc"}, ["TWILIO_PHONE_NUMBER must be an E.164 number such as +14155550100"]),
        (
            {"LLM_PROVIDER": "nonsense", "HANDOFF_ATTRIBUTES": "[1]"},
            ["LLM_PROVIDER must be one of", "HANDOFF_ATTRIBUTES must be a JSON object"],
        ),
        ({"LLM_PROVIDER": "bedrock", "BEDROCK_MODEL_ID": " "}, ["BEDROCK_MODEL_ID is required and not set"]),
    ],
)
def test_make_local_refuses_bad_settings_before_it_listens(venv, environ, variables, expected):
    result = make(venv, environ, "local", f"PORT={free_port()}", **variables)

    line = assert_fails_plainly(result, 2, "make local: configuration problem: ", *expected)
    assert "run `make local` again" in line
    assert "Local stack running" not in result.stdout and "LLM provider:" not in result.stdout


# -- make configure, make redrive ---------------------------------------------------------------


def test_configure_checks_the_number_before_contacting_aws(venv, environ):
    result = make(venv, environ, "configure", "STACK=ai-handoff", "NUMBER=abc", **NO_AWS)  # and no region

    assert_fails_plainly(result, 2, "make configure: NUMBER (--phone-number) must be E.164", "'abc'")


@pytest.mark.parametrize("target", ["configure", "redrive"])
def test_operator_commands_without_a_region(venv, environ, target):
    result = make(venv, environ, target, "STACK=ai-handoff", "NUMBER=+14155550199", **NO_AWS)

    assert_fails_plainly(result, 2, f"make {target}: no AWS region: set AWS_REGION")


@pytest.mark.parametrize("target", ["configure", "redrive"])
def test_operator_commands_honour_aws_region_and_say_credentials_are_missing(venv, environ, target):
    result = make(venv, environ, target, "STACK=ai-handoff", "NUMBER=+14155550199", AWS_REGION="eu-west-1", **NO_AWS)

    assert_fails_plainly(result, 2, f"make {target}: no AWS credentials", "aws sso login")


@pytest.mark.parametrize(
    ("target", "expected"),
    [("configure", "make configure STACK=<stack name> NUMBER="), ("redrive", "make redrive STACK=<stack name>")],
)
def test_operator_commands_say_which_variables_they_need(venv, environ, target, expected):
    assert_fails_plainly(make(venv, environ, target, **NO_AWS), 2, expected)


# -- make invoke ------------------------------------------------------------------------------


def test_invoke_runs_the_documented_example(venv, environ):
    result = make(venv, environ, "invoke", "FUNCTION=InboundSmsFunction", "EVENT=events/sms-human.json")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("InboundSmsFunction <- events/sms-human.json\n")
    assert '"statusCode": 200' in result.stdout and "A person will follow up" in result.stdout
    # The function's log lines went to stderr, for people; the answer alone is on stdout.
    assert "inbound-sms" in result.stderr and "replied" in result.stderr
    assert '{"level"' not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "status", "expected"),
    [
        ([], 2, "make invoke: give an event: make invoke EVENT="),
        (["EVENT=events/nope.json"], 1, "no event at events/nope.json"),
        (["EVENT=events/sms-human.json", "FUNCTION=NopeFunction"], 1, "no function 'NopeFunction' in template.yaml"),
        (["EVENT=events/env.json"], 1, "cannot tell which function this event is for"),
    ],
)
def test_invoke_mistakes_are_explained(venv, environ, args, status, expected):
    assert_fails_plainly(make(venv, environ, "invoke", *args), status, expected)


# -- make demo, make help ---------------------------------------------------------------------


def test_demo_prints_a_conversation_without_log_or_metric_lines(venv, environ):
    result = make(venv, environ, "demo", POWERTOOLS_METRICS_DISABLED="false")

    assert result.returncode == 0, result.stderr
    assert "agent> We're open Monday to Friday" in result.stdout
    assert "1 Studio execution(s) started in this session." in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.lstrip().startswith("{")]


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE).group(1).split())
    defined = set(re.findall(r"^([a-z][a-z-]*):", text, re.MULTILINE))
    assert phony == defined, "every target is .PHONY and every .PHONY target is defined"
    return defined


def test_make_help_lists_every_target():
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    assert {t for t in makefile_targets() if f"make {t}" not in listed} == set()


def test_the_readme_quick_reference_lists_every_target():
    readme = (ROOT / "README.md").read_text()
    reference = readme.split("## Quick reference", 1)[1].split("\n## ", 1)[0]

    assert {t for t in makefile_targets() if f"make {t}" not in reference} == set()


def test_the_readme_uses_the_project_s_sam():
    readme = (ROOT / "README.md").read_text()

    assert [line for line in readme.splitlines() if re.match(r"\s*sam ", line)] == []


def test_setup_shows_pip_s_progress_to_a_person_and_stays_quiet_in_ci(tmp_path):
    def setup_commands(**env: str) -> str:
        environ = {k: v for k, v in os.environ.items() if k != "CI"} | env
        return subprocess.run(
            ["make", "-n", "setup", f"VENV={tmp_path / 'fresh'}", f"SAM_VENV={tmp_path / 'fresh-sam'}"],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    person, ci = setup_commands(), setup_commands(CI="true")
    assert "pip install" in person and "--quiet" not in person
    assert ci.count("pip install") == person.count("pip install") == ci.count("--quiet") == 3
