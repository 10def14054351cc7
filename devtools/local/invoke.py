"""One function, one sample event, no Docker: `make invoke`, the `sam local invoke` of this repository.

    python -m devtools.local.invoke --function InboundSmsFunction --event events/sms-human.json
    python -m devtools.local.invoke --event events/voice-incoming-call.json --event events/relay-connect.json ...

The function runs in this process as Lambda imports it, with the environment the template gives
it and events/env.json on top (as `--env-vars` does: only the variables the function declares),
on moto with the template's tables and queues, a Studio recorder in place of Studio and a
loopback @connections endpoint for the relay's frames. A stream event's records are written to
the table first, as the write that made them would have.

Several events run one after another on the same moto, so a whole call can be followed;
without --function each goes to the function that the template wires to its route, WebSocket
route or stream. It prints what the function returned (the body decoded), what Studio received
and the frames posted; the function's logs go to stderr, one line per event (--json: raw).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from devtools.cli import UserError, run
from devtools.local.lambdas import LambdaContext
from devtools.samples import sample
from devtools.template import ROOT

ENV_FILE = ROOT / "events" / "env.json"


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"no {what} at {path}") from exc
    except ValueError as exc:
        raise UserError(f"{path} is not JSON: {exc}") from exc


def function_for(event: dict[str, Any]) -> str:
    """The template's function for this event: by HTTP route, WebSocket route, stream source or schedule rule."""
    from devtools.template_functions import http_routes, schedule_triggers, stream_triggers, websocket_routes

    context = event.get("requestContext") or {}
    route_key = str(event.get("routeKey") or context.get("routeKey") or "")
    if " " in route_key:
        method, path = route_key.split(" ", 1)
        for route in http_routes():
            if (route.method, route.path) == (method, path):
                return route.function
    if route_key in websocket_routes():
        return websocket_routes()[route_key]
    records = event.get("Records")
    if isinstance(records, list) and records and records[0].get("eventSource") == "aws:dynamodb":
        return stream_triggers()[0].function
    if event.get("source") == "aws.events":
        # An EventBridge rule's name carries the function and the event's names, as SAM makes it.
        rules = " ".join(str(r) for r in event.get("resources") or [])
        for trigger in schedule_triggers():
            if f"{trigger.function}{trigger.event}" in rules:
                return trigger.function
    raise UserError(f"cannot tell which function this event is for (route {route_key!r}): give FUNCTION=...")


class Sandbox:
    """moto, the Studio recorder and @connections, with every table and queue of the template."""

    def __init__(self, env_file: dict[str, Any]) -> None:
        self._env_file = env_file
        self._handlers: dict[str, Callable[[dict, Any], Any]] = {}

    @contextlib.contextmanager
    def running(self) -> Iterator[Sandbox]:
        from moto import mock_aws

        from devtools.fakes.connections import ConnectionsEndpoint
        from devtools.fakes.studio_recorder import StudioRecorder

        saved = dict(os.environ)
        os.environ.update(sample.FAKE_AWS)
        os.environ.pop("AWS_PROFILE", None)
        try:
            with (
                mock_aws(),
                StudioRecorder(username=sample.ACCOUNT_SID, password=sample.AUTH_TOKEN) as studio,
                ConnectionsEndpoint() as connections,
            ):
                self.studio, self.connections = studio, connections
                self.physical = self._create_resources()
                yield self
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def _declared(self) -> dict[str, Any]:
        from devtools.template_functions import functions

        return {name: node for spec in functions().values() for name, node in spec.environment.items()}

    def _create_resources(self) -> dict[str, str]:
        import boto3

        from devtools.template import create_queue, create_table, load_template

        given = self._env_file.get("Parameters", {})
        declared = self._declared()
        physical: dict[str, str] = {}
        for logical_id, resource in load_template()["Resources"].items():
            # A table env.json names (SESSIONS_TABLE_NAME) is created under that name, so the samples find it.
            named = [given[var] for var, node in declared.items() if node == {"Ref": logical_id} and given.get(var)]
            if resource["Type"] == "AWS::DynamoDB::Table":
                physical[logical_id] = named[0] if named else f"local-{logical_id}"
                create_table(boto3.client("dynamodb"), logical_id, physical[logical_id])
            elif resource["Type"] == "AWS::SQS::Queue":
                physical[logical_id] = create_queue(boto3.client("sqs"), logical_id, f"local-{logical_id}")
            else:
                physical[logical_id] = f"local-{logical_id}"
        return physical

    def environment(self, logical_id: str) -> dict[str, str]:
        from devtools.template_functions import Resolver, functions

        spec = functions()[logical_id]
        parameters = {"TwilioPhoneNumber": sample.AGENT_NUMBER, "StudioHandoffFlowSid": sample.FLOW_SID}
        resolver = Resolver({**self.physical, "TwilioSecret": ""}, parameters)
        env = {name: resolver.value(node) for name, node in spec.environment.items()}
        for section in ("Parameters", logical_id):
            env.update({k: str(v) for k, v in self._env_file.get(section, {}).items() if k in spec.environment})
        return {
            **env,
            # Where Docker would reach the real services, this process has its stand-ins.
            "STUDIO_BASE_URL": self.studio.base_url,
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": self.connections.url,
            "POWERTOOLS_TRACE_DISABLED": "true",
        }

    def invoke(self, logical_id: str, event: dict[str, Any], logs: TextIO) -> Any:
        from agent_handoff import wiring
        from devtools.template_functions import functions, stream_triggers

        specs = functions()
        if logical_id not in specs:
            raise UserError(f"no function {logical_id!r} in template.yaml; there are: {', '.join(specs)}")
        os.environ.update(self.environment(logical_id))
        wiring.reset()
        for trigger in stream_triggers():
            if trigger.function == logical_id:
                self._write_stream_images(trigger.table, event)
        # Lambda's stdout is the log stream: logs and metrics, never the answer printed below.
        with contextlib.redirect_stdout(logs):
            if logical_id not in self._handlers:
                self._handlers[logical_id] = specs[logical_id].load()
            return self._handlers[logical_id](event, LambdaContext(function_name=logical_id))

    def _write_stream_images(self, table: str, event: dict[str, Any]) -> None:
        import boto3

        for record in event.get("Records") or []:
            image = (record.get("dynamodb") or {}).get("NewImage")
            if image:
                boto3.client("dynamodb").put_item(TableName=self.physical[table], Item=image)


