"""Hostile and malformed input at every entry point: a clear refusal, nothing changed, nothing leaked.

Each HTTP entry point gets the same battery (built from a valid, signed request by breaking
one thing at a time); the WebSocket handshake and the frames get their own.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from agent_handoff.signing import Signer, derive_key, signing_key
from agent_handoff.voice.binding import PURPOSE as BINDING_PURPOSE
from agent_handoff.voice.binding import TTL_SECONDS
from agent_handoff.voice.protocol import ProtocolError, parse_inbound
from agent_handoff.webhooks.handshake import handshake_is_signed
from conftest import load_handler
from devtools.samples import sample
from devtools.samples.events import (
    DEFAULT_HOST,
    action_params,
    call_params,
    http_api_event,
    sms_params,
    ws_connect_event,
    ws_message_event,
)

TOKEN = sample.AUTH_TOKEN


def _resign(event, params, url):
    event["headers"]["x-twilio-signature"] = RequestValidator(TOKEN).compute_signature(url, params)
    return event


def battery(path: str, params: dict[str, str], required: tuple[str, ...]) -> dict[str, tuple]:
    """About 35 broken variants of one valid request: name -> (event factory, allowed statuses)."""
    url = f"https://{DEFAULT_HOST}{path}"

    def signed(p=params, **kw):
        return http_api_event(path, p, auth_token=TOKEN, **kw)

    def body_of(event):
        return base64.b64decode(event["body"]).decode()

    def with_body(event, body):
        event["body"] = base64.b64encode(body.encode()).decode()
        return event

    cases: dict[str, tuple] = {
        "no signature": (lambda: http_api_event(path, params, auth_token=None), {403}),
        "empty signature": (lambda: http_api_event(path, params, auth_token=None, signature=""), {403}),
        "garbage signature": (lambda: http_api_event(path, params, auth_token=None, signature="%%%"), {403}),
        "short signature": (lambda: http_api_event(path, params, auth_token=None, signature="AAAA"), {403}),
        "another token": (lambda: http_api_event(path, params, auth_token="x" * 32), {403}),
        "signed for another host": (
            lambda: {**signed(), "headers": {**signed()["headers"], "host": "evil.test"}},
            {403},
        ),
        "signed for another path": (lambda: {**signed(), "rawPath": path + "x"}, {403}),
        "signed over http": (lambda: _resign(signed(), params, url.replace("https", "http")), {403}),
        "query added": (lambda: {**signed(), "rawQueryString": "x=1"}, {403}),
        "parameter added": (lambda: with_body(signed(), body_of(signed()) + "&Extra=1"), {403}),
        "parameter removed": (lambda: with_body(signed(), "&".join(body_of(signed()).split("&")[1:])), {403}),
        "value repeated differently": (lambda: with_body(signed(), body_of(signed()) + f"&{required[0]}=other"), {403}),
        "another account": (lambda: signed({**params, "AccountSid": "AC" + "9" * 32}), {403}),
        "account missing": (lambda: signed({k: v for k, v in params.items() if k != "AccountSid"}), {403}),
        "json content type": (lambda: signed(content_type="application/json"), {400}),
        "text content type": (lambda: signed(content_type="text/plain"), {400}),
        "multipart": (lambda: signed(content_type="multipart/form-data; boundary=x"), {400}),
        "no content type": (lambda: signed(content_type=""), {400}),
        "json body": (lambda: signed(content_type="application/json", body=json.dumps(params)), {400}),
        "not base64": (lambda: {**signed(), "body": "@@not base64@@"}, {400}),
        "invalid utf-8": (lambda: signed(body=b"Body=\xff\xfe"), {400}),
        "invalid utf-8 escaped": (lambda: signed(body="Body=%ff%fe"), {400}),
        "not a form": (lambda: signed(body="hello there"), {400}),
        "oversized body": (lambda: signed(body="Body=" + "a" * 40_000), {413}),
        "oversized field": (lambda: signed({**params, "Body": "a" * 40_000}), {413}),
        "too many fields": (lambda: signed(body="&".join(f"f{i}=1" for i in range(300))), {413}),
        "empty body": (lambda: signed({}), {403}),
    }
    for name in required:
        cases[f"{name} missing"] = (lambda n=name: signed({k: v for k, v in params.items() if k != n}), {400})
        cases[f"{name} empty"] = (lambda n=name: signed({**params, n: ""}), {400})
        cases[f"{name} repeated"] = (lambda n=name: signed([*params.items(), (n, params[n] + "x")]), {400})
        cases[f"{name} replayed with another value"] = (
            lambda n=name: _replay(signed(), path, {**params, n: params[n] + "0"}),
            {403},
        )
    return cases


def _replay(original, path, other_params):
    """The signature of one request on another request's parameters."""
    replayed = http_api_event(path, other_params, auth_token=None)
    replayed["headers"]["x-twilio-signature"] = original["headers"]["x-twilio-signature"]
    return replayed


