"""Logs and metrics for the handlers: Powertools, configured once per function.

The core logs through the standard `logging` module under `agent_handoff`; handing that logger
the function's Powertools configuration makes every core line structured JSON carrying the
same keys (MessageSid, CallSid, conversation id) that the handler appends.
Metrics are CloudWatch embedded metric format lines, one per event, so each can carry its own
dimensions (channel, trigger, outcome).
"""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from . import log_context
from .config import explain
from .errors import ConfigError

NAMESPACE_DEFAULT = "AiHandoff"
_config_problems_logged: set[str] = set()


def function_logger(service: str) -> Logger:
    logger = Logger(service=service)
    route_core_logs(logger)
    return logger


def route_core_logs(logger: Logger) -> None:
    """Core lines go through this function's handler and formatter, with its appended keys.

    Called at the start of each invocation too: where several functions share a process (the
    local stack, tests), the one being invoked must own the core's logs.
    """
    logger.append_keys(name="%(name)s")  # which module a line comes from
    log_context.clear()
    for handler in logger.handlers:
        if not any(isinstance(f, log_context.ContextFilter) for f in handler.filters):
            handler.addFilter(log_context.ContextFilter())
    core = logging.getLogger("agent_handoff")
    core.handlers = list(logger.handlers)
    core.setLevel(logger.log_level)
    core.propagate = False


def metric(name: str, value: float = 1, *, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    if is_metrics_disabled():  # single_metric prints even when POWERTOOLS_METRICS_DISABLED is set
        return
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE_DEFAULT
    with single_metric(name=name, unit=unit, value=value, namespace=namespace) as emitted:
        for key, dimension in dimensions.items():
            emitted.add_dimension(name=key, value=dimension or "none")


def config_problem(logger: Logger, error: ConfigError) -> None:
    """A configuration error in plain words, once per cold start: every request fails the same way
    until the environment is fixed, and a traceback would say nothing more."""
    message = explain(error)
    if message not in _config_problems_logged:
        _config_problems_logged.add(message)
        logger.error(message)