def show(result: Any, out: TextIO) -> None:
    out.write(json.dumps(result, indent=2) + "\n")
    if isinstance(result, dict) and result.get("isBase64Encoded") and isinstance(result.get("body"), str):
        out.write(f"body (decoded): {base64.b64decode(result['body']).decode('utf-8', 'replace')}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--function", help="the function's logical ID (default: the one the event's route names)")
    parser.add_argument("--event", action="append", default=[], help="a sample event file; repeat for several")
    parser.add_argument("--env-vars", default=str(ENV_FILE), help="variables as for sam local invoke --env-vars")
    parser.add_argument("--json", action="store_true", help="the function's raw JSON log lines")
    args = parser.parse_args(argv)
    if not args.event:
        raise UserError("give an event: make invoke EVENT=events/sms-human.json [FUNCTION=InboundSmsFunction]", 2)
    env_file = read_json(Path(args.env_vars), "environment file")
    events = [(path, read_json(Path(path), "event")) for path in args.event]
    if args.json:
        logs: TextIO = sys.stderr
    else:
        from devtools.local.logs import HumanLogs

        logs = HumanLogs(sys.stderr)
    out = sys.stdout
    with Sandbox(env_file).running() as sandbox:
        for path, event in events:
            logical_id = args.function or function_for(event)
            executions, frames = len(sandbox.studio.requests), _frame_count(sandbox)
            out.write(f"{logical_id} <- {path}\n")
            out.flush()
            try:
                result = sandbox.invoke(logical_id, event, logs)
            except UserError:
                raise
            except Exception as exc:
                # As Lambda reports an unhandled error: the function failed; this command did its job.
                raise UserError(f"{logical_id} raised {type(exc).__name__}: {exc} (DEBUG=1 for the traceback)") from exc
            show(result, out)
            for execution in sandbox.studio.requests[executions:]:
                out.write(
                    f"studio: {execution.status} {execution.sid or '-'} To={execution.to} {execution.parameters}\n"
                )
            for connection, data in _frames(sandbox)[frames:]:
                out.write(f"posted to {connection}: {data}\n")
            out.write("\n")
    return 0


def _frames(sandbox: Sandbox) -> list[tuple[str, str]]:
    return [(cid, f.decode()) for cid, frames in list(sandbox.connections.frames.items()) for f in frames]


def _frame_count(sandbox: Sandbox) -> int:
    return len(_frames(sandbox))


if __name__ == "__main__":
    sys.exit(run(main, "make invoke"))
