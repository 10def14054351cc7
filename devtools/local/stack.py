"""The whole bundle on this machine, without Docker or an AWS account: `make local`.

It reads template.yaml and starts, on loopback:
- moto's server as AWS, with every DynamoDB table and SQS queue the template declares;
- one gateway port for the HTTP API routes, the WebSocket API and its @connections endpoint;
- the DynamoDB Streams triggers, with the template's batch, filter and retry settings;
- the template's schedules (the watchdog) as timers, every few seconds instead of every minute;
- a Studio recorder standing in for the Executions API (shows what it received at its URL), and
  Twilio's Messages API (the SMS a customer gets when their handoff failed).

`LocalStack(faults=FaultPlan(...))` (`--faults`) sprinkles faults over it: throttled AWS calls,
Studio 5xx, killed invocations (see devtools/local/faults.py).

Credentials: with TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in your environment, webhooks are
verified with your real token and handoffs go to the real Studio (set TWILIO_PHONE_NUMBER and
TWILIO_STUDIO_HANDOFF_FLOW_SID too); otherwise the sample credentials of events/env.json are
used, which the simulators sign with. LLM_PROVIDER and its variables pass through as well.
Behind a tunnel, set PUBLIC_BASE_URL=https://<tunnel> (and RELAY_WEBSOCKET_URL=wss://<tunnel>/relay).

Before it listens it checks the whole configuration as the functions do at cold start, and
refuses to start with every problem named. HANDOFF_RELEASE_TOKEN is generated for the session
(or taken from your shell) and printed, so `make release` and `/release` in `make sms` work.
The functions' logs are shown one line per event; --json prints their raw JSON lines.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from devtools.cli import UserError, run
from devtools.local import state
from devtools.samples import sample

# Variables the product reads that a developer may set to leave the local defaults.
PASS_THROUGH = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "TWILIO_PHONE_NUMBER",
    "TWILIO_STUDIO_HANDOFF_FLOW_SID",
    "TWILIO_TASKROUTER_WORKFLOW_SID",
    "HANDOFF_ATTRIBUTES",
    "TWILIO_MEMORY_STORE_ID",
    "STUDIO_BASE_URL",
    "PUBLIC_BASE_URL",
    "RELAY_WEBSOCKET_URL",
    "LLM_PROVIDER",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
    "BEDROCK_MODEL_ID",
    "LLM_TIMEOUT_SECONDS",
    "AGENT_SYSTEM_PROMPT",
    "HANDOFF_HOLD_SECONDS",
    "HANDOFF_HOLD_MESSAGE",
    "HANDOFF_REPLY_MESSAGE",
    "HANDOFF_RELEASE_TOKEN",
    "HISTORY_LIMIT",
    "SESSION_TTL_SECONDS",
    "STUDIO_MAX_ATTEMPTS",
    "DISPATCH_MAX_DELIVERIES",
    "VOICE_WELCOME_GREETING",
    "VOICE_LANGUAGE",
    "VOICE_TTS_VOICE",
    "VOICE_TTS_PROVIDER",
    "VOICE_TRANSCRIPTION_PROVIDER",
    "VOICE_HANDOFF_REPLY_MESSAGE",
)
# The gateway lists the Studio recorder's executions here, for the simulators.
STUDIO_PATH = "/_local/studio-executions"
HANDOFFS_PATH = "/_local/handoffs"


def serialized_moto_server(host: str, port: int) -> Any:
    """moto's server, one request at a time.

    moto's backends do not lock: two concurrent conditional writes to one item can both
    succeed, which DynamoDB never allows. Handling requests one after another restores the
    atomicity the product relies on (connections are still accepted concurrently).
    """
    from moto.moto_server.threaded_moto_server import MotoRequestHandler, ThreadedMotoServer
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    class SerializedMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:  # moto offers no hook for this; the override is small
            app = DomainDispatcherApplication(create_backend_app)
            lock = threading.Lock()

            def one_at_a_time(environ: dict, start_response: Any) -> list[bytes]:
                with lock:
                    try:
                        return list(app(environ, start_response))
                    finally:
                        forget_model_instances()

            self._server = make_server(
                self._ip_address, self._port, one_at_a_time, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return SerializedMotoServer(ip_address=host, port=port, verbose=False)


def forget_model_instances() -> None:
    """Drop moto's list of every model object it ever made (kept only for its dashboard).

    A DynamoDB transaction deep-copies each table it touches, stream history included, to roll
    back with; each copy is a new model object that moto's tracker keeps for ever. Without this a
    long run (`make bench`, `make load`) grows by the size of the table on every transaction.
    """
    from moto.core.model_instances import reset_model_data

    reset_model_data()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class LocalStack:
    host: str = "127.0.0.1"
    port: int = 0
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    log_level: str = "INFO"
    _stoppers: list[Any] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    real_twilio: bool = False
    faults: Any = None  # a devtools.local.faults.FaultPlan, or None for a stack that behaves
    schedule_seconds: float = 3.0  # how often scheduled functions (the watchdog) run here

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.port:
            _claim_port(self.host, self.port)
        # Everything below changes this process's environment; stop() puts it back.
        saved = dict(os.environ)
        self._stoppers.append(lambda: (os.environ.clear(), os.environ.update(saved)))
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

        aws_port = free_port(self.host)
        moto = serialized_moto_server(self.host, aws_port)
        moto.start()
        self._stoppers.append(moto.stop)
        self.aws_url = f"http://{self.host}:{aws_port}"
        os.environ.update(sample.FAKE_AWS)
        os.environ["AWS_ENDPOINT_URL"] = self.aws_url
        os.environ.pop("AWS_PROFILE", None)

        physical = self._create_resources()
        self.real_twilio = bool(self.environ.get("TWILIO_ACCOUNT_SID") and self.environ.get("TWILIO_AUTH_TOKEN"))
        username = self.environ["TWILIO_ACCOUNT_SID"] if self.real_twilio else sample.ACCOUNT_SID
        password = self.environ["TWILIO_AUTH_TOKEN"] if self.real_twilio else sample.AUTH_TOKEN
        from devtools.fakes.studio_recorder import StudioRecorder

        self.studio = StudioRecorder(username=username, password=password, host=self.host).start()
        self._stoppers.append(self.studio.stop)
        self.twilio_api = None
        if not self.real_twilio:
            from devtools.fakes.twilio_api import TwilioApiFake

            self.twilio_api = TwilioApiFake(account_sid=username, auth_token=password)
            self._stoppers.append(self.twilio_api.stop)
        self.fault_injector = None
        if self.faults is not None:
            from devtools.local.faults import Faults

            self.fault_injector = Faults(self.faults)
            self.studio.server_errors(every=self.faults.studio_5xx_every, seed=self.faults.seed)

        from devtools import template_functions as tf
        from devtools.local.gateway import Gateway

        specs = tf.functions()
        handlers: dict[str, Any] = {}
        gateway_port = self.port or free_port(self.host)
        self.url = f"http://{self.host}:{gateway_port}"
        self.env = self._environment(specs, physical, gateway_port)
        os.environ.update(self.env)
        from agent_handoff import wiring

        wiring.reset()
        self._stoppers.append(wiring.reset)
        # Before anything listens: a bad setting stops the stack here, named (the LLM budget with
        # each function's template Timeout, which the deployed function learns only from Lambda).
        wiring.check({logical_id: spec.timeout for logical_id, spec in specs.items()})
        for logical_id, spec in specs.items():
            handlers[logical_id] = spec.load()
            if self.fault_injector is not None:
                handlers[logical_id] = self.fault_injector.wrap(logical_id, handlers[logical_id])
        if self.fault_injector is not None:
            self.fault_injector.install([wiring.aws_client("dynamodb"), wiring.aws_client("sqs")])
        http = {(r.method, r.path): (r.function, handlers[r.function]) for r in tf.http_routes()}
        ws = {key: (fn, handlers[fn]) for key, fn in tf.websocket_routes().items()}
        extra = {STUDIO_PATH: lambda: [vars(r) for r in self.studio.requests], HANDOFFS_PATH: self.handoffs}
        extra.update(self._desk().routes())
        self.gateway = Gateway(http, ws, host=self.host, port=gateway_port, extra_get=extra)
        self._stoppers.append(self.gateway.stop)
        self.gateway.start()
        self._start_triggers(specs, handlers, physical)
        self._start_schedules(specs, handlers)

    def _create_resources(self) -> dict[str, str]:
        import boto3

        from devtools.template import create_queue, create_table, load_template

        physical: dict[str, str] = {}
        self._table_streams: dict[str, str] = {}
        # moto's backends live in this process: a second stack here must not meet the first one's tables.
        prefix = f"local-{uuid.uuid4().hex[:6]}"
        for logical_id, resource in load_template()["Resources"].items():
            if resource["Type"] == "AWS::DynamoDB::Table":
                name = f"{prefix}-{logical_id}"
                description = create_table(boto3.client("dynamodb"), logical_id, name)
                physical[logical_id] = name
                if description.get("LatestStreamArn"):
                    self._table_streams[logical_id] = description["LatestStreamArn"]
            elif resource["Type"] == "AWS::SQS::Queue":
                physical[logical_id] = create_queue(boto3.client("sqs"), logical_id, f"{prefix}-{logical_id}")
            else:
                physical[logical_id] = f"local-{logical_id}"
        self.physical = physical
        return physical

    def _environment(self, specs: dict, physical: dict[str, str], gateway_port: int) -> dict[str, str]:
        from devtools.template_functions import Resolver

        parameters = {"TwilioPhoneNumber": sample.AGENT_NUMBER, "StudioHandoffFlowSid": sample.FLOW_SID}
        resolver = Resolver({**physical, "TwilioSecret": ""}, parameters)
        env: dict[str, str] = {}
        for spec in specs.values():
            for name, node in spec.environment.items():
                env[name] = resolver.value(node)
        base = f"http://{self.host}:{gateway_port}"
        env.update(
            TWILIO_SECRET_ARN="",
            TWILIO_ACCOUNT_SID=sample.ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=sample.AUTH_TOKEN,
            STUDIO_BASE_URL=self.studio.base_url,
            PUBLIC_BASE_URL=base,
            RELAY_WEBSOCKET_URL=f"ws://{self.host}:{gateway_port}/relay",
            AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI=base,
            POWERTOOLS_LOG_LEVEL=self.log_level,
            # moto answers one request at a time and copies its tables on each transaction:
            # under load it is far slower than DynamoDB, so the local stack waits longer for it.
            AWS_CLIENT_READ_TIMEOUT_SECONDS="60",
            # A handoff the stream has not delivered after this long is the watchdog's, which runs
            # every few seconds here: stuck work is seen recovered in a local run.
            HANDOFF_DISPATCH_GRACE_SECONDS="10",
            POWERTOOLS_TRACE_DISABLED="true",
            POWERTOOLS_METRICS_DISABLED="true",
        )
        for name in PASS_THROUGH:
            if self.environ.get(name):
                env[name] = self.environ[name]
        # The deployed stack generates it into its secret; a local session gets its own.
        if not env.get("HANDOFF_RELEASE_TOKEN"):
            env["HANDOFF_RELEASE_TOKEN"] = secrets.token_urlsafe(30)
        self.release_token = env["HANDOFF_RELEASE_TOKEN"]
        if self.real_twilio and not self.environ.get("STUDIO_BASE_URL"):
            env.pop("STUDIO_BASE_URL")
            os.environ.pop("STUDIO_BASE_URL", None)
        if self.twilio_api is not None and not self.environ.get("TWILIO_API_BASE_URL"):
            env["TWILIO_API_BASE_URL"] = self.twilio_api.base_url
        return env

    def _start_triggers(self, specs: dict, handlers: dict[str, Any], physical: dict[str, str]) -> None:
        import boto3

        from devtools.local.event_sources import StreamPoller
        from devtools.template_functions import stream_triggers

        self.pollers = []
        for trigger in stream_triggers():
            destination = ((trigger.properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                "Destination"
            )
            queue_url = physical.get(destination["Fn::GetAtt"][0]) if isinstance(destination, dict) else None

            def on_failure(record: dict[str, Any], queue_url: str | None = queue_url) -> None:
                if queue_url:
                    boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(record))

            poller = StreamPoller(
                function=trigger.function,
                handler=handlers[trigger.function],
                streams_client=boto3.client("dynamodbstreams"),
                stream_arn=self._table_streams[trigger.table],
                properties=trigger.properties,
                on_failure=on_failure,
                timeout_seconds=specs[trigger.function].timeout,
            ).start()
            self.pollers.append(poller)
            self._stoppers.append(poller.stop)

    def _desk(self) -> Any:
        import boto3

        from devtools.local.desk import Desk

        return Desk(
            executions=lambda: list(self.studio.requests),
            table=self.physical["SessionsTable"],
            release_token=self.release_token,
            dynamodb=boto3.client("dynamodb"),
        )

    def _start_schedules(self, specs: dict, handlers: dict[str, Any]) -> None:
        from devtools.local.schedules import ScheduleRunner
        from devtools.template_functions import schedule_triggers

        self.schedules = {}
        for trigger in schedule_triggers():
            runner = ScheduleRunner(
                function=trigger.function,
                handler=handlers[trigger.function],
                interval=self.schedule_seconds,
                timeout_seconds=specs[trigger.function].timeout,
                rule=f"local-{trigger.function}{trigger.event}",
            ).start()
            self.schedules[trigger.function] = runner
            self._stoppers.append(runner.stop)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the template's queues, taken out of them (for load runs and tests)."""
        import boto3

        sqs = boto3.client("sqs")
        bodies = []
        for logical_id, url in self.physical.items():
            if load_resource_type(logical_id) != "AWS::SQS::Queue":
                continue
            while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                for message in batch:
                    bodies.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    def handoffs(self) -> list[dict[str, Any]]:
        """Every handoff record in the sessions table, for the simulators and the curious."""
        import boto3

        from agent_handoff.storage.dynamo import plain_item

        rows = []
        for table in self._table_streams:
            pages = (
                boto3.client("dynamodb")
                .get_paginator("scan")
                .paginate(
                    TableName=self.physical[table],
                    FilterExpression="kind = :handoff",
                    ExpressionAttributeValues={":handoff": {"S": "handoff"}},
                )
            )
            rows += [plain_item(item) for page in pages for item in page["Items"]]
        return rows

    def stop(self) -> None:
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception:
                logging.getLogger(__name__).exception("stopping %s failed", stopper)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def banner(self) -> str:
        public = self.env.get("PUBLIC_BASE_URL", self.url)
        lines = [
            "Local stack running (Ctrl-C stops it).",
            "",
            "Paste into Twilio (through a tunnel to this port):",
            f"  Messaging webhook  POST {public}/sms",
            f"  Voice webhook      POST {public}/voice",
            f"  ConversationRelay  {self.env['RELAY_WEBSOCKET_URL']}   (the TwiML from /voice names it)",
            "",
            f"Gateway:          {self.url}",
            f"Agent desk:       {self.url}/desk   (the human side: handoffs, transcripts, Release)",
            f"AWS (moto):       {self.aws_url}   tables and queues from template.yaml",
            f"Studio recorder:  {self.studio.base_url}/   (GET lists the executions it received)"
            if not self.real_twilio or "STUDIO_BASE_URL" in self.env
            else "Studio:           the real Executions API (your credentials)",
            f"Credentials:      {'your TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN' if self.real_twilio else 'the samples of events/env.json'}",
            f"LLM provider:     {self.env.get('LLM_PROVIDER', 'rules')}",
            f"Release token:    {self.release_token}   (this session's HANDOFF_RELEASE_TOKEN)",
            *(
                [
                    f"Faults:           on purpose: 1 in {self.faults.throttle_every} AWS calls throttled, "
                    f"1 in {self.faults.studio_5xx_every} Studio requests 503, "
                    f"1 in {self.faults.kill_every} invocations killed"
                ]
                if self.faults is not None
                else []
            ),
            "",
            "Try it from another terminal (they find this stack; URL=... points them elsewhere):",
            "  make sms                    a customer texting; /release gives the conversation back to the agent",
            "  make call                   a caller on ConversationRelay",
            "  make release CUSTOMER=last  end the hold a handoff put on the last customer's conversation",
            "",
            "The functions' logs follow, one line per event (make local JSON=1 for the raw JSON).",
        ]
        return "\n".join(lines)


