"""The SMS phone simulator runs a scripted conversation end to end (what `make demo` shows)."""

from __future__ import annotations

import io

from devtools.phones import sms as sms_phone
from devtools.template import ROOT


def test_scripted_demo_ends_in_exactly_one_studio_execution(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    out = io.StringIO()
    script = (ROOT / "devtools" / "scripts" / "sms-demo.txt").read_text().splitlines(keepends=True)

    executions = sms_phone.converse(script, out, customer="+14155550123", prompt=False)

    transcript = out.getvalue()
    assert executions == 1
    assert "agent> We're open Monday to Friday" in transcript
    assert "[studio] 201 execution FN" in transcript and "To=+14155550123" in transcript
    assert transcript.rstrip().endswith("(no reply: a person has this conversation)")
