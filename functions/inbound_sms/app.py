"""InboundSmsFunction: Twilio Messaging webhook (POST /sms) -> one agent turn -> TwiML."""

from aws_lambda_powertools import Logger

from agent_handoff import responses, wiring
from agent_handoff.masking import mask_phone
from agent_handoff.sms import InboundSms
from agent_handoff.twiml import message_reply
from agent_handoff.webhook_handler import twilio_webhook

logger = Logger(service="inbound-sms")


@twilio_webhook("MessageSid", "From", "To", logger=logger)
def answer(request, event):
    params = request.params
    logger.append_keys(message_sid=params["MessageSid"], customer=mask_phone(params["From"]))
    message = InboundSms(
        message_sid=params["MessageSid"],
        customer=params["From"],
        agent_number=params["To"],
        body=params.get("Body", ""),
    )
    reply = wiring.sms_service().handle(message)
    logger.info("replied", extra={"duplicate": reply.duplicate, "handed_off": reply.handed_off})
    return responses.twiml(message_reply(reply.text))


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return answer(event, context)
