"""API Gateway events signed like Twilio signs its webhooks (twilio's own RequestValidator)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

from twilio.request_validator import RequestValidator

from agent_handoff.webhooks.request import FormParams

DEFAULT_HOST = "abcdef1234.execute-api.us-east-1.amazonaws.com"


def sign(auth_token: str, url: str, params: dict[str, str] | list[tuple[str, str]]) -> str:
    return RequestValidator(auth_token).compute_signature(url, dict(params))


def http_api_event(
    path: str,
    params: dict[str, str] | list[tuple[str, str]],
    *,
    auth_token: str | None,
    host: str = DEFAULT_HOST,
    stage: str | None = None,
    query: str = "",
    base64_body: bool = True,
    signature: str | None = None,
    content_type: str = "application/x-www-form-urlencoded",
    body: str | bytes | None = None,
    at: float | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event. The signature covers the URL Twilio would have used."""
    raw_path = f"/{stage}{path}" if stage else path
    url = f"https://{host}{raw_path}" + (f"?{query}" if query else "")
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    raw_body = urlencode(pairs).encode() if body is None else (body.encode() if isinstance(body, str) else body)
    headers = {"content-type": content_type, "host": host, "user-agent": "TwilioProxy/1.1"}
    if signature is None and auth_token is not None:
        signature = RequestValidator(auth_token).compute_signature(url, FormParams(pairs))
    if signature is not None:
        headers["x-twilio-signature"] = signature
    now = time.time() if at is None else at
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": host.split(".")[0],
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": "POST",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "54.172.60.1",
                "userAgent": "TwilioProxy/1.1",
            },
            "requestId": request_id or uuid.uuid4().hex[:16],
            "routeKey": f"POST {path}",
            "stage": stage or "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(raw_body).decode() if base64_body else raw_body.decode("utf-8", "surrogateescape"),
        "isBase64Encoded": base64_body,
    }


def http_get_event(
    path: str,
    *,
    query: str = "",
    host: str = DEFAULT_HOST,
    accept: str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    at: float | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) GET from a browser: no body, no Twilio signature."""
    now = time.time() if at is None else at
    user_agent = "Mozilla/5.0 (X11; Linux x86_64) Chrome/150.0"
    return {
        "version": "2.0",
        "routeKey": f"GET {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"accept": accept, "host": host, "user-agent": user_agent},
        "queryStringParameters": dict(parse_qsl(query, keep_blank_values=True)) or None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": host.split(".")[0],
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": user_agent,
            },
            "requestId": request_id or uuid.uuid4().hex[:16],
            "routeKey": f"GET {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }


def rest_api_event(
    path: str,
    params: dict[str, str],
    *,
    auth_token: str,
    host: str = DEFAULT_HOST,
    stage: str = "Prod",
    base64_body: bool = False,
) -> dict[str, Any]:
    """A REST API (payload 1.0) event: `path` without the stage, `requestContext.path` with it."""
    url = f"https://{host}/{stage}{path}"
    raw_body = urlencode(params).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Host": host,
        "X-Twilio-Signature": RequestValidator(auth_token).compute_signature(url, params),
    }
    return {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "requestContext": {"path": f"/{stage}{path}", "stage": stage, "domainName": host, "httpMethod": "POST"},
        "body": base64.b64encode(raw_body).decode() if base64_body else raw_body.decode(),
        "isBase64Encoded": base64_body,
    }


def sms_params(
    *, account_sid: str, body: str, customer: str = "+14155550100", agent: str = "+14155550199", sid: str | None = None
) -> dict[str, str]:
    """The form Twilio's Messaging webhook posts (the fields that matter plus a realistic rest)."""
    message_sid = sid or "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "94105",
        "SmsSid": message_sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": agent,
        "MessagingServiceSid": "",
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": customer,
        "ApiVersion": "2010-04-01",
    }


WS_DOMAIN = "wsabc12345.execute-api.us-east-1.amazonaws.com"
WS_STAGE = "live"