def load_resource_type(logical_id: str) -> str:
    from devtools.template import load_template

    return load_template()["Resources"].get(logical_id, {}).get("Type", "")


def _bind(host: str, port: int) -> None:
    """Raise OSError when the gateway could not listen on `port` now."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is no conflict
        probe.bind((host, port))


def _claim_port(host: str, port: int) -> None:
    """Fail before anything starts when the gateway's port is taken, and say what to do."""
    try:
        _bind(host, port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        raise UserError(
            f"port {port} is already in use (another `make local`?): stop it, or choose a free port: "
            f"make local PORT={_free_port_near(host, port)}"
        ) from exc


def _free_port_near(host: str, port: int) -> int:
    """The first port above `port` that binds now (easy to type and remember), else any free one."""
    for candidate in range(port + 1, min(port + 100, 65535) + 1):
        try:
            _bind(host, candidate)
        except OSError:
            continue
        return candidate
    return free_port(host)


def _port(text: str) -> int:
    """PORT= as make passes it; 0 listens on any free port."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UserError(f"PORT must be a port number from 1 to 65535 (got {text!r}): make local PORT=3000", status=2)
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=os.environ.get("LOCAL_PORT", "3000"))
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--faults",
        action="store_true",
        help="throttle 1 in 20 AWS calls, 5xx 1 in 50 Studio requests, kill 1 in 100 invocations",
    )
    parser.add_argument("--json", action="store_true", help="print the functions' raw JSON log lines")
    args = parser.parse_args(argv)
    port = _port(args.port)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.json:
        from devtools.local.logs import HumanLogs

        # The functions' loggers write to sys.stdout as it is when their modules are imported (in start).
        sys.stdout = HumanLogs(sys.stdout)
    from agent_handoff.config import explain
    from agent_handoff.errors import ConfigError

    faults = None
    if args.faults:
        from devtools.local.faults import FaultPlan

        faults = FaultPlan()
    stack = LocalStack(host=args.host, port=port, log_level=args.log_level, faults=faults)
    try:
        stack.start()
    except ConfigError as exc:
        raise UserError(
            f"{explain(exc)}. Fix these variables in your shell (or unset them) and run `make local` again",
            status=2,
        ) from exc
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    state.save_stack(url=stack.url, release_token=stack.release_token, agent_number=stack.env["TWILIO_PHONE_NUMBER"])
    print(stack.banner(), flush=True)
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        print("\nStopping the local stack...", file=sys.stderr, flush=True)
        state.forget_stack()
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, "make local"))
