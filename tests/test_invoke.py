"""`make invoke`: every sample event in events/ served by its function on moto, no Docker."""

from __future__ import annotations

import json

import pytest

from devtools.local import invoke
from devtools.template import ROOT

EVENTS = sorted(p.name for p in (ROOT / "events").glob("*.json") if p.name != "env.json")

# What each sample gets from its function alone, on fresh tables (as a first `sam local invoke` would).
EXPECTED = {
    "sms-message.json": ("InboundSmsFunction", 200, "Monday to Friday"),
    "sms-human.json": ("InboundSmsFunction", 200, "A person will follow up"),
    "dispatch-stream.json": ("HandoffDispatchFunction", None, "studio: 201 FN"),
    "handoff-release.json": ("HandoffReleaseFunction", 404, "no conversation with this customer is with a person"),
    "handoff-transcript.json": ("HandoffTranscriptFunction", 410, "This transcript link has expired"),
    "voice-incoming-call.json": ("IncomingCallFunction", 200, "<ConversationRelay"),
    "relay-connect.json": ("VoiceRelayFunction", 200, ""),
    "relay-setup.json": ("VoiceRelayFunction", 200, ""),
    "relay-prompt.json": ("VoiceRelayFunction", 200, ""),
    "relay-prompt-human.json": ("VoiceRelayFunction", 200, ""),
    "relay-interrupt.json": ("VoiceRelayFunction", 200, ""),
    "relay-dtmf.json": ("VoiceRelayFunction", 200, ""),
    "relay-disconnect.json": ("VoiceRelayFunction", 200, ""),
    "voice-action-handoff.json": ("VoiceActionFunction", 200, "<Redirect"),
    "voice-action-hangup.json": ("VoiceActionFunction", 200, "<Response />"),
    "voice-action-failed.json": ("VoiceActionFunction", 200, "<Response>"),
    "watchdog-schedule.json": ("HandoffWatchdogFunction", "summary", '"voice_end"'),
}


def run(capsys, *events: str, function: str | None = None) -> tuple[str, str]:
    args = [arg for event in events for arg in ("--event", str(ROOT / "events" / event))]
    assert invoke.main([*args, *(["--function", function] if function else [])]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def answers(out: str) -> list[dict]:
    """The JSON each invocation returned, in order."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while (start := out.find("\n{", index)) != -1:
        value, index = decoder.raw_decode(out, start + 1)
        found.append(value)
    return found


def test_every_sample_event_has_an_expectation():
    assert sorted(EXPECTED) == EVENTS


@pytest.mark.parametrize("name", EVENTS)
def test_every_sample_event_runs_alone(capsys, name):
    function, status, expected = EXPECTED[name]

    out, _ = run(capsys, name)

    assert out.startswith(f"{function} <- ")  # found from the event's route or source, as the template wires it
    (answer,) = answers(out)
    if status is None:
        assert answer == {"batchItemFailures": []}
    elif status == "summary":  # a scheduled run answers with what it found, nothing overdue on fresh tables
        assert {report["overdue"] for report in answer.values()} == {0}
    else:
        assert answer["statusCode"] == status, out
    assert expected in out


def test_the_function_can_be_named(capsys):
    out, _ = run(capsys, "sms-human.json", function="InboundSmsFunction")

    assert out.startswith("InboundSmsFunction <- ") and answers(out)[0]["statusCode"] == 200


def test_several_events_follow_one_call_on_the_same_tables(capsys):
    out, err = run(
        capsys,
        "voice-incoming-call.json",
        "relay-connect.json",
        "relay-setup.json",
        "relay-prompt.json",
        "relay-dtmf.json",
        "voice-action-handoff.json",
    )

    frames = [json.loads(line.split(": ", 1)[1]) for line in out.splitlines() if line.startswith("posted to ")]
    assert [f["type"] for f in frames] == ["text", "text", "text", "text", "end"]  # an answer, then 0 pressed
    assert "pressed 0" in json.loads(frames[-1]["handoffData"])["attributes"]["reason"]
    assert "<Redirect" in out
    assert "voice-relay" in err and "frame handled" in err  # the function's logs, for people, on stderr


def test_a_stream_event_s_record_is_in_the_table_before_the_dispatcher_reads_it(capsys):
    out, _ = run(capsys, "dispatch-stream.json")

    (execution,) = [line for line in out.splitlines() if line.startswith("studio: ")]
    assert '"reason":"The customer asked to speak with a human agent."' in execution
