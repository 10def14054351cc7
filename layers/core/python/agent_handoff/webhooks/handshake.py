"""The ConversationRelay WebSocket handshake: Twilio signs the wss URL it was given in TwiML.

The URL carries a query string (the socket binding). Whether Twilio signs it with its query
string, as it signs HTTP webhooks, or without it and with the query's values as parameters,
as twilio's own SDKs validate it, is not documented: either reading is accepted, and with no
query string both are the bare URL, exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from .request import SIGNATURE_HEADER, FormParams, lower_headers


def handshake_url(event: Mapping[str, Any], configured_url: str | None = None) -> str:
    """The wss URL as written in the TwiML, without its query: configured (custom domain) or the API's own."""
    if configured_url:
        return configured_url.split("?", 1)[0]
    context = event.get("requestContext") or {}
    return f"wss://{context.get('domainName')}/{context.get('stage')}"


def query_pairs(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The handshake's query parameters, every value of a repeated one, as API Gateway passes them."""
    multi = event.get("multiValueQueryStringParameters") or {}
    if multi:
        return [(str(k), str(v)) for k, values in multi.items() for v in (values or ())]
    return [(str(k), str(v)) for k, v in (event.get("queryStringParameters") or {}).items()]


def handshake_is_signed(event: Mapping[str, Any], auth_token: str, configured_url: str | None = None) -> bool:
    signature = lower_headers(event).get(SIGNATURE_HEADER)
    if not signature:
        return False
    url = handshake_url(event, configured_url)
    pairs = query_pairs(event)
    validator = RequestValidator(auth_token)
    if validator.validate(url, FormParams(pairs), signature):
        return True
    # API Gateway keeps no raw query string; the product writes one parameter, whose encoding
    # urlencode reproduces exactly (a URL-safe token needs no escaping).
    return bool(pairs) and validator.validate(f"{url}?{urlencode(pairs)}", {}, signature)


def binding_of(event: Mapping[str, Any], name: str) -> str | None:
    """The one value of query parameter `name`; None if it is missing, repeated or not alone."""
    pairs = query_pairs(event)
    if len(pairs) != 1 or pairs[0][0] != name:
        return None
    return pairs[0][1]