SMS = sms_params(account_sid=sample.ACCOUNT_SID, body="I want a human")
CALL = call_params(
    account_sid=sample.ACCOUNT_SID, call_sid="CA" + "1" * 32, caller="+14155550100", agent=sample.AGENT_NUMBER
)
ACTION = action_params(
    account_sid=sample.ACCOUNT_SID,
    call_sid="CA" + "1" * 32,
    caller="+14155550100",
    agent=sample.AGENT_NUMBER,
    session_status="ended",
    handoff_data='{"conversationId": "c"}',
)
ENTRY_POINTS = {
    "/sms": ("inbound_sms", battery("/sms", SMS, ("MessageSid", "From", "To"))),
    "/voice": (
        "incoming_call",
        {
            **battery("/voice", CALL, ("CallSid", "From", "To")),
            "bad FlowSid": (lambda: http_api_event("/voice", CALL, auth_token=TOKEN, query="FlowSid=FW1"), {400}),
        },
    ),
    "/voice/action": ("voice_action", battery("/voice/action", ACTION, ("CallSid", "SessionStatus"))),
}


def test_every_http_entry_point_gets_at_least_30_cases():
    for _, cases in ENTRY_POINTS.values():
        assert len(cases) >= 30


@pytest.mark.parametrize(
    ("path", "name"), [(path, name) for path, (_, cases) in ENTRY_POINTS.items() for name in cases]
)
def test_http_entry_points_refuse_and_change_nothing(aws, lambda_context, connections, path, name):
    function, cases = ENTRY_POINTS[path]
    make, allowed = cases[name]
    before = aws.items()

    response = load_handler(function).handler(make(), lambda_context)

    assert response["statusCode"] in allowed, response
    assert response["body"].strip() and "Traceback" not in response["body"]
    assert TOKEN not in response["body"] and sample.RELEASE_TOKEN not in response["body"]
    assert aws.items() == before


# -- the WebSocket handshake ---------------------------------------------------------------

WSS = "wss://wsabc12345.execute-api.us-east-1.amazonaws.com/live"


def _sig(url, params=None, token=TOKEN):
    return RequestValidator(token).compute_signature(url, params or {})


HANDSHAKES = {
    "no signature": lambda: ws_connect_event("c1=", auth_token=None),
    "empty": lambda: ws_connect_event("c1=", auth_token=None, signature=""),
    "garbage": lambda: ws_connect_event("c1=", auth_token=None, signature="%%%"),
    "another token": lambda: ws_connect_event("c1=", auth_token="y" * 32),
    "https url": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS.replace("wss", "https"))),
    "ws url": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS.replace("wss", "ws"))),
    "other stage": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS.replace("/live", "/dev"))),
    "no stage": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS.replace("/live", ""))),
    "trailing slash": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS + "/")),
    "other domain": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig("wss://evil.test/live")),
    "with query": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS + "?a=b")),
    "with params": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS, {"a": "b"})),
    "port 443": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS.replace(".com", ".com:443"))),
    "upper host": lambda: ws_connect_event("c1=", auth_token=None, signature=_sig(WSS.upper())),
    "unsigned query added": lambda: {**ws_connect_event("c1=", auth_token=TOKEN), "queryStringParameters": {"x": "1"}},
    "no headers": lambda: {**ws_connect_event("c1=", auth_token=TOKEN), "headers": None},
    "sha256 of url": lambda: ws_connect_event(
        "c1=", auth_token=None, signature=base64.b64encode(WSS.encode()).decode()
    ),
    "signed by the http token": lambda: ws_connect_event(
        "c1=", auth_token=None, signature=_sig(WSS, token=sample.RELEASE_TOKEN)
    ),
    **{
        f"random {i}": (
            lambda i=i: ws_connect_event("c1=", auth_token=None, signature=base64.b64encode(bytes([i]) * 20).decode())
        )
        for i in range(12)
    },
}


