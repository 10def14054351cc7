"""The ConversationRelay WebSocket handshake: Twilio signs the wss URL it was given in TwiML."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twilio.request_validator import RequestValidator

from .request import SIGNATURE_HEADER, lower_headers


def handshake_url(event: Mapping[str, Any], configured_url: str | None = None) -> str:
    """The wss URL as written in the TwiML: configured (custom domain) or the API's own."""
    if configured_url:
        return configured_url.split("?", 1)[0]
    context = event.get("requestContext") or {}
    return f"wss://{context.get('domainName')}/{context.get('stage')}"


def handshake_is_signed(event: Mapping[str, Any], auth_token: str, configured_url: str | None = None) -> bool:
    signature = lower_headers(event).get(SIGNATURE_HEADER)
    if not signature:
        return False
    url = handshake_url(event, configured_url)
    query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
    validator = RequestValidator(auth_token)
    # Twilio's own SDK validates without the query string and with its values as parameters;
    # no query string is ever put on the URL here, so both readings agree when there is none.
    return validator.validate(url, query, signature)
