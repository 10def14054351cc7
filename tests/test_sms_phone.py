"""The SMS phone simulator runs a scripted conversation end to end (what `make demo` shows)."""

from __future__ import annotations

import io
import json

from devtools.phones import sms as sms_phone
from devtools.template import ROOT


def test_scripted_demo_ends_in_exactly_one_studio_execution(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    out = io.StringIO()
    script = (ROOT / "devtools" / "scripts" / "sms-demo.txt").read_text().splitlines(keepends=True)

    executions = sms_phone.converse(script, out, customer="+14155550123", prompt=False, logs=io.StringIO())

    transcript = out.getvalue()
    assert executions == 1
    assert "agent> We're open Monday to Friday" in transcript
    assert "[studio] 201 execution FN" in transcript and "To=+14155550123" in transcript
    # The silence after a handoff is explained, with the way out.
    assert transcript.rstrip().endswith("so the agent stays silent until the hold ends; /release gives it back)")


def test_logs_and_metrics_stay_out_of_the_conversation(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: every turn prints an EMF line
    out, logs = io.StringIO(), io.StringIO()

    sms_phone.converse(["I want a human\n"], out, customer="+14155550124", prompt=False, log_level="INFO", logs=logs)

    assert [line for line in out.getvalue().splitlines() if line.lstrip().startswith("{")] == []
    emitted = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    metrics = {
        m["Name"] for line in emitted if "_aws" in line for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]
    }
    assert {"Turns", "Handoffs", "DispatchOutcomes"} <= metrics


def test_release_gives_the_conversation_back_and_a_new_handoff_starts_a_new_execution():
    out = io.StringIO()
    lines = ["I want a human\n", "hello?\n", "/release\n", "What are your opening hours?\n", "I want a human\n"]

    executions = sms_phone.converse(lines, out, customer="+14155550125", prompt=False, logs=io.StringIO())

    transcript = out.getvalue()
    assert "[release] released: +14155550125's next message goes to the agent again" in transcript
    after_release = transcript.split("[release]", 1)[1]
    assert "agent> We're open Monday to Friday" in after_release
    assert executions == 2  # the released contact's Studio execution ended with the human conversation
    assert after_release.count("[studio] 201 execution") == 1


def test_unknown_commands_list_the_ones_there_are():
    out = io.StringIO()

    sms_phone.converse(["/what\n"], out, customer="+14155550126", prompt=False, logs=io.StringIO())

    assert "commands: /release gives the conversation back to the agent" in out.getvalue()