def test_handshake_battery_has_at_least_30_cases():
    assert len(HANDSHAKES) >= 30


def _with_a_valid_binding(event):
    """The same (badly signed) handshake carrying a valid binding: only its signature is wrong."""
    binding = _binding()
    event["queryStringParameters"] = {**(event.get("queryStringParameters") or {}), "binding": binding}
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in event["queryStringParameters"].items()}
    return event


@pytest.mark.parametrize("name", HANDSHAKES)
def test_bad_handshakes_are_refused(aws, lambda_context, connections, name):
    before = aws.items()
    event = _with_a_valid_binding(HANDSHAKES[name]())
    assert load_handler("voice_relay").handler(event, lambda_context) == {"statusCode": 403}
    assert aws.items() == before


# -- the socket binding: a handshake Twilio signed, whose binding is forged or mangled ------

BOUND_CALL = "CA" + "4" * 32


def _binding(call_sid=BOUND_CALL, *, expires_in=TTL_SECONDS - 30, purpose=BINDING_PURPOSE, key=None, nonce=None):
    signer = Signer(key or signing_key(None, TOKEN))
    return signer.sign(purpose, call_sid, expires_at=int(time.time()) + expires_in, nonce=nonce)


def _flip(token: str, index: int) -> str:
    """One character changed, staying inside the token's alphabet."""
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


def _signed(pairs, connection_id="c1="):
    """$connect whose wss URL, query included, Twilio signed: only the binding can be wrong."""
    query = urlencode(pairs)
    return ws_connect_event(connection_id, auth_token=TOKEN, signed_url=f"{WSS}?{query}" if query else WSS)


def _bound(value_of):
    return lambda relay, context: _signed([("binding", value_of(_binding()))])


def _replayed(relay, context):
    """A valid binding another connection presented first."""
    token = _binding()
    assert relay.handler(_signed([("binding", token)], connection_id="owner="), context) == {"statusCode": 200}
    return _signed([("binding", token)])


def _fields(token):
    return token.split(".")


