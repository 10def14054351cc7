"""Card numbers (PANs) out of free text: Twilio's guidance is that handoffData carries no PCI data.

A PAN here is 13 to 19 digits that pass the Luhn check, written in one piece or in groups split
by spaces, dashes of any kind, dots or slashes ("4111 1111 1111 1111", "4111-1111-1111-1111",
"4111\u20131111\u20131111\u20131111" as a model writes it, "4111.1111.1111.1111"). Every run of digit groups is
checked span by span, so a card number next to other numbers ("order 12, card 4111 ...") is
still found; numbers that fail Luhn (order numbers) and short ones (phone numbers) are kept.
Digits written straight against other digits are one number, as a reader would see them.

Hand-written: a dozen lines of Luhn and grouping, where a DLP library would be a heavy import.
"""

from __future__ import annotations

import re

MASK = "[card number removed]"
MIN_DIGITS = 13
MAX_DIGITS = 19

_GROUP = re.compile(r"\d+")
# What may separate the groups of one number, as people and LLMs write cards: spaces (any, NBSP too),
# hyphen-minus, the Unicode hyphens and dashes (U+2010-U+2015), the minus sign, dots and slashes.
_SEPARATOR = re.compile(r"[\s\-\u2010-\u2015\u2212./]{1,3}")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def redact_pans(text: str) -> str:
    """`text` with every Luhn-valid 13-19 digit number (grouped or not) replaced by MASK."""
    spans = _pan_spans(text)
    if not spans:
        return text
    pieces, cursor = [], 0
    for start, end in spans:
        pieces.append(text[cursor:start])
        pieces.append(MASK)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _pan_spans(text: str) -> list[tuple[int, int]]:
    """Merged (start, end) spans of card numbers, left to right."""
    found: list[tuple[int, int]] = []
    for run in _runs(text):
        for first in range(len(run)):
            digits = ""
            for last in range(first, len(run)):
                digits += run[last].group()
                if len(digits) > MAX_DIGITS:
                    break
                if len(digits) >= MIN_DIGITS and luhn_valid(digits):
                    found.append((run[first].start(), run[last].end()))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _runs(text: str) -> list[list[re.Match[str]]]:
    """Digit groups, gathered into runs whose neighbours are separated only by _SEPARATOR."""
    runs: list[list[re.Match[str]]] = []
    previous: re.Match[str] | None = None
    for group in _GROUP.finditer(text):
        if previous is not None and _SEPARATOR.fullmatch(text, previous.end(), group.start()):
            runs[-1].append(group)
        else:
            runs.append([group])
        previous = group
    return runs
