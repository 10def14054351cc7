"""HandoffTranscriptFunction: GET /handoff/transcript?t=<signed link> -> the conversation before the handoff."""

from agent_handoff import cold_start, wiring  # cold_start first: it holds collections for the cold start
from agent_handoff.errors import ConfigError, StoreError
from agent_handoff.observability import function_logger, metric, route_core_logs
from agent_handoff.transcript_link import QUERY
from agent_handoff.webhooks.request import lower_headers, query_params

logger = function_logger("handoff-transcript")


@cold_start.released_after
@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    accept = lower_headers(event).get("accept", "")
    try:
        served = wiring.transcript_service().serve(query_params(event).get(QUERY), accept=accept)
    except (ConfigError, StoreError):
        logger.exception("transcript not served")
        return {
            "statusCode": 503,
            "headers": {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"},
            "body": "temporarily unable to show this transcript\n",
        }
    # The conversation id only: never the link (it is the credential), a number or a message.
    logger.info(
        "transcript request",
        extra={
            "conversation_id": served.conversation_id or None,
            "outcome": served.outcome,
            "status": served.response["statusCode"],
        },
    )
    metric("TranscriptViews", outcome=served.outcome.split(":")[0])
    return served.response