BINDINGS = {
    "missing": lambda relay, context: _signed([]),
    "empty": _bound(lambda t: ""),
    "truncated by one": _bound(lambda t: t[:-1]),
    "truncated to its version": _bound(lambda t: t[:3]),
    "mac bit-flipped": _bound(lambda t: _flip(t, len(t) - 2)),
    "mac's first character changed": _bound(lambda t: _flip(t, len(t) - 43)),
    "for another call, same mac": _bound(lambda t: t.replace(BOUND_CALL, "CA" + "5" * 32)),
    "expiry moved": _bound(lambda t: ".".join([*_fields(t)[:2], str(int(_fields(t)[2]) + 1), *_fields(t)[3:]])),
    "nonce changed": _bound(lambda t: ".".join([*_fields(t)[:3], "x" * 22, _fields(t)[4]])),
    "signed for another purpose": _bound(lambda t: _binding(purpose="transcript-link")),
    "signed with another key": _bound(lambda t: _binding(key=derive_key("another signing key " * 2))),
    "signed with the auth token itself": _bound(lambda t: _binding(key=TOKEN.encode())),
    "signed for another account": _bound(lambda t: _binding(key=signing_key(None, "z" * 32))),
    "expired a second ago": _bound(lambda t: _binding(expires_in=-1)),
    "expired a day ago": _bound(lambda t: _binding(expires_in=-86_400)),
    "dated beyond the longest lifetime": _bound(lambda t: _binding(expires_in=TTL_SECONDS + 3600)),
    "dated years ahead": _bound(lambda t: _binding(expires_in=10**8)),
    "version v2": _bound(lambda t: "v2" + t[2:]),
    "no version": _bound(lambda t: t[3:]),
    "base64 padding added": _bound(lambda t: t + "="),
    "standard base64 alphabet": _bound(lambda t: t[:-1] + "+"),
    "percent-encoded dots": _bound(lambda t: t.replace(".", "%2E")),
    "unicode lookalike": _bound(lambda t: "\u0475" + t[1:]),
    "whitespace around": _bound(lambda t: f" {t} "),
    "newline appended": _bound(lambda t: t + "\n"),
    "nul appended": _bound(lambda t: t + "\x00"),
    "huge": _bound(lambda t: t + "A" * 20_000),
    "lowercased": _bound(lambda t: t.lower()),
    "fields swapped": _bound(lambda t: ".".join([*_fields(t)[:2], _fields(t)[3], _fields(t)[2], _fields(t)[4]])),
    "a JWT instead": _bound(lambda t: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQTQ0In0.c2lnbmF0dXJlc2lnbmF0dXJl"),
    "repeated": lambda relay, context: _signed([("binding", _binding())] * 2),
    "repeated, garbage first": lambda relay, context: _signed([("binding", "garbage"), ("binding", _binding())]),
    "beside another parameter": lambda relay, context: _signed([("binding", _binding()), ("x", "1")]),
    "under another name": lambda relay, context: _signed([("Binding", _binding())]),
    "replayed": _replayed,
}


def test_binding_battery_has_at_least_30_cases():
    assert len(BINDINGS) >= 30


def test_the_binding_battery_starts_from_a_handshake_that_works(aws, lambda_context, connections):
    event = _signed([("binding", _binding())])
    assert load_handler("voice_relay").handler(event, lambda_context) == {"statusCode": 200}


@pytest.mark.parametrize("name", BINDINGS)
def test_forged_or_mangled_bindings_are_refused_at_connect(aws, lambda_context, connections, name):
    relay = load_handler("voice_relay")
    event = BINDINGS[name](relay, lambda_context)
    assert handshake_is_signed(event, TOKEN, WSS)  # Twilio signed it: the binding alone is refused
    before = aws.items()

    assert relay.handler(event, lambda_context) == {"statusCode": 403}

    assert aws.items() == before


def _setup_frame(binding, call_sid=BOUND_CALL, account=None):
    parameters = (
        {"conversationId": "conv_live"} if binding is _ABSENT else {"conversationId": "conv_live", "binding": binding}
    )
    return json.dumps(
        {
            "type": "setup",
            "sessionId": "VX" + "6" * 32,
            "callSid": call_sid,
            "accountSid": account or sample.ACCOUNT_SID,
            "from": "+14155550100",
            "to": sample.AGENT_NUMBER,
            "customParameters": parameters,
        }
    )


_ABSENT = object()
SETUPS = {
    "no binding": lambda presented, owner: _setup_frame(_ABSENT),
    "empty binding": lambda presented, owner: _setup_frame(""),
    "binding a number": lambda presented, owner: _setup_frame(12345),
    "binding an object": lambda presented, owner: _setup_frame({"binding": presented}),
    "another valid binding for the call": lambda presented, owner: _setup_frame(_binding()),
    "the owner's binding": lambda presented, owner: _setup_frame(owner),
    "the presented binding truncated": lambda presented, owner: _setup_frame(presented[:-1]),
    "the presented binding altered": lambda presented, owner: _setup_frame(_flip(presented, len(presented) - 2)),
    "naming another call": lambda presented, owner: _setup_frame(presented, call_sid="CA" + "5" * 32),
    "from another account": lambda presented, owner: _setup_frame(presented, account="AC" + "9" * 32),
}


@pytest.mark.parametrize("name", SETUPS)
def test_a_setup_that_does_not_repeat_its_handshakes_binding_is_refused(aws, lambda_context, connections, name):
    """A live call on its own socket; a second socket got in with a binding of the call (a replay
    race) and sends a mangled setup: refused, socket closed, the call left where it was."""
    relay = load_handler("voice_relay")
    owner, presented = _binding(), _binding()
    assert relay.handler(_signed([("binding", owner)], connection_id="owner="), lambda_context)["statusCode"] == 200
    relay.handler(ws_message_event("owner=", _setup_frame(owner)), lambda_context)
    assert relay.handler(_signed([("binding", presented)]), lambda_context)["statusCode"] == 200
    before = aws.items()

    response = relay.handler(ws_message_event("c1=", SETUPS[name](presented, owner)), lambda_context)
    relay.handler(
        ws_message_event("c1=", json.dumps({"type": "prompt", "voicePrompt": "hi", "last": True})), lambda_context
    )

    assert response == {"statusCode": 200}
    assert aws.items() == before
    assert connections.frames == {} and connections.deleted == ["c1="]
    assert next(i for i in aws.items("CALL#"))["connectionId"] == "owner="


def test_binding_batteries_together_have_at_least_30_bindings_and_setups():
    assert len(BINDINGS) + len(SETUPS) >= 40


# -- frames --------------------------------------------------------------------------------

CALL_SID, ACCOUNT = "CA" + "2" * 32, sample.ACCOUNT_SID
SETUP = {"type": "setup", "sessionId": "VX1", "callSid": CALL_SID, "accountSid": ACCOUNT, "from": "+1", "to": "+2"}
FRAMES = {
    "empty": "",
    "whitespace": "   ",
    "not json": "hello",
    "json array": "[]",
    "json number": "42",
    "json string": '"prompt"',
    "json null": "null",
    "no type": json.dumps({"voicePrompt": "hi"}),
    "type not a string": json.dumps({"type": 5}),
    "unknown type": json.dumps({"type": "hack"}),
    "type with different case": json.dumps({"type": "Prompt", "voicePrompt": "hi"}),
    "prompt without text": json.dumps({"type": "prompt"}),
    "prompt text not a string": json.dumps({"type": "prompt", "voicePrompt": {"a": 1}}),
    "prompt too long": json.dumps({"type": "prompt", "voicePrompt": "a" * 9000}),
    "frame too large": json.dumps({"type": "prompt", "voicePrompt": "a" * 70_000}),
    "prompt before setup": json.dumps({"type": "prompt", "voicePrompt": "hi", "last": True}),
    "dtmf before setup": json.dumps({"type": "dtmf", "digit": "0"}),
    "interrupt before setup": json.dumps({"type": "interrupt", "utteranceUntilInterrupt": "x"}),
    "dtmf two digits": json.dumps({"type": "dtmf", "digit": "00"}),
    "dtmf not a digit": json.dumps({"type": "dtmf", "digit": "x"}),
    "dtmf number": json.dumps({"type": "dtmf", "digit": 0}),
    "interrupt negative": json.dumps({"type": "interrupt", "durationUntilInterruptMs": -5}),
    "interrupt duration text": json.dumps({"type": "interrupt", "durationUntilInterruptMs": "soon"}),
    "setup bad call sid": json.dumps({**SETUP, "callSid": "CA1"}),
    "setup bad account": json.dumps({**SETUP, "accountSid": "nope"}),
    "setup without session": json.dumps({k: v for k, v in SETUP.items() if k != "sessionId"}),
    "setup of another account": json.dumps({**SETUP, "accountSid": "AC" + "9" * 32}),
    "deep nesting": '{"type": "prompt", "voicePrompt": ' + "[" * 5000 + "]" * 5000 + "}",
    "duplicate keys": '{"type": "prompt", "type": "hack"}',
    "nan": '{"type": "interrupt", "durationUntilInterruptMs": NaN}',
    "error frame": json.dumps({"type": "error", "description": "Invalid message received"}),
    "info frame": json.dumps({"type": "info", "name": "x", "value": 1}),
}


def test_frame_battery_has_at_least_30_cases():
    assert len(FRAMES) >= 30


@pytest.mark.parametrize("name", FRAMES)
def test_bad_frames_get_no_frame_and_change_nothing(aws, lambda_context, connections, name):
    before = aws.items()

    response = load_handler("voice_relay").handler(ws_message_event("conn1=", FRAMES[name]), lambda_context)

    assert response == {"statusCode": 200}  # never an error that API Gateway would turn into a bad frame
    assert connections.frames == {}
    assert aws.items() == before


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
            max_leaves=20,
        ).map(json.dumps),
    )
)
def test_frame_parser_answers_anything_with_a_message_or_protocol_error(body):
    try:
        message = parse_inbound(body)
    except ProtocolError:
        return
    assert message.type in {"setup", "prompt", "dtmf", "interrupt", "error", "info"}


