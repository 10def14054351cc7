"""IncomingCallFunction: Twilio Voice webhook (POST /voice) -> <Connect><ConversationRelay>."""

import re

from agent_handoff import cold_start, snapshot, wiring  # cold_start first: it holds collections for the cold start
from agent_handoff.deadline import Deadline
from agent_handoff.errors import WebhookRejected
from agent_handoff.masking import mask_phone
from agent_handoff.observability import function_logger, metric, route_core_logs
from agent_handoff.voice.calls import STORE_PATIENCE_SECONDS
from agent_handoff.webhook_handler import twilio_webhook
from agent_handoff.webhooks import responses
from agent_handoff.webhooks.request import query_params, url_beside

logger = function_logger("incoming-call")
# SnapStart or provisioned concurrency: the first call's imports and SDK models, loaded during init.
snapshot.prepare(
    modules=("agent_handoff.voice.calls", "agent_handoff.voice.twiml", "agent_handoff.storage.call_store"),
    services=("dynamodb", "secretsmanager"),
)
FLOW_SID = re.compile(r"^FW[0-9a-fA-F]{32}$")
# Kept back from DynamoDB's retries to shape and return the answer: the caller is ringing.
RESERVE_SECONDS = 1.0


@twilio_webhook("CallSid", "From", "To", logger=logger, with_context=True)
def answer(request, event, context):
    params = request.params
    logger.append_keys(call_sid=params["CallSid"], caller=mask_phone(params["From"]))
    # A Studio flow's TwiML Redirect widget calls /voice?FlowSid={{flow.flow_sid}} to get the call back later.
    return_flow_sid = query_params(event).get("FlowSid", "")
    if return_flow_sid and not FLOW_SID.match(return_flow_sid):
        raise WebhookRejected(400, "FlowSid must be a Studio Flow SID (FW followed by 32 hex characters)")
    routing = wiring.voice_calls().answer(
        call_sid=params["CallSid"],
        caller=params["From"],
        agent_number=params["To"],
        action_url=url_beside(event, "/voice/action", wiring.settings().public_base_url),
        return_flow_sid=return_flow_sid,
        deadline=Deadline.from_context(context, reserve_seconds=RESERVE_SECONDS, cap_seconds=STORE_PATIENCE_SECONDS),
    )
    for step in routing.store_faults:  # answered without that step: logged with its exception
        metric("VoiceStoreFaults", step=step)
    return responses.twiml(routing.twiml)


@cold_start.released_after
@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    return answer(event, context)
