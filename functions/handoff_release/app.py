"""HandoffReleaseFunction: POST /handoff/release -> the AI answers this customer again."""

import json
import time

from agent_handoff import wiring
from agent_handoff.delivery import release
from agent_handoff.errors import ConfigError, StoreError, WebhookRejected
from agent_handoff.masking import mask_phone
from agent_handoff.observability import config_problem, function_logger, route_core_logs

logger = function_logger("handoff-release")


def _json(status, body):
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    try:
        release.authenticate(event, wiring.settings().handoff_release_token)
        request = release.parse(event)
        logger.append_keys(customer=mask_phone(request.customer))
        released = wiring.session_store().end_hold(request.conversation_key, now=int(time.time()))
    except WebhookRejected as exc:
        logger.warning("release refused", extra={"status": exc.status, "reason": exc.reason})
        return _json(exc.status, {"released": False, "error": exc.reason})
    except (ConfigError, StoreError) as exc:
        if isinstance(exc, ConfigError):
            config_problem(logger, exc)
        else:
            logger.exception("release not processed")
        return _json(500, {"released": False, "error": "temporarily unable to release"})
    logger.info("hold released" if released else "nothing to release")
    if not released:
        return _json(404, {"released": False, "error": "no conversation with this customer is with a person"})
    return _json(200, {"released": True})