# -- the hand-written frame parser against the strict schema of tests/relay_schema.py ------

_KINDS = ("setup", "prompt", "dtmf", "interrupt", "error", "info")
_FIELDS = {
    "setup": ("sessionId", "callSid", "accountSid", "from", "to", "parentCallSid", "direction", "customParameters"),
    "prompt": ("voicePrompt", "lang", "last"),
    "dtmf": ("digit",),
    "interrupt": ("utteranceUntilInterrupt", "durationUntilInterruptMs"),
    "error": ("description",),
    "info": ("name", "value"),
}
_VALID = {
    "setup": {"sessionId": "VX1", "callSid": CALL_SID, "accountSid": ACCOUNT},
    "prompt": {"voicePrompt": "hello", "last": True},
    "dtmf": {"digit": "1"},
    "interrupt": {},
    "error": {},
    "info": {},
}
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "0", "1", "12.5", "-3", "#", "w", "AB", "true", "en-US", "inbound", CALL_SID, ACCOUNT, "VX1"]),
    st.text(min_size=20, max_size=40),
    st.text(min_size=60, max_size=70),
    st.text(max_size=40),
    st.text(min_size=250, max_size=300),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def _frames(draw):
    kind = draw(st.sampled_from(_KINDS))
    # Half start from a valid frame, so that every field's own limits are reached, not only the first failure.
    frame = {"type": kind, **(_VALID[kind] if draw(st.booleans()) else {})}
    names = draw(st.lists(st.sampled_from(_FIELDS[kind]), unique=True, max_size=2))
    return frame | {name: draw(_VALUES) for name in names}


