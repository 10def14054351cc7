"""Each voice socket bound to its call: a replayed handshake or setup cannot read or drive a call.

The caller (devtools/phones/voice_caller.py) presents the binding as Twilio would, read from the
TwiML: in the wss URL's query at `$connect`, and in `setup.customParameters`.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest
from test_observability import emitted, lines

from agent_handoff import wiring
from agent_handoff.signing import InvalidToken, Signer, derive_key, signing_key
from agent_handoff.voice.binding import TTL_SECONDS, RelayBindings
from devtools.phones.voice_caller import VoiceCall
from devtools.samples import sample

ATTACKER = "attackerConn="


@pytest.fixture
def call(voice_call):
    return voice_call()


def answered(call: VoiceCall) -> VoiceCall:
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    return call


def record(aws, call_sid: str) -> dict:
    return next(item for item in aws.items("CALL#") if item["callSid"] == call_sid)


def as_attacker(call: VoiceCall) -> VoiceCall:
    """Someone holding copies of the call's handshake and setup, on a socket of their own."""
    other = VoiceCall(
        call.functions,
        call.connections,
        account_sid=call.account_sid,
        auth_token=call.auth_token,
        caller=call.caller,
        call_sid=call.call_sid,
        connection_id=ATTACKER,
        context=call.context,
    )
    other.relay_url, other.parameters, other.session_id = call.relay_url, dict(call.parameters), call.session_id
    return other


def replay_handshake(call: VoiceCall, connection_id: str = ATTACKER) -> int:
    event = json.loads(json.dumps(call.handshake))
    event["requestContext"]["connectionId"] = connection_id
    return call.functions.voice_relay.handler(event, call.context)["statusCode"]


def test_a_replayed_handshake_and_setup_get_nothing_and_the_caller_keeps_the_call(call, aws, connections):
    answered(call)
    assert "Monday" in VoiceCall.spoken(call.say("What are your opening hours?"))

    assert replay_handshake(call) == 403  # the same signed URL, the same binding: already owned
    attacker = as_attacker(call)
    assert attacker.setup() == []  # API Gateway would not even carry it; the relay refuses it anyway
    assert attacker.say("What did I say before?") == []
    assert attacker.press("0") == []

    assert connections.frames.get(ATTACKER) is None and ATTACKER in connections.deleted
    assert record(aws, call.call_sid)["connectionId"] == call.connection_id  # not re-pointed
    assert "Monday" in VoiceCall.spoken(call.say("When are you open?"))  # answered on its own socket
    assert [f["type"] for f in call.press("0")][-1] == "end"


def test_a_replay_is_a_security_event_with_no_secret_in_it(call, function_logs, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "AiHandoffTest")
    answered(call)
    function_logs.readouterr()

    assert replay_handshake(call) == 403
    as_attacker(call).setup()

    out = function_logs.readouterr().out
    records = lines(out)
    refused = [r for r in records if str(r.get("message", "")).startswith("security:")]
    assert len(refused) == 2 and "replayed" in refused[0]["message"] and "binding_mismatch" in refused[1]["message"]
    assert refused[0]["call_sid"] == call.call_sid
    names = {(name, tuple(sorted(dims.items()))) for name, dims, _ in emitted(records)}
    assert ("RelayBindingsRefused", (("reason", "replayed"), ("stage", "connect"))) in names
    assert ("RelayBindingsRefused", (("reason", "binding_mismatch"), ("stage", "setup"))) in names
    binding = call.parameters["binding"]
    for secret in (binding, binding.rsplit(".", 1)[1], call.handshake["headers"]["X-Twilio-Signature"]):
        assert secret not in out


def test_a_binding_for_call_a_cannot_open_call_b(voice_call, aws, connections):
    a, b = voice_call(), answered(voice_call())
    assert a.dial()["statusCode"] == 200
    assert a.connect() == 200  # A's binding, on its first use: accepted for call A

    forged = dict(
        type="setup",
        sessionId=a.session_id,
        callSid=b.call_sid,
        accountSid=sample.ACCOUNT_SID,
        customParameters={**a.parameters},
    )
    assert a.send(forged) == []
    assert a.send({**forged, "customParameters": {**b.parameters}}) == []  # B's binding was not presented here

    assert a.connection_id in connections.deleted
    assert record(aws, b.call_sid)["connectionId"] == b.connection_id
    assert "Monday" in VoiceCall.spoken(b.say("What are your opening hours?"))


def test_an_expired_binding_is_refused(call, aws):
    call.dial()
    stale = RelayBindings(wiring.signer(), clock=lambda: time.time() - TTL_SECONDS - 5).issue(call.call_sid)
    call.relay_url = call.relay_url.split("?")[0] + f"?binding={stale}"
    before = aws.items()

    assert call.connect() == 403

    assert aws.items() == before


def test_a_binding_is_checked_against_when_api_gateway_received_the_handshake(call, aws):
    call.dial()
    assert call.connect() == 200
    late = json.loads(json.dumps(call.handshake))
    late["requestContext"]["connectionId"] = "late="
    late["requestContext"]["requestTimeEpoch"] = int((time.time() + TTL_SECONDS + 1) * 1000)
    assert call.functions.voice_relay.handler(late, call.context)["statusCode"] == 403


