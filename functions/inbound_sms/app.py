"""InboundSmsFunction: Twilio Messaging webhook (POST /sms) -> one agent turn -> TwiML."""

from agent_handoff import cold_start, wiring  # cold_start first: it holds collections for the cold start
from agent_handoff.masking import mask_phone
from agent_handoff.observability import function_logger, metric, route_core_logs
from agent_handoff.sms.service import FALLBACK_RESERVE_SECONDS, InboundSms, claim_lease_seconds, webhook_deadline
from agent_handoff.sms.twiml import message_reply
from agent_handoff.webhook_handler import twilio_webhook
from agent_handoff.webhooks import responses

logger = function_logger("inbound-sms")


@twilio_webhook("MessageSid", "From", "To", logger=logger, with_context=True)
def answer(request, event, context):
    deadline = webhook_deadline(context)
    wiring.check_llm_budget(context, reserve_seconds=FALLBACK_RESERVE_SECONDS)
    params = request.params
    logger.append_keys(message_sid=params["MessageSid"], customer=mask_phone(params["From"]))
    message = InboundSms(
        message_sid=params["MessageSid"],
        customer=params["From"],
        agent_number=params["To"],
        body=params.get("Body", ""),
    )
    reply = wiring.sms_service().handle(
        message,
        deadline=deadline,
        lease_seconds=claim_lease_seconds(context),
        transcript_base_url=wiring.transcript_base_url(event),
    )
    logger.append_keys(conversation_id=reply.conversation_id or None)
    if reply.store_unavailable:
        metric("StoreUnavailable")  # alarmed on: a texter got an apology and nothing was recorded
    logger.info(
        "replied", extra={"duplicate": reply.duplicate, "handed_off": reply.handed_off, "on_hold": reply.on_hold}
    )
    if not reply.duplicate and not reply.store_unavailable:
        metric("Turns", channel="sms", kind="on_hold" if reply.on_hold else "agent")
    if reply.handed_off:
        metric("Handoffs", channel="sms", trigger=reply.trigger)
    return responses.twiml(message_reply(reply.text))


@cold_start.released_after
@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    return answer(event, context)
