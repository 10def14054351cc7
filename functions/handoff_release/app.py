"""HandoffReleaseFunction: POST /handoff/release -> the AI answers this customer again."""

import json

from agent_handoff import cold_start, wiring  # cold_start first: it holds collections for the cold start
from agent_handoff.deadline import Deadline
from agent_handoff.delivery import release
from agent_handoff.errors import ConfigError, StoreError, WebhookRejected
from agent_handoff.masking import mask_phone
from agent_handoff.observability import config_problem, function_logger, metric, route_core_logs

logger = function_logger("handoff-release")

RESERVE_SECONDS = 1.5  # the answer and its log lines, after Studio's last request
NOTHING_HELD = "no conversation with this customer is with a person"
NOT_WITH_A_PERSON = "this handoff is not with a person (already released, expired or failed): nothing released"
NOT_THIS_HANDOFF = (
    "this customer is with a person for another handoff (they handed off again since): nothing released; "
    "a release for the current handoff must name it"
)


def _json(status, body):
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


@cold_start.released_after
@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    try:
        release.authenticate(event, wiring.settings().handoff_release_token)
        request = release.parse(event)
        logger.append_keys(customer=mask_phone(request.customer))
        if request.handoff_id or request.conversation_id:  # the handoff the release names
            logger.append_keys(named_handoff=request.handoff_id, conversation_id=request.conversation_id)
        outcome = wiring.releaser().release(
            request, deadline=Deadline.from_context(context, reserve_seconds=RESERVE_SECONDS)
        )
    except WebhookRejected as exc:
        logger.warning("release refused", extra={"status": exc.status, "reason": exc.reason})
        return _json(exc.status, {"released": False, "error": exc.reason})
    except (ConfigError, StoreError) as exc:
        if isinstance(exc, ConfigError):
            config_problem(logger, exc)
        else:
            logger.exception("release not processed")
        return _json(500, {"released": False, "error": "temporarily unable to release"})
    if outcome.another_handoff:
        logger.info("release names a handoff that is not the current one")
        return _json(409, {"released": False, "error": NOT_THIS_HANDOFF})
    if not outcome.released:
        logger.info("nothing to release")
        named = request.handoff_id or request.conversation_id
        return _json(404, {"released": False, "error": NOT_WITH_A_PERSON if named else NOTHING_HELD})
    logger.info(
        "hold released",
        extra={"handoff_id": outcome.handoff_id, "execution": outcome.execution_sid, "ended": outcome.execution_ended},
    )
    if outcome.execution_sid:
        metric("ExecutionsEnded", status="ended" if outcome.execution_ended else "failed")
    return _json(200, outcome.answer())