def test_a_reconnect_gets_a_fresh_binding_that_works(call, aws, connections):
    answered(call)
    first = call.parameters["binding"]
    first_handshake = call.handshake

    reconnect = call.drop()
    call.reconnect_from(reconnect)

    assert (
        call.parameters["binding"] != first and ET.fromstring(reconnect).find("Connect/ConversationRelay") is not None
    )
    assert call.connect() == 200 and call.setup() == []
    assert "Monday" in VoiceCall.spoken(call.say("When are you open?"))
    stale = json.loads(json.dumps(first_handshake))
    stale["requestContext"]["connectionId"] = ATTACKER
    assert call.functions.voice_relay.handler(stale, call.context)["statusCode"] == 403


@pytest.mark.parametrize("signed_as", ["url", "params"])
def test_either_reading_of_the_signed_url_is_accepted(voice_call, signed_as):
    """Twilio may sign the wss URL with its query, or without it and with its values as parameters."""
    call = answered(voice_call(signed_as=signed_as))
    assert [f["type"] for f in call.say("I want to speak to a person")][-1] == "end"


def test_a_signature_over_one_binding_does_not_cover_another(call, aws):
    call.dial()
    assert call.connect() == 200
    other = wiring.relay_bindings().issue(call.call_sid)  # valid and unused, but not what was signed
    event = json.loads(json.dumps(call.handshake))
    event["requestContext"]["connectionId"] = ATTACKER
    event["queryStringParameters"] = {"binding": other}
    event["multiValueQueryStringParameters"] = {"binding": [other]}
    assert call.functions.voice_relay.handler(event, call.context)["statusCode"] == 403


# -- the signing module ------------------------------------------------------------------------

KEY = derive_key("k" * 32)


def test_signed_tokens_round_trip_and_carry_their_claims():
    token = Signer(KEY).sign("p", "CA" + "1" * 32, expires_at=2_000_000_000, nonce="n" * 22)
    claims = Signer(KEY).verify(token, "p", now=1_999_999_000, max_lifetime=3600)
    assert claims == ("CA" + "1" * 32, 2_000_000_000, "n" * 22)
    assert token.isascii() and all(c.isalnum() or c in "._-" for c in token)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t.replace(".2000000000.", ".2000000001."), "signature"),
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "signature"),
        (lambda t: t[:-1], "malformed"),
        (lambda t: t + "=", "malformed"),
        (lambda t: "v2" + t[2:], "malformed"),
        (lambda t: t.upper(), "malformed"),
        (lambda t: Signer(derive_key("other" * 8)).sign("p", "CA" + "1" * 32, expires_at=2_000_000_000), "signature"),
        (lambda t: Signer(KEY).sign("q", "CA" + "1" * 32, expires_at=2_000_000_000), "signature"),
        (lambda t: Signer(KEY).sign("p", "CA" + "1" * 32, expires_at=1_999_999_000), "expired"),
        (lambda t: Signer(KEY).sign("p", "CA" + "1" * 32, expires_at=2_000_003_601), "too_far_ahead"),
        (lambda t: None, "malformed"),
        (lambda t: t * 5, "malformed"),
    ],
)
def test_signed_tokens_refuse_every_alteration(mutate, reason):
    token = Signer(KEY).sign("p", "CA" + "1" * 32, expires_at=2_000_000_000, nonce="n" * 22)
    with pytest.raises(InvalidToken) as refused:
        Signer(KEY).verify(mutate(token), "p", now=2_000_000_000 - 1, max_lifetime=3600)
    assert refused.value.reason == reason


def test_without_a_signing_key_the_key_is_derived_from_the_auth_token_never_the_token_itself():
    derived = signing_key(None, sample.AUTH_TOKEN)
    assert derived != sample.AUTH_TOKEN.encode() and derived == derive_key(sample.AUTH_TOKEN)
    assert signing_key("s" * 32, sample.AUTH_TOKEN) != derived


def test_a_configured_signing_key_wins(monkeypatch, aws):
    monkeypatch.setenv("SIGNING_KEY", "configured-signing-key-0123456789abcdef")
    wiring.reset()
    token = wiring.relay_bindings().issue("CA" + "1" * 32)
    with pytest.raises(InvalidToken):
        RelayBindings(Signer(signing_key(None, sample.AUTH_TOKEN))).verify(token)
    assert wiring.relay_bindings().verify(token).subject == "CA" + "1" * 32


def test_the_signing_key_may_live_in_the_stacks_secret(aws, monkeypatch):
    import boto3

    key = "signing-key-from-the-secret-0123456789"
    arn = boto3.client("secretsmanager").create_secret(
        Name="twilio",
        SecretString=json.dumps(
            {"TWILIO_ACCOUNT_SID": sample.ACCOUNT_SID, "TWILIO_AUTH_TOKEN": sample.AUTH_TOKEN, "SIGNING_KEY": key}
        ),
    )["ARN"]
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWILIO_SECRET_ARN", arn)
    wiring.reset()

    token = wiring.relay_bindings().issue("CA" + "1" * 32)

    assert RelayBindings(Signer(signing_key(key, None))).verify(token).subject == "CA" + "1" * 32
    with pytest.raises(InvalidToken):
        RelayBindings(Signer(signing_key(None, sample.AUTH_TOKEN))).verify(token)


def test_a_short_signing_key_is_a_configuration_error_that_names_it(monkeypatch, aws):
    from agent_handoff.errors import ConfigError

    monkeypatch.setenv("SIGNING_KEY", "too-short")
    wiring.reset()
    with pytest.raises(ConfigError, match="SIGNING_KEY: must be at least 32 characters") as refused:
        wiring.signer()
    assert "too-short" not in str(refused.value)