def _ws_context(route: str, connection_id: str, domain: str, stage: str, event_type: str) -> dict[str, Any]:
    now = time.time()
    return {
        "routeKey": route,
        "eventType": event_type,
        "extendedRequestId": uuid.uuid4().hex[:16],
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": int(now * 1000),
        "requestTimeEpoch": int(now * 1000),
        "requestId": uuid.uuid4().hex[:16],
        "domainName": domain,
        "connectionId": connection_id,
        "apiId": domain.split(".")[0],
    }


def ws_connect_event(
    connection_id: str,
    *,
    auth_token: str | None,
    domain: str = WS_DOMAIN,
    stage: str = WS_STAGE,
    signed_url: str | None = None,
    signature: str | None = None,
    signed_as: str = "url",
) -> dict[str, Any]:
    """$connect as API Gateway delivers it: the wss URL's query (the socket binding) as
    `queryStringParameters`. Twilio signs the URL from the TwiML; whether with its query
    (`signed_as="url"`, as for HTTP webhooks) or without it and its values as parameters
    (`signed_as="params"`, as twilio's SDKs validate it) is not documented."""
    url = signed_url or f"wss://{domain}/{stage}"
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    headers = {"Host": domain, "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    if signature is None and auth_token is not None:
        validator = RequestValidator(auth_token)
        signature = (
            validator.compute_signature(base, FormParams(pairs))
            if signed_as == "params"
            else validator.compute_signature(url, {})
        )
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": _ws_context("$connect", connection_id, domain, stage, "CONNECT"),
        "isBase64Encoded": False,
    }
    if pairs:
        multi: dict[str, list[str]] = {}
        for name, value in pairs:
            multi.setdefault(name, []).append(value)
        event["queryStringParameters"] = {name: values[-1] for name, values in multi.items()}
        event["multiValueQueryStringParameters"] = multi
    return event


def ws_message_event(
    connection_id: str, body: str, *, domain: str = WS_DOMAIN, stage: str = WS_STAGE
) -> dict[str, Any]:
    return {
        "requestContext": _ws_context("$default", connection_id, domain, stage, "MESSAGE"),
        "body": body,
        "isBase64Encoded": False,
    }


def ws_disconnect_event(connection_id: str, *, domain: str = WS_DOMAIN, stage: str = WS_STAGE) -> dict[str, Any]:
    return {
        "headers": {"Host": domain},
        "requestContext": {
            **_ws_context("$disconnect", connection_id, domain, stage, "DISCONNECT"),
            "disconnectStatusCode": 1005,
            "disconnectReason": "Client-side close frame status not set",
        },
        "isBase64Encoded": False,
    }


def call_params(*, account_sid: str, call_sid: str, caller: str, agent: str) -> dict[str, str]:
    """The form Twilio's Voice webhook posts for an inbound call."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "CallToken": "",
        "Called": agent,
        "Caller": caller,
        "Direction": "inbound",
        "From": caller,
        "FromCountry": "US",
        "To": agent,
        "ToCountry": "US",
    }


def action_params(
    *,
    account_sid: str,
    call_sid: str,
    caller: str,
    agent: str,
    session_status: str,
    handoff_data: str | None = None,
    error_code: str | None = None,
    session_id: str = "",
) -> dict[str, str]:
    """What ConversationRelay posts to the <Connect action> URL when a session ends."""
    params = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "completed" if session_status == "completed" else "in-progress",
        "Direction": "inbound",
        "From": caller,
        "To": agent,
        "SessionId": session_id or "VX" + uuid.uuid4().hex,
        "SessionStatus": session_status,
        "SessionDuration": "42",
    }
    if handoff_data is not None:
        params["HandoffData"] = handoff_data
    if error_code is not None:
        params["ErrorCode"] = error_code
        params["ErrorMessage"] = "WebSocket connection closed"
    return params


def release_event(
    customer: str, agent: str, token: str, *, at: float | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """What a Studio "Make HTTP Request" widget sends to /handoff/release when the human is done."""
    body = json.dumps({"customer": customer, "agentNumber": agent})
    event = http_api_event(
        "/handoff/release",
        {},
        auth_token=None,
        content_type="application/json",
        body=body,
        at=at,
        request_id=request_id,
    )
    event["headers"]["authorization"] = f"Bearer {token}"
    event["headers"]["user-agent"] = "TwilioProxy/1.1"
    return event
