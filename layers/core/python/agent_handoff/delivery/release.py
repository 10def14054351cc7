"""Releasing a conversation from its human, so the AI answers again.

Called by the Studio flow or Flex when the human conversation ends. It is authenticated with
a shared token (in the stack's secret): Studio's HTTP widget cannot sign requests the way
Twilio signs webhooks, but it can send basic auth in the URL, and a Twilio Function or Flex
plugin can send a bearer token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ..errors import WebhookRejected
from ..storage.session_store import conversation_key
from ..webhooks.request import MAX_BODY_BYTES, lower_headers

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass(frozen=True)
class ReleaseRequest:
    channel: str
    customer: str
    agent_number: str

    @property
    def conversation_key(self) -> str:
        return conversation_key(self.channel, self.customer, self.agent_number)


def authenticate(event: Mapping[str, Any], token: str | None) -> None:
    if not token:
        raise WebhookRejected(403, "release is not configured: set HANDOFF_RELEASE_TOKEN in the stack's secret")
    header = lower_headers(event).get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    presented = ""
    if scheme.lower() == "bearer":
        presented = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            presented = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            presented = ""
    if not presented or not hmac.compare_digest(presented.encode(), token.encode()):
        raise WebhookRejected(403, "missing or wrong release token (Authorization: Bearer or Basic)")


def parse(event: Mapping[str, Any]) -> ReleaseRequest:
    """The body is JSON or a form: customer (E.164), agentNumber (E.164), optional channel (sms)."""
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise WebhookRejected(400, "body is not valid base64 UTF-8") from None
    if len(raw) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    content_type = lower_headers(event).get("content-type", "").split(";")[0].strip().lower()
    try:
        fields = (
            json.loads(raw) if content_type == "application/json" else dict(parse_qsl(raw, strict_parsing=bool(raw)))
        )
    except ValueError:
        raise WebhookRejected(400, "body is neither JSON nor a form") from None
    if not isinstance(fields, dict):
        raise WebhookRejected(400, "body must be a JSON object or a form")
    customer, agent = str(fields.get("customer", "")), str(fields.get("agentNumber", ""))
    channel = str(fields.get("channel", "sms")).lower()
    problems = [name for name, value in (("customer", customer), ("agentNumber", agent)) if not E164.match(value)]
    if problems:
        raise WebhookRejected(400, "field(s) must be E.164 phone numbers: " + ", ".join(problems))
    if channel != "sms":
        raise WebhookRejected(400, "channel must be sms (a voice handoff ends with its call)")
    return ReleaseRequest(channel=channel, customer=customer, agent_number=agent)
