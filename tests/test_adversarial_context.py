"""Adversarial review of issue 15 (summary, signed transcript link, Flex mapping, local desk).

Each test states a promise of the issue or README ("What the human sees", "Security") and shows it broken.
"""

from __future__ import annotations

import json

from agent_handoff import wiring
from conftest import load_handler
from devtools.samples.events import DEFAULT_HOST

sms_app = load_handler("inbound_sms")
dispatch_app = load_handler("handoff_dispatch")
CUSTOMER = "+14155550123"

# -- the voice transcript: every turn in order ----------------------------------------------------

HOURS = "We're open Monday to Friday, nine to five, and on Saturday mornings."
CANADA = "Yes, we deliver to Canada within five working days."


def test_a_barge_in_whose_interrupt_frame_runs_late_puts_the_wrong_answer_in_the_transcript(
    voice_call, monkeypatch, lambda_context
):
    """Issue acceptance: 'the page shows every turn in order', 'including what the caller heard before an
    interrupt'. The caller talks over answer A to ask B: Twilio sends `interrupt` (for A), then `prompt` B.
    API Gateway runs each frame as its own invocation, unordered (TWILIO.md): here the interrupt's invocation
    runs while B's turn is in flight. record_interrupt() attaches the fragment of A to whatever turn is
    current (after user B, and B's finish_turn then fails its turn condition), so the page the human opens
    shows A's full answer as heard, A's fragment as the AI's (interrupted) answer to B, and B's answer, which
    the caller did hear, nowhere; the built summary tells the human the same wrong thing."""
    from test_transcript import Page, open_link

    from agent_handoff.agent.messages import Completion

    monkeypatch.setenv("TRANSCRIPT_BASE_URL", f"https://{DEFAULT_HOST}")
    call = None

    class Answers:
        def complete(self, system, messages, tools, *, deadline=None):
            if any(m.role == "tool" for m in messages):
                return Completion(text="A person will take it from here.")
            asked = messages[-1].text
            if "hours" in asked:
                return Completion(text=HOURS)
            if "Canada" in asked:
                call.interrupt("We're open Monday")  # the late frame of the barge-in on HOURS
                return Completion(text=CANADA)
            from agent_handoff.agent.messages import ToolCall

            return Completion(text="", tool_calls=(ToolCall("c1", "handoff", {"reason": "asked for a person"}),))

    monkeypatch.setattr(wiring, "chat_provider", lambda settings: Answers())
    wiring.reset()
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    call.say("What are your opening hours?")
    heard_b = call.spoken(call.say("Do you deliver to Canada?"))
    call.press("0")
    url = json.loads(call.end_message["handoffData"])["attributes"]["transcriptUrl"]
    turns = Page(open_link(url, lambda_context)["body"]).turns

    expected = [
        ("customer", "What are your opening hours?"),
        ("agent", "We're open Monday"),
        ("customer", "Do you deliver to Canada?"),
        ("agent", CANADA),
    ]
    assert heard_b == CANADA  # the caller heard B's answer...
    assert turns[:4] == expected  # ...but the human's transcript says otherwise
