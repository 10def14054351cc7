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
