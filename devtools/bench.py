"""Benchmarks: what each function costs, measured in one run, reported as ratios. `make bench`.

- cold start: a fresh Python process imports the handler and serves a first event, against
  moto running as a server in this process (so moto's import is not counted), as a ratio to
  the floor: a fresh process that imports boto3, creates a DynamoDB client and makes one call
  to the same server. Median of interleaved pairs.
- AWS calls per request, counted at botocore's `before-send` for each function's event.
- warm latency p50/p99 over repeated invocations in one process.
- deployment size of each function plus its layers, zipped and unzipped, for the arm64 build.
- voice: prompt frame -> first text frame, and post_to_connection calls per reply.
- the reference: importing twilio-agent-connect's handoff tool and server module.

Not part of the test run: timings depend on the machine; read them as ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from devtools import sample
from devtools.template import ROOT
from devtools.template_functions import functions as template_functions

CORE = ROOT / "layers" / "core" / "python"
# Every function of the template, by the folder its Handler names (inbound_sms.app.handler).
FUNCTION_DIRS = {logical_id: spec.module_path.split(".")[0] for logical_id, spec in template_functions().items()}

FLOOR = """
import sys, boto3
boto3.client("dynamodb").get_item(TableName=sys.argv[1], Key={"pk": {"S": "floor"}})
"""

COLD = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import importlib
handler = importlib.import_module(sys.argv[3]).handler
class Context:
    function_name = "bench"; function_version = "$LATEST"; memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"; log_group_name = "bench"; log_stream_name = "bench"
    def get_remaining_time_in_millis(self): return 20000
result = handler(json.load(open(sys.argv[4])), Context())
assert isinstance(result, dict), result
"""

REFERENCE = """
import os
os.environ["TAC_ANALYTICS_DISABLED"] = "true"
import tac.tools.handoff
try:
    import tac.server
except ImportError:
    pass
"""


