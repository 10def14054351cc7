"""HandoffDispatchFunction: handoff records from the table's stream -> Studio executions."""

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from agent_handoff import wiring
from agent_handoff.observability import function_logger, metric, route_core_logs

logger = function_logger("handoff-dispatch")
# A Studio outage fails every record: report them all as item failures rather than erroring the invocation.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def dispatch_record(record):
    handoff_id = record.dynamodb.new_image.get("handoffId")
    if not handoff_id:
        # The event source mapping filters on kind=handoff; anything else is not ours to retry.
        logger.warning("stream record without handoffId ignored", extra={"event_id": record.event_id})
        return None
    try:
        outcome = wiring.dispatcher().dispatch(handoff_id)
    except Exception as exc:
        metric("DispatchOutcomes", status="retry", outcome=type(exc).__name__)
        raise
    logger.info(
        "handoff dispatched", extra={"handoff_id": handoff_id, "status": outcome.status, "outcome": outcome.outcome}
    )
    metric("DispatchOutcomes", status=outcome.status, outcome=outcome.outcome)
    if outcome.status == "failed":
        metric("DispatchFailures")  # alarmed on: one metric, no dimension to enumerate
    if outcome.status != "skipped":
        metric("DispatchLatency", outcome.latency_seconds, unit=MetricUnit.Seconds, status=outcome.status)
    return outcome.status


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    return process_partial_response(event=event, record_handler=dispatch_record, processor=processor, context=context)
