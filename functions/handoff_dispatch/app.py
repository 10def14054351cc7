"""HandoffDispatchFunction: handoff records from the table's stream -> Studio executions."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from agent_handoff import wiring

logger = Logger(service="handoff-dispatch")
# A Studio outage fails every record: report them all as item failures rather than erroring the invocation.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def dispatch_record(record):
    handoff_id = record.dynamodb.new_image.get("handoffId")
    if not handoff_id:
        # The event source mapping filters on kind=handoff; anything else is not ours to retry.
        logger.warning("stream record without handoffId ignored", extra={"event_id": record.event_id})
        return None
    outcome = wiring.dispatcher().dispatch(handoff_id)
    logger.info(
        "handoff dispatched", extra={"handoff_id": handoff_id, "status": outcome.status, "outcome": outcome.outcome}
    )
    return outcome.status


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return process_partial_response(event=event, record_handler=dispatch_record, processor=processor, context=context)
