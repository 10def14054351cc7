"""HandoffWatchdogFunction: every minute, keeps the promises to customers that are overdue."""

from agent_handoff import cold_start, wiring  # cold_start first: it holds collections for the cold start
from agent_handoff.deadline import Deadline
from agent_handoff.observability import function_logger, metric, route_core_logs

logger = function_logger("handoff-watchdog")

RESERVE_SECONDS = 3.0  # the summary and its metrics, after the last promise


@cold_start.released_after
@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    route_core_logs(logger)
    reports = wiring.watchdog().run(Deadline.from_context(context, reserve_seconds=RESERVE_SECONDS))
    summary = {}
    for kind, report in reports.items():
        # Alarmed on (their sum): the normal path missed a promise, or it could not be kept at all.
        metric("WatchdogRecovered", report.recovered)
        metric("WatchdogFailed", report.failed)
        if report.overdue or report.errors:
            metric("WatchdogOverdue", report.overdue, kind=kind)
            logger.warning("overdue promises", extra={"kind": kind, **_counts(report)})
        summary[kind] = _counts(report)
    return summary


def _counts(report):
    return {
        name: getattr(report, name)
        for name in ("overdue", "recovered", "failed", "retried", "settled", "errors", "left")
    }
