"""VoiceActionFunction: the <Connect action> callback (POST /voice/action) -> route the live call."""

from agent_handoff import wiring
from agent_handoff.observability import function_logger, metric, route_core_logs
from agent_handoff.voice.calls import SessionEnd
from agent_handoff.webhook_handler import twilio_webhook
from agent_handoff.webhooks import responses
from agent_handoff.webhooks.request import url_beside

logger = function_logger("voice-action")


@twilio_webhook("CallSid", "SessionStatus", logger=logger)
def route(request, event):
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
        )
    )
    if routing.target:
        metric("VoiceRoutes", target=routing.target.split(":")[0])
    return responses.twiml(routing.twiml)


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    return route(event, context)