class Bench:
    def __init__(self, workdir: Path) -> None:
        from moto.server import ThreadedMotoServer

        from devtools.connections import ConnectionsEndpoint
        from devtools.local_stack import free_port
        from devtools.studio_recorder import StudioRecorder

        self.workdir = workdir
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        port = free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.moto.start()
        self.studio = StudioRecorder(username=sample.ACCOUNT_SID, password=sample.AUTH_TOKEN).start()
        self.connections = ConnectionsEndpoint().start()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TWILIO_", "PYTHON"))},
            **sample.environment(),
            **sample.FAKE_AWS,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "STUDIO_BASE_URL": self.studio.base_url,
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": self.connections.url,
            "RELAY_WEBSOCKET_URL": "wss://bench.execute-api.us-east-1.amazonaws.com/live",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("AWS_")})
        import boto3

        from devtools.template import create_queue, create_table

        self.dynamodb = boto3.client("dynamodb")
        create_table(self.dynamodb, "SessionsTable", sample.TABLE_NAME)
        self.env["DEAD_LETTER_QUEUE_URL"] = create_queue(boto3.client("sqs"), "DispatchDeadLetterQueue", "bench-dlq")

    def close(self) -> None:
        self.connections.stop()
        self.studio.stop()
        self.moto.stop()

    # -- events: fresh ids each time, so no run is a duplicate of another ---------------

    def event(self, logical_id: str) -> dict[str, Any]:
        from devtools.events import action_params, call_params, http_api_event, sms_params, ws_message_event

        token = sample.AUTH_TOKEN
        if logical_id == "InboundSmsFunction":
            customer = f"+1415{uuid.uuid4().int % 10**7:07d}"
            params = sms_params(account_sid=sample.ACCOUNT_SID, body="What are your opening hours?", customer=customer)
            return http_api_event("/sms", params, auth_token=token)
        if logical_id == "IncomingCallFunction":
            params = call_params(
                account_sid=sample.ACCOUNT_SID,
                call_sid="CA" + uuid.uuid4().hex,
                caller=sample.CUSTOMER_NUMBER,
                agent=sample.AGENT_NUMBER,
            )
            return http_api_event("/voice", params, auth_token=token)
        if logical_id == "VoiceActionFunction":
            params = action_params(
                account_sid=sample.ACCOUNT_SID,
                call_sid="CA" + uuid.uuid4().hex,
                caller=sample.CUSTOMER_NUMBER,
                agent=sample.AGENT_NUMBER,
                session_status="completed",
            )
            return http_api_event("/voice/action", params, auth_token=token)
        if logical_id == "VoiceRelayFunction":
            connection_id = self.bound_connection()
            prompt = {"type": "prompt", "voicePrompt": "What are your opening hours?", "lang": "en-US", "last": True}
            return ws_message_event(connection_id, json.dumps(prompt))
        if logical_id == "HandoffDispatchFunction":
            return self.handoff_record()
        if logical_id == "HandoffReleaseFunction":
            from devtools.make_events import _release

            return _release()
        raise KeyError(logical_id)

    def bound_connection(self) -> str:
        """A call whose setup has been handled: the state a prompt finds."""
        from agent_handoff.call_store import CallStore

        connection_id, call_sid = uuid.uuid4().hex[:12] + "=", "CA" + uuid.uuid4().hex
        CallStore(self.dynamodb, sample.TABLE_NAME).bind_connection(
            call_sid=call_sid,
            connection_id=connection_id,
            session_id="VX1",
            caller=sample.CUSTOMER_NUMBER,
            agent_number=sample.AGENT_NUMBER,
            account_sid=sample.ACCOUNT_SID,
            conversation_id="conv_bench",
            now=int(time.time()),
        )
        return connection_id

    def handoff_record(self) -> dict[str, Any]:
        from devtools.make_events import _dispatch_stream

        event = _dispatch_stream()
        record = event["Records"][0]["dynamodb"]
        handoff_id = "bench-" + uuid.uuid4().hex
        record["NewImage"]["pk"] = {"S": f"HANDOFF#{handoff_id}"}
        record["NewImage"]["handoffId"] = {"S": handoff_id}
        record["NewImage"]["to"] = {"S": f"+1415{uuid.uuid4().int % 10**7:07d}"}
        self.dynamodb.put_item(TableName=sample.TABLE_NAME, Item=record["NewImage"])
        return event

    # -- measurements -------------------------------------------------------------------

    def _run(self, code: str, *args: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, *args], env=self.env, check=True, capture_output=True)
        return time.perf_counter() - started

    def cold_start(self, logical_id: str, pairs: int) -> tuple[float, float, float]:
        """(median ratio to the floor, median seconds, median floor seconds) over interleaved pairs."""
        ratios, own, floor = [], [], []
        for _ in range(pairs):
            path = self.workdir / f"{logical_id}.json"
            path.write_text(json.dumps(self.event(logical_id)))
            floor_seconds = self._run(FLOOR, sample.TABLE_NAME)
            seconds = self._run(COLD, str(ROOT / "functions"), str(CORE), f"{FUNCTION_DIRS[logical_id]}.app", str(path))
            ratios.append(seconds / floor_seconds)
            own.append(seconds)
            floor.append(floor_seconds)
        return statistics.median(ratios), statistics.median(own), statistics.median(floor)

    def reference(self, pairs: int) -> float:
        ratios = []
        for _ in range(pairs):
            floor_seconds = self._run(FLOOR, sample.TABLE_NAME)
            ratios.append(self._run(REFERENCE) / floor_seconds)
        return statistics.median(ratios)

    def warm(self, logical_id: str, invocations: int) -> tuple[dict[str, int], float, float]:
        """AWS calls of one request (by service.operation), then warm p50 and p99 in seconds."""
        import boto3

        from agent_handoff import wiring
        from devtools.lambdas import LambdaContext, load_function

        os.environ.update(self.env)
        wiring.reset()
        handler = load_function(FUNCTION_DIRS[logical_id]).handler
        handler(self.event(logical_id), LambdaContext())  # cold: create clients, read settings
        calls: dict[str, int] = {}

        def count(event_name: str, **_: Any) -> None:
            service, operation = event_name.split(".")[1:3]
            calls[f"{service}.{operation}"] = calls.get(f"{service}.{operation}", 0) + 1

        events = boto3.DEFAULT_SESSION.events if boto3.DEFAULT_SESSION else None
        clients = [wiring.aws_client("dynamodb"), wiring.aws_client("sqs")]
        for client in clients:
            client.meta.events.register("before-send", count)
        management = wiring.management_client("https://unused")
        management.meta.events.register("before-send", count)
        handler(self.event(logical_id), LambdaContext())
        for client in (*clients, management):
            client.meta.events.unregister("before-send", count)
        del events
        timings = []
        for _ in range(invocations):
            event = self.event(logical_id)
            started = time.perf_counter()
            handler(event, LambdaContext())
            timings.append(time.perf_counter() - started)
        timings.sort()
        return calls, timings[len(timings) // 2], timings[min(len(timings) - 1, int(len(timings) * 0.99))]


def deployment_sizes(workdir: Path) -> dict[str, tuple[int, int]]:
    """(zipped, unzipped) bytes of each function plus both layers, built for arm64 as sam build does."""
    built: dict[str, Path] = {}
    for target, directory in (("build-CoreLayer", "layers/core"), ("build-DependenciesLayer", "layers/dependencies")):
        out = workdir / target
        subprocess.run(
            ["make", "-s", target, f"ARTIFACTS_DIR={out}", f"PYTHON={sys.executable}"],
            cwd=ROOT / directory,
            check=True,
            capture_output=True,
        )
        built[target] = out
    layers = [_sizes(built["build-CoreLayer"]), _sizes(built["build-DependenciesLayer"])]
    sizes = {}
    for logical_id in FUNCTION_DIRS:
        out = workdir / logical_id
        subprocess.run(
            ["make", "-s", f"build-{logical_id}", f"ARTIFACTS_DIR={out}"],
            cwd=ROOT / "functions",
            check=True,
            capture_output=True,
        )
        own = _sizes(out)
        sizes[logical_id] = (own[0] + sum(z for z, _ in layers), own[1] + sum(u for _, u in layers))
    return sizes


def _sizes(directory: Path) -> tuple[int, int]:
    buffer = io.BytesIO()
    unzipped = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory))
                unzipped += path.stat().st_size
    return len(buffer.getvalue()), unzipped


