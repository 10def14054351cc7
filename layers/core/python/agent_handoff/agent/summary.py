"""A summary for the human when the model wrote none: built from the conversation's last turns.

The rules agent, a caller pressing 0, a policy trigger and a failed model all hand off without an
LLM summary; the human still learns what the customer asked and what the AI last answered,
without opening the transcript. Deterministic, so the same conversation always reads the same.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..pan_redaction import redact_pans
from ..payload_limits import shorten
from ..storage.records import Turn

CUSTOMER_MESSAGES = 3
QUOTE_MAX = 140
_BLANKS = re.compile(r"\s+")


def conversation_summary(history: Sequence[Turn], latest: str = "", *, channel: str) -> str:
    """`history` oldest first; `latest` what the customer just said, when it is not in `history` yet."""
    who = "caller" if channel == "VOICE" else "customer"
    said = [turn.text for turn in history if turn.role == "user"]
    if latest:
        said.append(latest)
    said = [_quote(text) for text in said if text.strip()][-CUSTOMER_MESSAGES:]
    answer = next((turn for turn in reversed(history) if turn.role == "assistant" and turn.text.strip()), None)
    parts = []
    if said:
        parts.append(_sentence(f"The {who} said" + (", latest last: " if len(said) > 1 else ": ") + " / ".join(said)))
    if answer is not None:
        heard = " (interrupted)" if answer.interrupted else ""
        parts.append(_sentence(f"The AI agent last answered{heard}: {_quote(answer.text)}"))
    elif said:
        parts.append("The AI agent had not answered yet.")
    return " ".join(parts)


def _quote(text: str) -> str:
    # Card numbers out before the cut: a cut inside one leaves digits that no longer pass Luhn.
    return "\u201c" + shorten(redact_pans(_BLANKS.sub(" ", text).strip()), QUOTE_MAX) + "\u201d"


def _sentence(text: str) -> str:
    """A full stop, unless the quotation that ends it already ends with one (or ? ! \u2026)."""
    return text if text[-2:-1] in (".", "?", "!", "\u2026") else text + "."
