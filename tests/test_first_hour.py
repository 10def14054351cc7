"""A newcomer's first hour (issue #14), as regression tests: each was a way its promises did not hold.

Every command runs as a person runs it, through `make`, in a subprocess (as tests/test_commands.py
does): VENV is a stand-in whose python is this interpreter, so no virtualenv is created or touched.
Where a running stack is needed it is the real LocalStack, in this process, on loopback.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest
from make_runs import TRACEBACK, make, stand_in_venv

from devtools.local.stack import PASS_THROUGH, LocalStack, free_port
from devtools.template import ROOT

# The developer's shell as it was before any stack in this process changed os.environ.
SHELL = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TWILIO_", "DEBUG", "MAKE"))}
for _name in ("LLM_PROVIDER", "HANDOFF_RELEASE_TOKEN", "PYTHONPATH", "CI", *PASS_THROUGH):
    SHELL.pop(_name, None)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    return stand_in_venv(tmp_path_factory.mktemp("venv"))


@pytest.fixture
def environ(tmp_path) -> dict[str, str]:
    return {**SHELL, "CI": "true", "LOCAL_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def stack():
    with LocalStack(port=0, log_level="WARNING", environ=dict(SHELL)) as running:
        yield running


def start_and_watch(command: list[str], env: dict[str, str], *, timeout: float = 150) -> tuple[bool, int | None, str]:
    """Run a long-lived command; (it reached "Local stack running", its exit status or None, its output)."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    killer = threading.Timer(timeout, lambda: os.killpg(process.pid, signal.SIGKILL))
    killer.start()
    lines, listening = [], False
    try:
        for line in process.stdout:
            lines.append(line)
            if "Local stack running" in line:
                listening = True
                break
    finally:
        killer.cancel()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        lines.append(process.stdout.read() or "")
    return listening, (None if listening else process.returncode), "".join(lines)


# -- 1. Ctrl-C at `make call`'s prompt -------------------------------------------------------------


def _read_until(master: int, wanted: str, seconds: float) -> str:
    seen, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline and wanted.encode() not in seen:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    return seen.decode(errors="replace")


def test_ctrl_c_at_the_call_prompt_ends_the_call_at_once(venv, environ, stack):
    """A person at a terminal presses Ctrl-C while `make call` waits for what the caller says.

    Issue #14: Ctrl-C in `make call` must end with one line and a non-zero status. Today the
    phone reads the terminal inside asyncio.run, whose SIGINT handler only cancels the task: the
    blocking read goes on, nothing happens until Enter, and the line typed after Ctrl-C is then
    spoken to the agent before the call stops.
    """
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # as a shell starts a foreground job in a real terminal
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {k: v for k, v in environ.items() if k != "CI"}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-s", "call", f"URL={stack.url}", f"VENV={venv}"],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=controlling_terminal,
    )
    os.close(slave)
    try:
        shown = _read_until(master, "(welcome greeting)", 60)
        shown += _read_until(master, "you> ", 10)
        assert shown.rstrip().endswith("you>"), shown  # the phone is waiting for the caller's words
        os.write(master, b"\x03")  # Ctrl-C, through the terminal's line discipline
        shown += _read_until(master, "stopped (Ctrl-C)", 8)
        stopped = process.poll() is not None or "make call: stopped (Ctrl-C)" in shown
        if not stopped:
            os.write(master, b"I typed this after Ctrl-C\r")  # what a person tries next
            shown += _read_until(master, "stopped (Ctrl-C)", 15)
        assert stopped, f"8 s after Ctrl-C the call is still running; only Enter ends it:\n{shown}"
        assert TRACEBACK not in shown
    finally:
        if process.poll() is None:
            os.killpg(os.getpgid(process.pid), signal.SIGKILL)
        process.wait(timeout=30)
        os.close(master)


# -- 2. `make sms` exits 0 although no message got through -----------------------------------------


