"""HandoffDispatchFunction: handoff records from the table's stream -> Studio executions."""

# cold_start first: it holds collections for the cold start (so MetricUnit comes through observability)
from agent_handoff import cold_start, wiring
from agent_handoff.deadline import Deadline
from agent_handoff.delivery.dispatch import MIN_RECORD_SECONDS, RESERVE_SECONDS
from agent_handoff.delivery.stream_batch import new_image_text, process_stream_batch
from agent_handoff.errors import ConfigError
from agent_handoff.observability import MetricUnit, config_problem, function_logger, metric, route_core_logs

logger = function_logger("handoff-dispatch")


def dispatch_record(record, deadline):
    handoff_id = new_image_text(record, "handoffId")
    if not handoff_id:
        # The event source mapping filters on kind=handoff; anything else is not ours to retry.
        logger.warning("stream record without handoffId ignored", extra={"event_id": record.get("eventID")})
        return None
    try:
        outcome = wiring.dispatcher().dispatch(handoff_id, deadline=deadline)
    except Exception as exc:
        metric("DispatchOutcomes", status="retry", outcome=type(exc).__name__)
        raise
    logger.info(
        "handoff dispatched", extra={"handoff_id": handoff_id, "status": outcome.status, "outcome": outcome.outcome}
    )
    record_outcome(outcome)
    return outcome.status


def record_outcome(outcome):
    metric("DispatchOutcomes", status=outcome.status, outcome=outcome.outcome)
    if outcome.status == "failed":
        metric("DispatchFailures")  # alarmed on: one metric, no dimension to enumerate
    if outcome.customer_notice in ("sent", "failed"):
        metric("CustomerNotices", status=outcome.customer_notice)
    if outcome.status not in ("skipped", "settled"):
        metric("DispatchLatency", outcome.latency_seconds, unit=MetricUnit.Seconds, status=outcome.status)


def redelivered(record, exc):
    if isinstance(exc, ConfigError):
        config_problem(logger, exc)
    # A Studio outage fails every record: each is reported back to Lambda, the invocation succeeds.
    logger.warning(
        "handoff will be delivered again",
        extra={"handoff_id": new_image_text(record, "handoffId"), "error": type(exc).__name__},
    )


@cold_start.released_after
@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    # Each record gets what is left, up to its budget (the dispatcher's RECORD_BUDGET_SECONDS);
    # records not reached in time go back to the stream.
    deadline = Deadline.from_context(context, reserve_seconds=RESERVE_SECONDS)
    return process_stream_batch(
        event,
        lambda record: dispatch_record(record, deadline),
        redelivered,
        deadline=deadline,
        min_seconds=MIN_RECORD_SECONDS,
    )