def voice_turn(bench: Bench, repeats: int, provider_env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Medians of prompt -> first text frame and prompt -> last frame (seconds), and frames per reply."""
    from agent_handoff import wiring
    from devtools.lambdas import LambdaContext, load_function

    os.environ.update({**bench.env, **(provider_env or {})})
    wiring.reset()
    relay = load_function("voice_relay").handler
    first, last, frames = [], [], []
    try:
        for _ in range(repeats):
            event = bench.event("VoiceRelayFunction")
            arrived: list[float] = []
            bench.connections.on_frame = lambda cid, data, arrived=arrived: arrived.append(time.perf_counter()) or True
            started = time.perf_counter()
            relay(event, LambdaContext())
            bench.connections.on_frame = None
            first.append(arrived[0] - started)
            last.append(arrived[-1] - started)
            frames.append(len(arrived))
    finally:
        for name in provider_env or {}:
            os.environ.pop(name, None)
    return statistics.median(first), statistics.median(last), int(statistics.median(frames))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=7, help="interleaved cold-start pairs per function")
    parser.add_argument("--invocations", type=int, default=300, help="warm invocations per function")
    parser.add_argument("--skip-size", action="store_true", help="do not build the layers to size them")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench = Bench(workdir)
        try:
            print(
                f"{'function':26} {'cold/floor':>10} {'cold s':>8} {'floor s':>8} {'AWS calls':>30} "
                f"{'warm p50 ms':>11} {'p99 ms':>8}"
            )
            for logical_id in FUNCTION_DIRS:
                ratio, seconds, floor = bench.cold_start(logical_id, args.pairs)
                calls, p50, p99 = bench.warm(logical_id, args.invocations)
                summary = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in sorted(calls.items())) or "-"
                print(
                    f"{logical_id:26} {ratio:10.2f} {seconds:8.3f} {floor:8.3f} {summary:>30} "
                    f"{p50 * 1000:11.1f} {p99 * 1000:8.1f}",
                    flush=True,
                )
            print(
                f"\nreference twilio-agent-connect (import handoff tool + server): "
                f"{bench.reference(args.pairs):.2f} x the floor"
            )
            from agent_handoff.speech import clauses
            from devtools.llm_fake import DEFAULT_REPLY, StreamingLlmFake

            first, last, frames = voice_turn(bench, 20)
            print(
                f"\nvoice, rules agent: prompt -> first text frame {first * 1000:.1f} ms, -> last {last * 1000:.1f} ms,"
                f" {frames} frame(s) per reply"
            )
            fake = StreamingLlmFake()
            try:
                env = {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "bench"}
                first, last, frames = voice_turn(bench, 10, env)
            finally:
                fake.stop()
            print(
                f"voice, streaming LLM fake ({len(fake.chunks)} chunks, {fake.delay * 1000:.0f} ms apart): "
                f"prompt -> first text frame {first * 1000:.1f} ms, -> last {last * 1000:.1f} ms; "
                f"{frames} post_to_connection call(s) for a reply of {len(clauses(DEFAULT_REPLY))} clause(s)"
            )
        finally:
            bench.close()
        if not args.skip_size:
            print("\ndeployment size, function + layers, arm64:")
            for logical_id, (zipped, unzipped) in deployment_sizes(workdir).items():
                print(f"  {logical_id:26} {zipped / 1e6:6.1f} MB zipped  {unzipped / 1e6:6.1f} MB unzipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