def test_make_sms_fails_when_the_stack_refuses_every_message(venv, environ, stack, tmp_path):
    """Issue #14: every failure ends with a non-zero exit. A scripted `make sms` (CI, a demo
    script) whose every message is refused says `[http 403]` and exits 0, while `make call`
    exits 1 for the same refusal."""
    script = tmp_path / "messages.txt"
    script.write_text("what are your hours?\nI want a human\n")

    result = make(venv, environ, "sms", f"URL={stack.url}", f"SCRIPT={script}", TWILIO_AUTH_TOKEN="not-the-token-0123")

    assert result.stdout.count("[http 403]") == 2, result.stdout  # nothing got through
    assert "0 Studio execution(s)" in result.stdout
    assert result.returncode != 0, f"make sms exited 0 after every message was refused:\n{result.stdout}"


class _Failing(http.server.BaseHTTPRequestHandler):
    """A stack whose function fails: 500 on every webhook (as a bad cold start answers)."""

    def do_POST(self) -> None:
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"temporarily unable to process this webhook")

    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_make_sms_fails_when_every_webhook_answers_500(venv, environ, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = tmp_path / "messages.txt"
    script.write_text("hello\n")
    try:
        result = make(venv, environ, "sms", f"URL=http://127.0.0.1:{server.server_port}", f"SCRIPT={script}")
    finally:
        server.shutdown()

    assert "[http 500]" in result.stdout, result.stdout
    assert result.returncode != 0, f"make sms exited 0 although its only message failed:\n{result.stdout}"


# -- 3. `make local` starts with a setting every SMS function then refuses -------------------------


def test_make_local_refuses_an_llm_timeout_the_functions_refuse_at_cold_start(venv, environ):
    """Issue #14: `make local` validates the whole configuration before it listens, "the same checks
    the functions run at cold start". InboundSmsFunction's cold start refuses an LLM_TIMEOUT_SECONDS
    that does not fit its Timeout (20 s less 3.5 s); `make local` does not run that check, listens,
    and every text then gets `[http 500]` with the reason only in the stack's log."""
    env = {**environ, "LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-test", "LLM_TIMEOUT_SECONDS": "20"}

    listening, status, output = start_and_watch(
        ["make", "--no-print-directory", "-s", "local", f"PORT={free_port()}", f"VENV={venv}"], env
    )

    assert not listening, f"make local started with a setting every SMS webhook refuses:\n{output}"
    assert status == 2 and "LLM_TIMEOUT_SECONDS" in output, output


# -- 4. The README's "Faults on purpose" command -----------------------------------------------------


def test_the_readme_faults_command_starts_a_stack_with_faults(venv, environ):
    """README, "Faults on purpose": the documented command starts a stack, and one with faults. (It
    used to be `.venv/bin/python -m devtools.local.stack --faults`, which ended at once with `No
    module named 'agent_handoff'`: nothing put layers/core/python on the path.)"""
    readme = (ROOT / "README.md").read_text()
    faults = readme.split("**Faults on purpose.**", 1)[1].split("\n\n", 1)[0]
    command = faults.split("`", 2)[1]
    assert command == "make local FAULTS=1", faults
    assert "FAULTS=1" in readme.split("## Quick reference", 1)[1].split("\n## ", 1)[0]
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "FAULTS=1" in listed

    listening, status, output = start_and_watch(
        [*command.split(), "--no-print-directory", "-s", f"PORT={free_port()}", f"VENV={venv}"], environ
    )

    assert listening, f"the README's command did not start a stack (exit {status}):\n{output}"
    assert "Faults:           on purpose: 1 in 20 AWS calls throttled" in output, output


def test_a_stack_without_faults_says_nothing_of_them(stack):
    assert stack.fault_injector is None and "Faults:" not in stack.banner()


# -- 5. The free port `make local` names -------------------------------------------------------------


def _two_taken_ports() -> tuple[socket.socket, socket.socket, int]:
    for _ in range(50):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        port = first.getsockname()[1]
        second = socket.socket()
        try:
            second.bind(("127.0.0.1", port + 1))
        except OSError:
            first.close()
            second.close()
            continue
        first.listen()
        second.listen()
        return first, second, port
    pytest.skip("no two consecutive free ports")


def test_a_taken_port_is_refused_with_a_free_one_named(venv, environ):
    """README ("Run it locally"): "a port in use is refused with a free one named". The message
    names PORT+1 without checking it: with 3000 and 3001 both taken (two stacks already running),
    it tells the newcomer to run `make local PORT=3001`, which fails the same way."""
    first, second, port = _two_taken_ports()
    with first, second:
        result = make(venv, environ, "local", f"PORT={port}")
        suggested = result.stderr.split("make local PORT=")[-1].split()[0] if "PORT=" in result.stderr else ""
        assert suggested, result.stderr
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", int(suggested)))
                free = True
            except OSError:
                free = False

    assert free, f"the port it names is in use too: {result.stderr.strip()}"


# -- 6. `make demo` speaks as `make sms` ---------------------------------------------------------------


def test_ctrl_c_in_make_demo_names_make_demo(venv, environ):
    """Issue #14: every command ends with one clear line. `make demo` runs the SMS phone in-process
    and every line it ends with names `make sms` (Ctrl-C: "make sms: stopped (Ctrl-C)"), a command
    the person did not run and that needs a running stack."""
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-s", "demo", f"VENV={venv}"],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.PIPE,  # kept open: the demo waits for the customer's lines
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(12)  # imported and reading its lines (nothing is printed before the first one)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert TRACEBACK not in err, err
    assert "make demo: stopped (Ctrl-C)" in err, err


# -- 7. The same stack by another name -----------------------------------------------------------------


def test_release_finds_the_running_stack_by_localhost(venv, environ, stack):
    """`make local` prints http://127.0.0.1:PORT; a person types URL=http://localhost:PORT. The
    release token is looked up by exact URL, so `make release` (and `/release` in `make sms`) says
    "no release token ... start it with `make local`" about the stack that is running."""
    from devtools.local import state

    os.environ["LOCAL_STATE_DIR"] = environ["LOCAL_STATE_DIR"]
    try:
        state.save_stack(
            url=stack.url, release_token=stack.release_token, agent_number=stack.env["TWILIO_PHONE_NUMBER"]
        )
    finally:
        del os.environ["LOCAL_STATE_DIR"]
    localhost = stack.url.replace("127.0.0.1", "localhost")

    result = make(venv, environ, "release", "CUSTOMER=+14155550123", f"URL={localhost}")

    assert result.returncode == 0, result.stderr  # 404: nothing to release, as with URL=http://127.0.0.1:...
    assert "nothing to release" in result.stdout


# -- 8. CUSTOMER=last after a session that never reached the stack -------------------------------------


@pytest.mark.parametrize(("target", "role"), [("sms", "customer"), ("call", "caller")])
def test_a_phone_that_reached_no_stack_does_not_change_the_last_number(venv, environ, target, role):
    """The tour: "`make sms CUSTOMER=last` comes back as the same customer" (and `make release
    CUSTOMER=last` releases them). A `make sms` that reached no stack (wrong URL, stack not up yet)
    used to record its fresh number as the last customer, so `make release CUSTOMER=last` then
    released a number that never texted ("nothing to release", exit 0) and the held one stayed held."""
    from devtools.local import state

    held = "+14155550142"
    os.environ["LOCAL_STATE_DIR"] = environ["LOCAL_STATE_DIR"]
    try:
        state.remember(role, held)  # the customer a handoff put on hold
    finally:
        del os.environ["LOCAL_STATE_DIR"]

    failed = make(venv, environ, target, f"URL=http://127.0.0.1:{free_port()}")
    assert failed.returncode != 0 and "nothing answers" in failed.stderr, failed.stderr

    numbers = json.loads((Path(environ["LOCAL_STATE_DIR"]) / "numbers.json").read_text())
    assert numbers[role] == held, f"{role.upper()}=last is now {numbers[role]}, a number that never reached a stack"


def test_a_phone_the_stack_answered_is_remembered_for_next_time(venv, environ, stack, tmp_path):
    script = tmp_path / "messages.txt"
    script.write_text("what are your hours?\n")

    result = make(venv, environ, "sms", f"URL={stack.url}", f"SCRIPT={script}")

    assert result.returncode == 0, result.stderr
    customer = result.stdout.split("You are ", 1)[1].split(",", 1)[0]
    numbers = json.loads((Path(environ["LOCAL_STATE_DIR"]) / "numbers.json").read_text())
    assert numbers == {"customer": customer}


# -- the cheap ones: a mistake is named by the variable the person typed ------------------------------


def command_line(result: subprocess.CompletedProcess) -> str:
    """The command's own last line on stderr (make adds its `make: *** ... Error N` after it)."""
    assert TRACEBACK not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("make: ***")]
    assert lines, result
    return lines[-1]


