"""InboundSmsFunction: Twilio Messaging webhook (POST /sms) -> one agent turn -> TwiML."""

from aws_lambda_powertools import Logger

from agent_handoff import responses, wiring
from agent_handoff.errors import ConfigError, StoreError, WebhookRejected
from agent_handoff.masking import mask_phone
from agent_handoff.sms import InboundSms
from agent_handoff.twiml import message_reply
from agent_handoff.webhook import require_account, require_fields, verified_request

logger = Logger(service="inbound-sms")


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    try:
        settings = wiring.settings().require("TWILIO_AUTH_TOKEN", "SESSIONS_TABLE_NAME")
        request = verified_request(
            event, auth_token=settings.twilio_auth_token, public_base_url=settings.public_base_url
        )
        require_account(request.params, settings.twilio_account_sid)
        require_fields(request.params, "MessageSid", "From", "To")
    except WebhookRejected as exc:
        logger.warning("webhook refused", extra={"status": exc.status, "reason": exc.reason})
        return responses.rejection(exc)
    except ConfigError:
        logger.exception("function misconfigured")
        return responses.server_error()

    params = request.params
    logger.append_keys(message_sid=params["MessageSid"], customer=mask_phone(params["From"]))
    message = InboundSms(
        message_sid=params["MessageSid"],
        customer=params["From"],
        agent_number=params["To"],
        body=params.get("Body", ""),
    )
    try:
        reply = wiring.sms_service().handle(message)
    except (StoreError, ConfigError):
        logger.exception("turn not completed; Twilio may retry the webhook")
        return responses.server_error()
    logger.info("replied", extra={"duplicate": reply.duplicate, "handed_off": reply.handed_off})
    return responses.twiml(message_reply(reply.text))
