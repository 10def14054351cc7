"""VoiceRelayFunction: the ConversationRelay WebSocket ($connect, $default, $disconnect).

It never raises: a Lambda error makes API Gateway send Twilio an "Internal server error"
frame, which is not a ConversationRelay message (ten of them in a row drop the call).
"""

import time

from agent_handoff import wiring
from agent_handoff.errors import ConfigError
from agent_handoff.observability import config_problem, function_logger, metric, route_core_logs
from agent_handoff.voice.sender import ApiGatewaySender
from agent_handoff.webhooks.handshake import handshake_is_signed

logger = function_logger("voice-relay")
ACCEPTED = {"statusCode": 200}
REFUSED = {"statusCode": 403}


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    context_ = event.get("requestContext") or {}
    route = context_.get("routeKey")
    connection_id = context_.get("connectionId", "")
    logger.append_keys(connection_id=connection_id, route=route)
    try:
        if route == "$connect":
            settings = wiring.settings().require("TWILIO_AUTH_TOKEN")
            if handshake_is_signed(event, settings.twilio_auth_token, settings.relay_websocket_url):
                return ACCEPTED
            logger.warning("WebSocket handshake refused: X-Twilio-Signature missing or wrong")
            return REFUSED
        if route == "$disconnect":
            logger.info("disconnected")
            return ACCEPTED
        endpoint = f"https://{context_.get('domainName')}/{context_.get('stage')}"
        sender = ApiGatewaySender(wiring.management_client(endpoint), connection_id)
        result = wiring.voice_relay().handle(connection_id, event.get("body"), sender, now=int(time.time()))
        logger.append_keys(call_sid=result.call_sid or None)
        logger.info("frame handled", extra={"frame_type": result.type, "frames_sent": sender.sent})
        if result.type == "prompt":
            metric("Turns", channel="voice", kind="agent")
        if result.handoff_trigger:
            metric("Handoffs", channel="voice", trigger=result.handoff_trigger)
    except Exception as exc:
        if isinstance(exc, ConfigError):
            config_problem(logger, exc)
        else:
            logger.exception("frame not handled")
        if route == "$connect":
            return REFUSED
    return ACCEPTED
