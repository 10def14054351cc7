"""VoiceRelayFunction: the ConversationRelay WebSocket ($connect, $default, $disconnect).

It never raises: a Lambda error makes API Gateway send Twilio an "Internal server error"
frame, which is not a ConversationRelay message (ten of them in a row drop the call).
"""

import time

from agent_handoff import cold_start, snapshot, wiring  # cold_start first: it holds collections for the cold start
from agent_handoff.deadline import Deadline
from agent_handoff.errors import ConfigError
from agent_handoff.observability import config_problem, function_logger, metric, route_core_logs
from agent_handoff.voice.binding import PARAMETER as BINDING_PARAMETER
from agent_handoff.voice.relay import FALLBACK_RESERVE_SECONDS as RESERVE_SECONDS
from agent_handoff.voice.sender import ApiGatewaySender
from agent_handoff.webhooks.handshake import binding_of, handshake_is_signed

logger = function_logger("voice-relay")
# SnapStart or provisioned concurrency: the first frame's imports and SDK models, loaded during init.
snapshot.prepare(
    modules=("agent_handoff.voice.relay", "agent_handoff.storage.call_store", "agent_handoff.agent.turn"),
    services=("dynamodb", "apigatewaymanagementapi", "secretsmanager"),
    agent=True,
)
ACCEPTED = {"statusCode": 200}
REFUSED = {"statusCode": 403}


@cold_start.released_after
@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    context_ = event.get("requestContext") or {}
    route = context_.get("routeKey")
    connection_id = context_.get("connectionId", "")
    logger.append_keys(connection_id=connection_id, route=route)
    try:
        if route == "$connect":
            return _connect(event, context_, connection_id)
        if route == "$disconnect":
            logger.info("disconnected")
            return ACCEPTED
        wiring.check_llm_budget(context, reserve_seconds=RESERVE_SECONDS)
        deadline = Deadline.from_context(context, reserve_seconds=RESERVE_SECONDS)
        endpoint = f"https://{context_.get('domainName')}/{context_.get('stage')}"
        sender = ApiGatewaySender(
            wiring.management_client(endpoint),
            connection_id,
            urgent_client=lambda: wiring.urgent_management_client(endpoint),
        )
        result = wiring.voice_relay().handle(
            connection_id, event.get("body"), sender, now=int(time.time()), deadline=deadline, endpoint=endpoint
        )
        logger.append_keys(call_sid=result.call_sid or None)
        logger.info("frame handled", extra={"frame_type": result.type, "frames_sent": sender.sent, "end": result.end})
        if result.type == "prompt":
            metric("Turns", channel="voice", kind="agent")
        if result.handoff_trigger:
            metric("Handoffs", channel="voice", trigger=result.handoff_trigger)
        if result.end == "failed":  # still owed: the next frame or the watchdog posts it
            metric("VoiceEndsNotSent", outcome=result.end)
        if result.refused:
            metric("RelayBindingsRefused", stage="setup", reason=result.refused)
        if result.store_fault:  # the socket was closed: Twilio's action callback reconnects or routes the call
            metric("VoiceStoreFaults", step=result.store_fault)
    except Exception as exc:
        if isinstance(exc, ConfigError):
            config_problem(logger, exc)
        else:
            logger.exception("frame not handled")
        if route == "$connect":
            return REFUSED
    return ACCEPTED


def _connect(event, context_, connection_id):
    settings = wiring.settings().require("TWILIO_AUTH_TOKEN")
    if not handshake_is_signed(event, settings.twilio_auth_token, settings.relay_websocket_url):
        logger.warning("WebSocket handshake refused: X-Twilio-Signature missing or wrong")
        return REFUSED
    # The binding's clock is when API Gateway received the handshake; a replay through it is always "now".
    at = context_.get("requestTimeEpoch")
    at = at / 1000 if isinstance(at, int | float) and not isinstance(at, bool) else time.time()
    result = wiring.voice_relay().connect(
        connection_id, binding_of(event, BINDING_PARAMETER), at=at, now=int(time.time())
    )
    if result.accepted:
        logger.append_keys(call_sid=result.call_sid)
        return ACCEPTED
    # A security event: the reason and the CallSid it named, never the binding itself.
    logger.warning(
        "security: WebSocket handshake refused: socket binding %s", result.reason, extra={"call_sid": result.call_sid}
    )
    metric("RelayBindingsRefused", stage="connect", reason=result.reason)
    return REFUSED
