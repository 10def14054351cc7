"""Every voice handoff promise kept: a caller who heard the handoff line gets an `end` carrying it.

Faults are injected at the SDK boundary: the @connections client (a wrapper around the real
boto3 client, or the loopback endpoint answering 429/500), DynamoDB on moto. An invocation that
dies (a Lambda timeout, a crash) is an exception no `except Exception` catches, raised from the
SDK call or the model, that escapes the handler as it would end the runtime.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from tac.models.handoff import HandoffPayload as TacHandoffPayload
from tac.models.handoff import PendingHandoffData

from agent_handoff import wiring
from agent_handoff.agent.messages import Completion
from agent_handoff.agent.rules import RulesProvider
from agent_handoff.errors import ProviderError
from agent_handoff.voice.promises import EndPromises
from agent_handoff.voice.protocol import End
from agent_handoff.voice.relay import OVERRAN_REASON, TROUBLE_LINE
from agent_handoff.voice.sender import ApiGatewaySender
from devtools.local.lambdas import LambdaContext
from devtools.phones.voice_caller import VoiceCall
from relay_schema import validate_outbound

ASKED = "The customer asked to speak with a human agent."
RESERVE = 2.0  # functions/voice_relay/app.py's RESERVE_SECONDS, checked below


class InvocationKilled(BaseException):
    """The runtime ending an invocation (timeout, crash): no handler code may catch it."""


class FaultyConnections:
    """The @connections client: the real boto3 one, except for the posts a test armed a fault for."""

    def __init__(self, real, plan: list[tuple[str, BaseException]], attempts: list[str]):
        self._real, self._plan, self._attempts = real, plan, attempts

    def post_to_connection(self, **kwargs):
        kind = json.loads(kwargs["Data"])["type"]
        self._attempts.append(kind)
        for i, (wanted, fault) in enumerate(self._plan):
            if wanted == kind:
                del self._plan[i]
                raise fault
        return self._real.post_to_connection(**kwargs)

    def __getattr__(self, name):
        return getattr(self._real, name)


@dataclass
class Sdk:
    plan: list[tuple[str, BaseException]] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)

    def fail(self, frame_type: str, fault: BaseException) -> None:
        """The next post of a `frame_type` frame raises `fault` from the SDK call."""
        self.plan.append((frame_type, fault))


@pytest.fixture
def sdk(connections, monkeypatch):
    real = wiring.management_client
    faults = Sdk()

    def faulty(endpoint):
        return FaultyConnections(real(endpoint), faults.plan, faults.attempts)

    faulty.cache_clear = real.cache_clear  # wiring.reset() runs at teardown, before monkeypatch undoes this
    monkeypatch.setattr(wiring, "management_client", faulty)
    return faults


class CountingRules(RulesProvider):
    calls = 0

    def complete(self, system, messages, tools, *, deadline=None):
        CountingRules.calls += 1
        return super().complete(system, messages, tools, deadline=deadline)


@pytest.fixture
def llm(monkeypatch):
    CountingRules.calls = 0
    monkeypatch.setattr(wiring, "chat_provider", lambda settings: CountingRules())
    wiring.reset()
    return CountingRules


@pytest.fixture
def call(voice_call, llm, sdk):
    call = voice_call()
    assert call.dial()["statusCode"] == 200 and call.connect() == 200 and call.setup() == []
    return call


@pytest.fixture
def short_lease(monkeypatch, call):
    """A 1 s `end` lease, so a test need not wait out the real one (15 s) after a sender died mid-post."""
    relay = wiring.voice_relay()
    monkeypatch.setattr(relay, "_promises", EndPromises(wiring.call_store(), lease_seconds=1.0))


def record(aws, call: VoiceCall) -> dict:
    return next(item for item in aws.items("CALL#") if item["callSid"] == call.call_sid)


def ends(call: VoiceCall) -> list[dict]:
    return [f for f in call.frames if f["type"] == "end"]


def assert_one_end_with(call: VoiceCall, reason: str) -> None:
    (end,) = ends(call)
    payload = TacHandoffPayload.model_validate_json(PendingHandoffData.model_validate(end).handoff_data)
    assert payload.attributes["reason"] == reason and payload.conversation_id == call.parameters["conversationId"]
    for frame in call.raw_frames:
        validate_outbound(frame)
    assert call.frames[-1]["type"] == "end"


def assert_kept(aws, call: VoiceCall) -> None:
    item = record(aws, call)
    assert item["handoffState"] == "end_sent"
    assert not {"promise", "promiseDue", "endLeaseOwner", "endLeaseUntil"} & set(item)


NEXT_FRAMES = {
    "prompt": lambda call: call.say("hello? are you still there?"),
    "dtmf 0": lambda call: call.press("0"),
    "agent please": lambda call: call.say("agent please"),
    "interrupt": lambda call: call.interrupt("Let me"),
    "info": lambda call: call.send({"type": "info", "name": "roundTripDelayMs", "value": "120"}),
    "dtmf 5": lambda call: call.press("5"),
}


# -- 1. a post that failed is not a gone socket ---------------------------------------------


def throttled() -> ClientError:
    error = {"Code": "LimitExceededException", "Message": "Rate exceeded"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 429}}, "PostToConnection")


@pytest.mark.parametrize("fault", ["429 on every attempt", "500 on every attempt", "read timeout", "throttled"])
@pytest.mark.parametrize("then", ["prompt", "dtmf 0"])
def test_an_end_post_that_failed_is_sent_by_the_next_frame(call, aws, connections, sdk, llm, fault, then):
    if fault.startswith(("429", "500")):
        status = int(fault[:3])  # through the real SDK and its retries, to the loopback endpoint
        connections.on_frame = lambda _, data: status if json.loads(data)["type"] == "end" else True
    else:
        sdk.fail("end", ReadTimeoutError(endpoint_url="https://x") if fault == "read timeout" else throttled())

    goodbye = call.say("I'd like to talk to a real person please")

    assert [f["type"] for f in goodbye] == ["text", "text"] and "stay on the line" in VoiceCall.spoken(goodbye)
    item = record(aws, call)
    assert item["handoffState"] == "pending" and item["promise"] == "voice_end"  # not end_sent: nothing went out
    connections.on_frame = None
    asked = llm.calls

    frames = NEXT_FRAMES[then](call)

    assert [f["type"] for f in frames] == ["end"] and llm.calls == asked
    assert_one_end_with(call, ASKED)
    assert_kept(aws, call)
    assert call.say("hello?") == []  # and then the AI stays silent


def test_a_text_post_that_failed_leaves_the_call_answering(call, sdk):
    sdk.fail("text", throttled())

    assert call.say("What are your opening hours?") == []  # that one clause was lost

    assert "Monday" in VoiceCall.spoken(call.say("What are your opening hours?"))


# -- 2. an invocation that dies between storing the handoff and its end --------------------


@pytest.mark.parametrize("dies_at", ["text", "end"], ids=["before-its-first-post", "posting-the-end"])
@pytest.mark.parametrize("then", list(NEXT_FRAMES))
def test_the_next_frame_sends_the_end_a_dead_turn_owed(call, aws, sdk, llm, short_lease, dies_at, then):
    sdk.fail(dies_at, InvocationKilled())
    with pytest.raises(InvocationKilled):
        call.say("I'd like to talk to a real person please")
    assert ends(call) == [] and record(aws, call)["handoffState"] == "pending"
    asked = llm.calls

    frames = NEXT_FRAMES[then](call)

    assert [f["type"] for f in frames] == ["end"]  # before anything else, and nothing else
    assert llm.calls == asked
    assert_one_end_with(call, ASKED)
    assert_kept(aws, call)


def test_a_dead_senders_lease_runs_out(call, aws, sdk, short_lease):
    sdk.fail("end", InvocationKilled())
    with pytest.raises(InvocationKilled):
        call.press("0")
    assert record(aws, call)["endLeaseOwner"]  # it died holding the lease

    started = time.monotonic()
    frames = call.press("0")

    assert [f["type"] for f in frames] == ["end"] and 0.5 < time.monotonic() - started < 5
    assert_one_end_with(call, "The caller pressed 0 to speak with a person.")


@pytest.mark.parametrize("then", ["dtmf 0", "agent please"])
def test_a_turn_that_died_in_the_model_blocks_nothing(call, aws, monkeypatch, then):
    class Dying(RulesProvider):
        def complete(self, system, messages, tools, *, deadline=None):
            raise InvocationKilled()

    monkeypatch.setattr(wiring.voice_relay()._agent, "_provider", Dying())
    with pytest.raises(InvocationKilled):
        call.say("What are your opening hours?")

    frames = NEXT_FRAMES[then](call)

    assert [f["type"] for f in frames][-1] == "end" and "connect you" in VoiceCall.spoken(frames)
    assert len(ends(call)) == 1


def test_the_action_callback_still_routes_when_the_socket_is_gone(call, aws, connections, sdk):
    sdk.fail("text", InvocationKilled())
    with pytest.raises(InvocationKilled):
        call.say("I want to speak to a person")
    connections.gone.add(call.connection_id)

    assert call.press("0") == []  # the post found the socket gone: the promise passes to the callback
    item = record(aws, call)
    assert item["handoffState"] == "pending" and "promise" not in item
    assert wiring.call_store().overdue_voice_ends(now=int(time.time()) + 3600) == []

    twiml = call.session_ends("failed", error_code="64105")

    assert "HandoffData" in twiml and record(aws, call)["handoffState"] == "routed"


def test_two_senders_at_once_post_one_end(aws, connections):
    """The lease: concurrent frames (or the watchdog) never post the same `end` twice."""
    from agent_handoff.storage.call_store import CallSession

    store = wiring.call_store()
    store.open_call(CallSession(call_sid="CA" + "a" * 32, conversation_id="conv_x"), now=int(time.time()))
    store.claim_binding(binding_id="b", call_sid="CA" + "a" * 32, connection_id="c=", expires_at=2**31, now=1)
    store.bind_connection(
        call_sid="CA" + "a" * 32,
        connection_id="c=",
        binding_id="b",
        session_id="VX1",
        caller="",
        agent_number="",
        account_sid="",
        conversation_id="conv_x",
        endpoint="https://x/live",
        now=1,
    )
    store.store_handoff("CA" + "a" * 32, payload_json='{"conversationId":"conv_x"}', reason="r", due=1)
    posted, release = [], threading.Event()

    class SlowSender:
        gone = False

        def send(self, message):
            release.wait(5)  # the first sender is mid-post while the second arrives
            posted.append(message)
            return True

        def close(self):
            pass

    from agent_handoff.deadline import Deadline

    promises, outcomes = EndPromises(store), []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(
                promises.keep("CA" + "a" * 32, "c=", SlowSender(), deadline=Deadline.after(5))
            )
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(10)

    assert sorted(outcomes) == ["not_owed", "sent"] and len(posted) == 1 and isinstance(posted[0], End)


# -- 3. deadlines from the runtime ------------------------------------------------------------


@dataclass
class Deadlined(LambdaContext):
    """A Lambda context whose invocation ends `seconds` after it was made."""

    seconds: float = 20.0

    def __post_init__(self) -> None:
        self.ends_at = time.monotonic() + self.seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.ends_at - time.monotonic()) * 1000))


def test_the_relay_finishes_inside_api_gateways_integration_timeout():
    from conftest import load_handler
    from devtools.template import resource

    timeout = resource("VoiceRelayFunction")["Properties"]["Timeout"]
    assert load_handler("voice_relay").RESERVE_SECONDS == RESERVE
    # The WebSocket integration gives up at 29 s, a cold start's init (about 1 s) included.
    assert RESERVE < timeout <= 29 - 3


def test_a_model_that_honours_the_deadline_is_apologised_for_and_handed_off(call, aws, monkeypatch):
    class Honours:
        def complete(self, system, messages, tools, *, deadline=None):
            time.sleep(deadline.remaining())
            raise ProviderError("LLM request timed out (deadline)")

    monkeypatch.setattr(wiring.voice_relay()._agent, "_provider", Honours())
    call.context = Deadlined(seconds=RESERVE + 1.0)

    frames = call.say("What are your opening hours?")

    assert time.monotonic() < call.context.ends_at  # answered before the runtime would have ended it
    assert [f["type"] for f in frames][-1] == "end" and VoiceCall.spoken(frames).startswith("I'm sorry")
    assert_one_end_with(call, "The AI agent was unavailable (LLM request timed out (deadline)).")
    assert_kept(aws, call)


def test_a_model_that_ignores_the_deadline_is_cut_off_by_the_fallback(call, aws, monkeypatch, connections):
    finished = threading.Event()

    class Ignores:
        def complete(self, system, messages, tools, *, deadline=None):
            time.sleep(RESERVE + 1.5)  # past the whole invocation
            finished.set()
            return Completion(text="We're open Monday to Friday, nine to five.")

    monkeypatch.setattr(wiring.voice_relay()._agent, "_provider", Ignores())
    call.context = Deadlined(seconds=RESERVE + 0.8)
    deadline_at = call.context.ends_at - RESERVE

    frames = call.say("What are your opening hours?")

    returned = time.monotonic()
    assert returned < call.context.ends_at and returned - deadline_at < RESERVE / 4
    assert [f["type"] for f in frames] == ["text", "end"] and frames[0]["token"] == TROUBLE_LINE
    assert_one_end_with(call, OVERRAN_REASON)
    history_then = record(aws, call)["history"]

    assert finished.wait(5)
    time.sleep(0.3)  # the abandoned turn finishes on its own thread: it must post and store nothing
    assert len(call.frames) == 2 and record(aws, call)["history"] == history_then
    assert_kept(aws, call)


# -- 4. the watchdog's half ---------------------------------------------------------------------


def test_overdue_voice_promises_are_listed_and_resent(call, aws, sdk):
    store = wiring.call_store()
    quiet = VoiceCall(call.functions, call.connections, account_sid=call.account_sid, auth_token=call.auth_token)
    assert quiet.dial()["statusCode"] == 200 and quiet.connect() == 200 and quiet.setup() == []
    quiet.say("What are your opening hours?")  # no handoff: never in the index
    sdk.fail("text", InvocationKilled())
    with pytest.raises(InvocationKilled):
        call.say("I want to speak to a person")
    due = record(aws, call)["promiseDue"]

    assert store.overdue_voice_ends(now=due) == []  # not overdue yet
    (overdue,) = store.overdue_voice_ends(now=due + 1)
    assert overdue.call_sid == call.call_sid and overdue.due == due

    stuck = store.get_call(overdue.call_sid)
    assert stuck.endpoint == "https://wsabc12345.execute-api.us-east-1.amazonaws.com/live"
    assert stuck.connection_id == call.connection_id
    sender = ApiGatewaySender(wiring.management_client(stuck.endpoint), stuck.connection_id)

    assert wiring.voice_relay().resend_pending_end(stuck, sender) == "sent"

    assert_one_end_with(call, ASKED)
    assert_kept(aws, call)
    assert store.overdue_voice_ends(now=due + 1) == []
    assert wiring.voice_relay().resend_pending_end(store.get_call(call.call_sid), sender) == "not_owed"
    assert len(ends(call)) == 1


@pytest.mark.parametrize("how", ["routed", "hung up"])
def test_a_routed_or_closed_call_leaves_the_index(call, aws, sdk, how):
    sdk.fail("end", ReadTimeoutError(endpoint_url="https://x"))
    call.say("I want to speak to a person")
    assert record(aws, call)["promise"] == "voice_end"

    if how == "routed":
        call.session_ends("failed", error_code="64105")
    else:
        call.hang_up()

    assert "promise" not in record(aws, call) and "promiseDue" not in record(aws, call)
    assert wiring.call_store().overdue_voice_ends(now=int(time.time()) + 3600) == []


def test_the_fallback_when_the_store_is_down_still_says_why_and_ends(call, monkeypatch):
    """No frame is left unsent because DynamoDB failed: the end then carries a payload built in memory."""
    from agent_handoff.errors import StoreError

    store = wiring.call_store()

    def broken(*args, **kwargs):
        raise StoreError("DynamoDB update_item failed: ThrottlingException")

    monkeypatch.setattr(store, "finish_turn", broken)
    monkeypatch.setattr(store, "store_handoff", broken)

    frames = call.say("What are your opening hours?")

    assert [f["type"] for f in frames][-2:] == ["text", "end"] and frames[-2] == {
        "type": "text",
        "token": TROUBLE_LINE,
        "last": True,
    }
    assert "technical problem" in frames[-1]["handoffData"]


def test_an_end_still_owed_is_counted_for_the_operator(call, sdk, function_logs, monkeypatch):
    from test_observability import emitted, lines

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "AiHandoffTest")
    sdk.fail("end", throttled())
    function_logs.readouterr()

    call.say("I want to speak to a person")

    records = lines(function_logs.readouterr().out)
    assert ("VoiceEndsNotSent", {"outcome": "failed"}) in [(n, d) for n, d, _ in emitted(records)]


def test_the_watchdog_sends_the_end_a_quiet_caller_is_owed(call, aws, sdk, lambda_context):
    """The turn died after storing the handoff and the caller said nothing more: the scheduled
    watchdog function finds the overdue promise in the index and posts the `end` to the call's socket."""
    from conftest import load_handler

    watchdog_app = load_handler("handoff_watchdog")
    sdk.fail("text", InvocationKilled())
    with pytest.raises(InvocationKilled):
        call.say("I want to speak to a person")
    assert ends(call) == [] and record(aws, call)["promise"] == "voice_end"

    fall_due_now(aws, call)
    summary = watchdog_app.handler({"source": "aws.events"}, lambda_context)

    assert summary["voice_end"]["overdue"] == 1 and summary["voice_end"]["recovered"] == 1
    assert_one_end_with(call, ASKED)
    assert_kept(aws, call)
    again = watchdog_app.handler({"source": "aws.events"}, lambda_context)
    assert again["voice_end"]["overdue"] == 0 and len(ends(call)) == 1


