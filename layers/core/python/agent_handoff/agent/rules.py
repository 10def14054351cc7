"""A deterministic, offline agent: the default provider, for local runs, demos and tests.

It answers a few common questions, says honestly when it cannot help (which the policy
counts towards escalation), and words the customer's last message after a handoff from
the tool's real result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .messages import ChatMessage, Completion, ToolSpec

_ANSWERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), answer)
    for pattern, answer in (
        (
            r"\b(hours?|open|close|closing|opening)\b",
            "We're open Monday to Friday, 8am to 6pm, and Saturday 9am to 1pm.",
        ),
        (
            r"\b(order|track\w*|deliver\w*|shipping|package|parcel)\b",
            "You can track an order with the link in your confirmation email. "
            "Orders usually arrive within 3 to 5 business days.",
        ),
        (
            r"\b(password|log\s?in|sign\s?in)\b",
            "You can reset your password from the sign-in page with 'Forgot password'. "
            "The reset link is valid for 30 minutes.",
        ),
        (
            r"\b(price|pricing|cost|plan|plans)\b",
            "Our plans start at $10 a month; every plan includes a 14-day free trial.",
        ),
        (r"\b(thanks|thank\s+you|thx|cheers)\b", "You're welcome! Is there anything else I can help with?"),
        (
            r"^\s*(hi|hello|hey|good\s+(morning|afternoon|evening))\b",
            "Hi! I'm the virtual assistant. How can I help you today?",
        ),
    )
)
FALLBACK = "I'm sorry, I can't help with that yet. Could you tell me a bit more about what you need?"
AFTER_HANDOFF = (
    "Thanks for your patience. I've passed this on to our team, and a person will follow up with you shortly."
)
HANDOFF_FAILED = "I'm sorry, I couldn't reach our team just now. Please try again in a few minutes."


class RulesProvider:
    def complete(
        self, system: str, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], *, deadline: Any = None
    ) -> Completion:
        last = messages[-1] if messages else ChatMessage(role="user")
        if last.role == "tool":
            ok = last.tool_result.get("status") == "handoff_initiated"
            return Completion(text=AFTER_HANDOFF if ok else HANDOFF_FAILED)
        for pattern, answer in _ANSWERS:
            if pattern.search(last.text):
                return Completion(text=answer)
        return Completion(text=FALLBACK, unresolved=True)
