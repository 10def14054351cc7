"""Cutting a reply into clauses: each becomes one ConversationRelay `text` frame.

Every frame is an HTTPS call to API Gateway, so tokens are batched; clauses are still small
enough that Twilio starts speaking before the whole reply is posted, and an interrupt can
stop the rest.
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"(?<=[.!?;:])\s+|(?<=,)\s+(?=\S{1,}\s+\S+\s+\S+)")
MIN_CLAUSE_CHARS = 24
MAX_CLAUSE_CHARS = 240


def clauses(text: str) -> list[str]:
    """Split into clauses of a sensible spoken length; joining them gives the text back."""
    pieces = [p for p in _BOUNDARY.split(text.strip()) if p]
    merged: list[str] = []
    for piece in pieces:
        if merged and (len(merged[-1]) < MIN_CLAUSE_CHARS or len(piece) < MIN_CLAUSE_CHARS // 2):
            if len(merged[-1]) + 1 + len(piece) <= MAX_CLAUSE_CHARS:
                merged[-1] = f"{merged[-1]} {piece}"
                continue
        merged.append(piece)
    return merged


def settled_length(text: str) -> int:
    """How much of a growing text ends at a clause boundary: the rest may still change."""
    ends = [m.end() for m in _BOUNDARY.finditer(text)]
    return ends[-1] if ends else 0
