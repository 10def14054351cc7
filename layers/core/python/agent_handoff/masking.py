"""Masking for logs: phone numbers and message bodies never appear in clear."""

from __future__ import annotations

import re

_PHONE = re.compile(r"\+?\d[\d\-\s().]{6,}\d")


def mask_phone(value: str | None) -> str:
    """Keep the country prefix and last two digits, enough to tell callers apart in a log."""
    if not value:
        return ""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 6:
        return "*" * len(value)
    prefix = "+" if value.startswith("+") else ""
    return f"{prefix}{digits[:2]}{'*' * (len(digits) - 4)}{digits[-2:]}"


def mask_text(value: str | None) -> str:
    """A message body reduced to its length."""
    return f"<{len(value or '')} chars>"


def mask_phones_in(text: str) -> str:
    """Mask every phone-number-like run inside free text (error messages, URLs)."""
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


# A phone number as people write one: digits in groups split by spaces, dashes, dots or brackets.
_WRITTEN_NUMBER = re.compile(r"\+?\(?\d(?:[\s().\-\u2010-\u2015]{0,3}\d)+")
_GROUP = re.compile(r"\d+")


def mask_number_in(text: str, number: str) -> str:
    """`text` with `number` (E.164) masked wherever it is written, in any common format: with or without
    its country code, spaced, dashed, dotted or bracketed, nationally with a trunk 0, or after 00; also
    when other digits follow it ("call 415 555 0123 2 times")."""
    own = re.sub(r"\D", "", number or "")
    if len(own) < 7:
        return text
    shown = mask_phone(number)

    def masked(match: re.Match[str]) -> str:
        run = match.group(0)
        groups = list(_GROUP.finditer(run))
        pieces, cursor, first = [], 0, 0
        while first < len(groups):
            last = _own_number_ends(groups, first, own)
            if last is None:
                first += 1
                continue
            start = 0 if first == 0 else groups[first].start()  # a leading + or ( is part of it
            pieces += [run[cursor:start], shown]
            cursor, first = groups[last].end(), last + 1
        return "".join(pieces) + run[cursor:]

    return _WRITTEN_NUMBER.sub(masked, text)


def _own_number_ends(groups: list[re.Match[str]], first: int, own: str) -> int | None:
    """The last group of `own` written from group `first` on, or None."""
    digits = ""
    for last in range(first, len(groups)):
        digits += groups[last].group()
        national = digits[2:] if digits.startswith("00") else digits[1:] if digits.startswith("0") else digits
        # The country code (one to three digits) may be left out; the rest must be all there.
        if len(national) >= 7 and own.endswith(national) and len(own) - len(national) <= 3:
            return last
        if len(digits) > len(own) + 2:
            return None
    return None
