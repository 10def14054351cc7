"""The escalation policy of the design, enforced without the LLM.

The LLM is offered the same triggers through the handoff tool's description; this makes
them hold even when the model does not follow its instructions, or is a rules agent.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_UNRESOLVED_ATTEMPTS = 2


class Escalation(NamedTuple):
    trigger: str
    reason: str


def _words(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


_HUMAN_REQUEST = _words(
    r"\b(speak|talk|chat)\s+(to|with)\s+(a|an|some|the|your)?\s*(real\s+|live\s+)?"
    r"(human|person|someone|somebody|agent|representative|rep|operator|manager|supervisor|people)\b",
    r"\b(real|live|actual)\s+(human|person|agent|people)\b",
    r"\b(human\s+(agent|being|please)|a\s+human|representative|operator)\b",
    r"\b(transfer|connect|escalate|put)\b.{0,30}\b(agent|human|person|someone|representative|manager|supervisor)\b",
    r"^\s*(agent|human|person)\W*(please|now|pls)?\W*$",
)
_BILLING_DISPUTE = _words(
    r"\b(dispute\w*|chargeback|charged\s+(me\s+)?twice|double[-\s]charged|overcharg\w*|wrong(ly)?\s+charged)\b",
    r"\b(unauthori[sz]ed|fraudulent)\s+(charge|transaction|payment|debit)s?\b",
    r"\b(refund|money\s+back)\b",
)
_ACCOUNT_SECURITY = _words(
    r"\b(hacked|compromised|identity\s+theft|fraud\w*|phishing|scam\w*)\b",
    r"\b(stolen)\s+(card|account|identity|password|phone)\b",
    r"\bsomeone\s+(else\s+)?(logged|got|broke)\s+into\b",
    r"\b(unauthori[sz]ed|suspicious)\s+(access|login|log-in|sign-?in|activity)\b",
    r"\baccount\s+(takeover|breach)\b",
)
_FRUSTRATION = _words(
    r"\b(frustrat\w*|angry|furious|annoyed|ridiculous|unacceptable|useless|terrible|awful|horrible|pathetic)\b",
    r"\b(worst|waste\s+of\s+(my\s+)?time|fed\s+up|sick\s+of|not\s+helpful|unhelpful|stupid|hate\s+(this|you|it))\b",
    r"\b(wtf|damn|crap|shit\w*|f+u+c+k\w*|bs)\b",
    r"!{3,}",
)
_UNRESOLVED = _words(
    r"\bstill\s+(not|doesn'?t|does\s+not|isn'?t|can'?t|cannot|broken|having|the\s+same)\b",
    r"\b(didn'?t|did\s+not|doesn'?t|does\s+not|won'?t|will\s+not)\s+(help|work|fix)\b",
    r"\b(not\s+working|same\s+(problem|issue)|not\s+what\s+i\s+(asked|meant|need))\b",
    r"\byou('re|\s+are)\s+not\s+(helping|understanding|listening)\b",
)


def _is_shouting(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    shouted_words = [w for w in re.findall(r"[A-Za-z]{3,}", text) if w.isupper()]
    return len(letters) >= 12 and len(shouted_words) >= 3 and sum(c.isupper() for c in letters) / len(letters) > 0.8


class EscalationPolicy:
    def before_turn(self, text: str, unresolved_attempts: int) -> Escalation | None:
        """A trigger in the customer's own words hands off before the LLM is asked."""
        if _HUMAN_REQUEST.search(text):
            return Escalation("human_requested", "The customer asked to speak with a human agent.")
        if _ACCOUNT_SECURITY.search(text):
            return Escalation("account_security", "Account security concern raised by the customer.")
        if _BILLING_DISPUTE.search(text):
            return Escalation("billing_dispute", "Billing dispute raised by the customer.")
        if _FRUSTRATION.search(text) or _is_shouting(text):
            return Escalation("frustration", "The customer is frustrated or dissatisfied.")
        if self.signals_unresolved(text) and unresolved_attempts + 1 >= MAX_UNRESOLVED_ATTEMPTS:
            return self.unresolved()
        return None

    @staticmethod
    def signals_unresolved(text: str) -> bool:
        return bool(_UNRESOLVED.search(text))

    @staticmethod
    def unresolved() -> Escalation:
        return Escalation(
            "unresolved",
            f"The AI agent could not resolve the issue after {MAX_UNRESOLVED_ATTEMPTS} attempts.",
        )