@pytest.mark.parametrize("port", ["70000", "abc", "-1", "3000.5"])
def test_make_local_names_a_port_that_is_not_one(venv, environ, port):
    result = make(venv, environ, "local", f"PORT={port}")

    line = command_line(result)
    assert line == f"make local: PORT must be a port number from 1 to 65535 (got '{port}'): make local PORT=3000"
    assert "Error 2" in result.stderr and "Local stack running" not in result.stdout


@pytest.mark.parametrize("target", ["sms", "call", "demo"])
def test_a_script_that_does_not_exist_is_named(venv, environ, target):
    result = make(venv, environ, target, "SCRIPT=devtools/scripts/nope.txt", f"URL=http://127.0.0.1:{free_port()}")

    line = command_line(result)
    assert line == f"make {target}: SCRIPT=devtools/scripts/nope.txt: the file does not exist" + (
        " (give a path from the repository's root)"
    )
    assert "Error 2" in result.stderr


@pytest.mark.parametrize(("target", "extra"), [("sms", ()), ("call", ()), ("release", ("CUSTOMER=+14155550123",))])
def test_a_url_without_its_scheme_is_explained(venv, environ, target, extra):
    result = make(venv, environ, target, "URL=localhost:3000", *extra)

    line = command_line(result)
    assert line.startswith(f"make {target}: URL must start with http:// or https://") and "'localhost:3000'" in line
    assert "Error 2" in result.stderr


