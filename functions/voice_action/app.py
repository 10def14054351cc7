"""VoiceActionFunction: the <Connect action> callback (POST /voice/action) -> route the live call."""

from agent_handoff import cold_start, snapshot, wiring  # cold_start first: it holds collections for the cold start
from agent_handoff.deadline import Deadline
from agent_handoff.observability import function_logger, metric, route_core_logs
from agent_handoff.voice.calls import STORE_PATIENCE_SECONDS, SessionEnd
from agent_handoff.webhook_handler import twilio_webhook
from agent_handoff.webhooks import responses
from agent_handoff.webhooks.request import url_beside

logger = function_logger("voice-action")
# SnapStart or provisioned concurrency: the first callback's SDK models, loaded during init.
snapshot.prepare(modules=(), services=("dynamodb", "secretsmanager"))
# Kept back from DynamoDB's retries to shape and return the answer: the caller is on the line.
RESERVE_SECONDS = 1.0


@twilio_webhook("CallSid", "SessionStatus", logger=logger, with_context=True)
def route(request, event, context):
    params = request.params
    logger.append_keys(call_sid=params["CallSid"], session_status=params["SessionStatus"])
    routing = wiring.voice_calls().session_ended(
        SessionEnd(
            call_sid=params["CallSid"],
            session_status=params["SessionStatus"],
            call_status=params.get("CallStatus", ""),
            handoff_data=params.get("HandoffData") or None,
            error_code=params.get("ErrorCode", ""),
            action_url=url_beside(event, "/voice/action", wiring.settings().public_base_url),
            transcript_base_url=wiring.transcript_base_url(event),
            session_id=params.get("SessionId", ""),
        ),
        deadline=Deadline.from_context(context, reserve_seconds=RESERVE_SECONDS, cap_seconds=STORE_PATIENCE_SECONDS),
    )
    if routing.target and not routing.repeated:
        metric("VoiceRoutes", target=routing.target.split(":")[0])
    if routing.stale:  # a security event: a replayed request, most likely (logged with `security:`)
        metric("VoiceCallbacksIgnored", reason="stale_session")
    for step in routing.store_faults:  # answered without that step: logged with its exception
        metric("VoiceStoreFaults", step=step)
    return responses.twiml(routing.twiml)


@cold_start.released_after
@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    return route(event, context)
