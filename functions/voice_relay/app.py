"""VoiceRelayFunction: the ConversationRelay WebSocket ($connect, $default, $disconnect).

It never raises: a Lambda error makes API Gateway send Twilio an "Internal server error"
frame, which is not a ConversationRelay message (ten of them in a row drop the call).
"""

import time

from aws_lambda_powertools import Logger

from agent_handoff import wiring
from agent_handoff.relay_sender import ApiGatewaySender
from agent_handoff.websocket import handshake_is_signed

logger = Logger(service="voice-relay")
ACCEPTED = {"statusCode": 200}
REFUSED = {"statusCode": 403}


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
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
        wiring.voice_relay().handle(connection_id, event.get("body"), sender, now=int(time.time()))
        logger.info("frame handled", extra={"frames_sent": sender.sent})
    except Exception:
        logger.exception("frame not handled")
        if route == "$connect":
            return REFUSED
    return ACCEPTED