@settings(max_examples=600, deadline=None)
@given(_frames())
def test_frame_parser_accepts_exactly_what_the_schema_accepts(frame):
    from pydantic import ValidationError

    from relay_schema import INBOUND

    try:
        expected = INBOUND.validate_python(frame)
    except ValidationError:
        expected = None
    try:
        parsed = parse_inbound(json.dumps(frame))
    except ProtocolError:
        parsed = None
    assert (parsed is None) == (expected is None), (frame, parsed, expected)
    if parsed is not None:
        for name in ("voice_prompt", "digit", "call_sid", "session_id", "from_", "last", "description"):
            assert getattr(parsed, name, None) == getattr(expected, name, None), name
        if frame["type"] == "interrupt":
            assert parsed.duration_until_interrupt_ms == expected.duration_until_interrupt_ms


def test_every_length_limit_of_the_schema_is_the_parsers_limit():
    from relay_schema import Dtmf as DtmfSchema
    from relay_schema import Error as ErrorSchema
    from relay_schema import Info as InfoSchema
    from relay_schema import Interrupt as InterruptSchema
    from relay_schema import Prompt as PromptSchema
    from relay_schema import Setup as SetupSchema

    checked = 0
    for schema in (SetupSchema, PromptSchema, DtmfSchema, InterruptSchema, ErrorSchema, InfoSchema):
        kind = schema.model_fields["type"].annotation.__args__[0]
        for name, info in schema.model_fields.items():
            wire = info.alias or name
            limit = next((m.max_length for m in info.metadata if getattr(m, "max_length", None)), None)
            if limit is None or any(getattr(m, "pattern", None) for m in info.metadata):
                continue
            base = {"type": kind, **_VALID[kind]}
            assert parse_inbound(json.dumps(base | {wire: "a" * limit}))
            with pytest.raises(ProtocolError, match=wire):
                parse_inbound(json.dumps(base | {wire: "a" * (limit + 1)}))
            checked += 1
    assert checked >= 10