def test_the_watchdog_forgets_a_voice_promise_it_cannot_post(call, aws, sdk, lambda_context):
    """A call whose socket is gone from the record is routed by the action callback: the
    watchdog drops the promise instead of finding it overdue every minute."""
    from conftest import load_handler

    watchdog_app = load_handler("handoff_watchdog")
    sdk.fail("text", InvocationKilled())
    with pytest.raises(InvocationKilled):
        call.say("I want to speak to a person")
    aws.dynamodb.update_item(
        TableName=aws_table(), Key={"pk": {"S": f"CALL#{call.call_sid}"}}, UpdateExpression="REMOVE connectionId"
    )

    fall_due_now(aws, call)
    summary = watchdog_app.handler({"source": "aws.events"}, lambda_context)

    assert summary["voice_end"] == {**summary["voice_end"], "overdue": 1, "settled": 1, "recovered": 0}
    assert ends(call) == []
    assert "promise" not in record(aws, call) and record(aws, call)["handoffState"] == "pending"


def aws_table() -> str:
    from devtools.samples import sample

    return sample.TABLE_NAME


def fall_due_now(aws, call: VoiceCall) -> None:
    """The promise's due time passes (the watchdog reads the real clock)."""
    aws.dynamodb.update_item(
        TableName=aws_table(),
        Key={"pk": {"S": f"CALL#{call.call_sid}"}},
        UpdateExpression="SET promiseDue = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 5)}},
    )
