"""Turn an API Gateway event into a verified Twilio webhook request.

Twilio signs the URL it was configured with plus every POST parameter, so the URL has to
be rebuilt exactly as Twilio saw it: HTTP API (payload 2.0) and REST API (payload 1.0)
events carry it differently, and behind a custom domain only a configured base URL knows it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

from twilio.request_validator import RequestValidator

from ..errors import WebhookRejected

SIGNATURE_HEADER = "x-twilio-signature"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# Twilio's largest form webhooks (an SMS of 1,600 characters with ten media URLs) stay far
# below this; anything bigger is not Twilio.
MAX_BODY_BYTES = 32 * 1024
MAX_FIELDS = 200


class FormParams(dict[str, str]):
    """Form fields, last value wins for lookups, every value kept for the signature.

    twilio's RequestValidator signs repeated names through `getall`, like Flask's MultiDict.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._all: dict[str, list[str]] = {}
        for name, value in pairs:
            self._all.setdefault(name, []).append(value)
        super().__init__((name, values[-1]) for name, values in self._all.items())

    def getall(self, name: str) -> list[str]:
        return list(self._all[name])

    def is_repeated(self, name: str) -> bool:
        return len(self._all.get(name, ())) > 1


class WebhookRequest(NamedTuple):
    url: str
    params: FormParams
    headers: Mapping[str, str]


def lower_headers(event: Mapping[str, Any]) -> dict[str, str]:
    headers = event.get("headers") or {}
    return {str(k).lower(): str(v) for k, v in headers.items() if v is not None}


def public_url(event: Mapping[str, Any], public_base_url: str | None = None) -> str:
    """The URL Twilio requested, for payload 2.0 (HTTP API) and 1.0 (REST API) events."""
    headers = lower_headers(event)
    is_v2 = event.get("version") == "2.0"
    if is_v2:
        query = event.get("rawQueryString") or ""
    else:
        query = _v1_query(event)
    if public_base_url:
        path = _route_path(event)
    else:
        host = headers.get("host") or (event.get("requestContext") or {}).get("domainName")
        if not host:
            raise WebhookRejected(400, "request has no Host header to rebuild the signed URL from")
        path = event.get("rawPath") if is_v2 else (event.get("requestContext") or {}).get("path") or event.get("path")
        path = path or "/"
        public_base_url = f"https://{host}"
    return public_base_url.rstrip("/") + path + (f"?{query}" if query else "")


def url_beside(event: Mapping[str, Any], path: str, public_base_url: str | None = None) -> str:
    """Another route of the same API as Twilio reaches it, e.g. the `<Connect action>` URL beside /voice."""
    if public_base_url:
        return public_base_url.rstrip("/") + path
    own = public_url(event).split("?", 1)[0]
    route = _route_path(event)
    base = own[: -len(route)] if route != "/" and own.endswith(route) else own.rstrip("/")
    return base + path


def query_params(event: Mapping[str, Any]) -> dict[str, str]:
    """The query string's parameters (covered by the signature, since the signed URL includes them)."""
    if event.get("version") == "2.0":
        return dict(parse_qsl(event.get("rawQueryString") or "", keep_blank_values=True))
    return {k: str(v) for k, v in (event.get("queryStringParameters") or {}).items()}


def _route_path(event: Mapping[str, Any]) -> str:
    """The route's own path, without stage or custom-domain mapping: what follows the base URL."""
    if event.get("version") == "2.0":
        route_key = str(event.get("routeKey") or "")
        _, _, path = route_key.partition(" ")
        if path.startswith("/") and "{" not in path:
            return path
        return event.get("rawPath") or "/"
    return event.get("resource") or event.get("path") or "/"


def _v1_query(event: Mapping[str, Any]) -> str:
    # Payload 1.0 keeps no raw query string; rebuilding it is the best that can be done.
    multi = event.get("multiValueQueryStringParameters") or {}
    if multi:
        return urlencode([(k, v) for k, values in multi.items() for v in values or ()])
    single = event.get("queryStringParameters") or {}
    return urlencode(single)


def read_form(event: Mapping[str, Any], *, max_body_bytes: int = MAX_BODY_BYTES) -> FormParams:
    headers = lower_headers(event)
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        raise WebhookRejected(400, f"expected Content-Type {FORM_CONTENT_TYPE}, got {content_type or 'none'}")
    raw = event.get("body") or ""
    if len(raw) > max_body_bytes * 4 // 3 + 4:
        raise WebhookRejected(413, f"body larger than {max_body_bytes} bytes")
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected(400, "body is not valid base64") from None
    else:
        body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(body) > max_body_bytes:
        raise WebhookRejected(413, f"body larger than {max_body_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected(400, "body is not valid UTF-8") from None
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise WebhookRejected(400, "form field is not valid UTF-8 after percent-decoding") from None
    except ValueError as exc:
        status = 413 if "Max number of fields" in str(exc) else 400
        raise WebhookRejected(status, "body is not a well-formed form") from None
    return FormParams(pairs)


def verified_request(
    event: Mapping[str, Any],
    *,
    auth_token: str,
    public_base_url: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> WebhookRequest:
    """Parse and authenticate a form webhook, or raise WebhookRejected with the status to answer."""
    headers = lower_headers(event)
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        raise WebhookRejected(403, "missing X-Twilio-Signature header")
    params = read_form(event, max_body_bytes=max_body_bytes)
    url = public_url(event, public_base_url)
    if not RequestValidator(auth_token).validate(url, params, signature):
        raise WebhookRejected(403, "X-Twilio-Signature does not match this request")
    return WebhookRequest(url=url, params=params, headers=headers)


def require_fields(params: FormParams, *names: str) -> None:
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise WebhookRejected(400, "missing required field(s): " + ", ".join(missing))
    repeated = [name for name in names if params.is_repeated(name)]
    if repeated:
        raise WebhookRejected(400, "field(s) given more than once: " + ", ".join(repeated))


def require_account(params: FormParams, account_sid: str | None) -> None:
    if account_sid and params.get("AccountSid") != account_sid:
        raise WebhookRejected(403, "AccountSid does not belong to this deployment")