def test_one_stack_by_any_of_its_loopback_names():
    from devtools.phones.release import same_stack

    assert same_stack("http://127.0.0.1:3000", "http://localhost:3000/")
    assert same_stack("http://[::1]:3000", "http://127.0.0.1:3000")
    assert same_stack("http://localhost", "http://127.0.0.1:80")
    assert not same_stack("http://127.0.0.1:3000", "http://localhost:3001")
    assert not same_stack("http://127.0.0.1:3000", "https://127.0.0.1:3000")
    assert not same_stack("http://127.0.0.1:3000", "http://example.com:3000")


@pytest.fixture
def sam_venv(tmp_path) -> tuple[Path, Path]:
    """A stand-in SAM CLI that records how it was called (`make -o` it: never set up for real)."""
    directory, calls = tmp_path / "sam-venv", tmp_path / "sam-calls"
    (directory / "bin").mkdir(parents=True)
    sam = directory / "bin" / "sam"
    sam.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    sam.chmod(0o755)
    return directory, calls


def test_make_build_refuses_an_architecture_it_cannot_build(venv, environ, sam_venv):
    directory, calls = sam_venv

    stand_in = ("-o", str(directory / "bin" / "sam"), f"SAM_VENV={directory}")
    refused = make(venv, environ, "build", "ARCH=amd64", *stand_in)
    accepted = make(venv, environ, "build", "ARCH=x86_64", *stand_in)

    assert refused.returncode == 2 and TRACEBACK not in refused.stderr
    assert "make build: ARCH must be arm64 or x86_64 (got 'amd64')" in refused.stderr, refused.stderr
    # Only the accepted build ran sam, with the architecture asked for.
    assert accepted.returncode == 0, accepted.stderr
    assert calls.read_text().splitlines() == ["build --parameter-overrides Architecture=x86_64"]


def test_make_demo_logs_shows_the_functions_log_lines_as_the_readme_says(venv, environ):
    readme = (ROOT / "README.md").read_text()
    assert "`make demo LOGS=1` shows them all" in readme and "--logs" not in readme

    quiet = make(venv, environ, "demo", POWERTOOLS_METRICS_DISABLED="false")
    shown = make(venv, environ, "demo", "LOGS=1", POWERTOOLS_METRICS_DISABLED="false")

    assert quiet.returncode == shown.returncode == 0, quiet.stderr + shown.stderr
    sids = re.compile(r"FN[0-9a-f]{32}")
    assert sids.sub("FN...", quiet.stdout) == sids.sub("FN...", shown.stdout)  # the same conversation either way
    assert "replied" not in quiet.stderr and "metric" not in quiet.stderr
    assert "inbound-sms" in shown.stderr and "replied" in shown.stderr and "metric Turns +1" in shown.stderr
