"""Signature verification and form parsing for both API Gateway payload versions."""

from __future__ import annotations

import base64
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from agent_handoff.errors import WebhookRejected
from agent_handoff.webhooks.request import FormParams, public_url, read_form, verified_request
from devtools.samples.events import http_api_event, rest_api_event

TOKEN = "webhook_test_token_0123456789"
PARAMS = {"MessageSid": "SM" + "a" * 32, "Body": "hello", "From": "+14155550100", "Blank": ""}


def verify(event, **kw):
    return verified_request(event, auth_token=TOKEN, **kw)


@pytest.mark.parametrize("base64_body", [True, False])
def test_http_api_default_stage(base64_body):
    request = verify(http_api_event("/sms", PARAMS, auth_token=TOKEN, base64_body=base64_body))
    assert request.params == PARAMS
    assert request.url == "https://abcdef1234.execute-api.us-east-1.amazonaws.com/sms"


def test_http_api_named_stage_and_query_string():
    event = http_api_event("/sms", PARAMS, auth_token=TOKEN, stage="prod", query="tenant=a%20b&x=1")
    assert verify(event).url.endswith("/prod/sms?tenant=a%20b&x=1")


@pytest.mark.parametrize("base64_body", [False, True])
def test_rest_api_uses_the_stage_path(base64_body):
    event = rest_api_event("/sms", PARAMS, auth_token=TOKEN, stage="Prod", base64_body=base64_body)
    assert event["path"] == "/sms"  # payload 1.0 strips the stage; the signed URL has it
    assert verify(event).url.endswith("/Prod/sms")


def test_custom_domain_needs_the_configured_base_url():
    signed_for = "https://hooks.example.com/twilio/sms"
    event = http_api_event("/sms", PARAMS, auth_token=None, host="hooks.example.com")
    event["headers"]["x-twilio-signature"] = RequestValidator(TOKEN).compute_signature(signed_for, PARAMS)

    with pytest.raises(WebhookRejected) as refused:
        verify(event)
    assert refused.value.status == 403
    assert verify(event, public_base_url="https://hooks.example.com/twilio").url == signed_for


def test_port_in_the_signed_url_is_tolerated():
    event = http_api_event("/sms", PARAMS, auth_token=None)
    url = "https://abcdef1234.execute-api.us-east-1.amazonaws.com:443/sms"
    event["headers"]["x-twilio-signature"] = RequestValidator(TOKEN).compute_signature(url, PARAMS)
    assert verify(event).params["Body"] == "hello"


def test_repeated_parameters_are_signed_with_every_value():
    pairs = [("MediaUrl", "https://a"), ("MediaUrl", "https://b"), ("Body", "x")]
    request = verify(http_api_event("/sms", pairs, auth_token=TOKEN))
    assert request.params.getall("MediaUrl") == ["https://a", "https://b"]
    assert request.params.is_repeated("MediaUrl")


def _replayed():
    event = http_api_event("/sms", PARAMS, auth_token=TOKEN)
    other = http_api_event("/sms", {**PARAMS, "Body": "I need a human"}, auth_token=None)
    other["headers"]["x-twilio-signature"] = event["headers"]["x-twilio-signature"]
    return other


def _extra_param():
    event = http_api_event("/sms", PARAMS, auth_token=TOKEN)
    body = base64.b64decode(event["body"]).decode() + "&Injected=1"
    event["body"] = base64.b64encode(body.encode()).decode()
    return event


REFUSED = {
    "missing signature": (lambda: http_api_event("/sms", PARAMS, auth_token=None), 403),
    "empty signature": (lambda: http_api_event("/sms", PARAMS, auth_token=None, signature=""), 403),
    "garbage signature": (lambda: http_api_event("/sms", PARAMS, auth_token=None, signature="!!"), 403),
    "other token": (lambda: http_api_event("/sms", PARAMS, auth_token="other_token_abcdefghij"), 403),
    "replayed with other parameters": (_replayed, 403),
    "extra parameter": (_extra_param, 403),
    "other path": (lambda: {**http_api_event("/sms", PARAMS, auth_token=TOKEN), "rawPath": "/voice"}, 403),
    "query string added": (lambda: {**http_api_event("/sms", PARAMS, auth_token=TOKEN), "rawQueryString": "a=1"}, 403),
    "no host": (
        lambda: {
            **http_api_event("/sms", PARAMS, auth_token=TOKEN),
            "headers": {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": "x"},
            "requestContext": {},
        },
        400,
    ),
    "json": (lambda: http_api_event("/sms", PARAMS, auth_token=TOKEN, content_type="application/json"), 400),
    "no content type": (lambda: http_api_event("/sms", PARAMS, auth_token=TOKEN, content_type=""), 400),
    "bad base64": (lambda: {**http_api_event("/sms", PARAMS, auth_token=TOKEN), "body": "@@@"}, 400),
    "invalid utf-8": (lambda: http_api_event("/sms", PARAMS, auth_token=TOKEN, body=b"Body=\xc3\x28"), 400),
    "invalid utf-8 escaped": (lambda: http_api_event("/sms", PARAMS, auth_token=TOKEN, body="Body=%C3%28"), 400),
    "not a form": (lambda: http_api_event("/sms", PARAMS, auth_token=TOKEN, body="just text"), 400),
    "too large": (lambda: http_api_event("/sms", PARAMS, auth_token=TOKEN, body="Body=" + "x" * 33_000), 413),
    "too many fields": (
        lambda: http_api_event("/sms", PARAMS, auth_token=TOKEN, body="&".join(f"f{i}=1" for i in range(300))),
        413,
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused(name):
    make, status = REFUSED[name]
    with pytest.raises(WebhookRejected) as refused:
        verify(make())
    assert refused.value.status == status
    assert TOKEN not in refused.value.reason


# -- properties ----------------------------------------------------------------------------

path_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12)
field_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    segments=st.lists(path_segment, min_size=1, max_size=4),
    stage=st.one_of(st.none(), path_segment),
    query=st.lists(st.tuples(path_segment, field_text), max_size=3),
)
def test_rebuilt_url_is_the_one_twilio_signed(segments, stage, query):
    path = "/" + "/".join(segments)
    raw_query = urlencode(query, quote_via=quote)
    event = http_api_event(path, PARAMS, auth_token=TOKEN, stage=stage, query=raw_query)
    expected = f"https://abcdef1234.execute-api.us-east-1.amazonaws.com{'/' + stage if stage else ''}{path}"
    assert public_url(event) == expected + (f"?{raw_query}" if raw_query else "")
    assert verify(event).params == PARAMS


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s), field_text), max_size=12
    )
)
def test_form_round_trips_any_unicode(pairs):
    pairs = [(k, v) for k, v in pairs if all(0xD800 > ord(c) or ord(c) > 0xDFFF for c in k + v)]
    event = http_api_event("/sms", pairs, auth_token=TOKEN)
    params = read_form(event)
    assert params == FormParams(pairs)
    assert verify(event).params == FormParams(pairs)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=400), base64_body=st.booleans())
def test_parser_answers_any_body_with_params_or_a_4xx(raw, base64_body):
    event = http_api_event("/sms", {}, auth_token=TOKEN, body=raw, base64_body=base64_body)
    try:
        read_form(event)
    except WebhookRejected as refused:
        assert refused.status in (400, 413)
