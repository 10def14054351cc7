"""snapshot.py: the voice functions' warm-up for SnapStart and provisioned concurrency, without AWS.

The runtime's `snapshot_restore_py` exists only in Lambda; a stand-in records what registers.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import types

import pytest

from agent_handoff import snapshot, wiring
from agent_handoff.errors import ConfigError
from devtools.local.lambdas import load_function
from devtools.samples import sample
from devtools.template import ROOT

VOICE = ("incoming_call", "voice_relay", "voice_action")
OTHERS = ("inbound_sms", "handoff_dispatch", "handoff_release")


@pytest.fixture
def runtime_hooks(monkeypatch):
    registered: dict[str, list] = {"before": [], "after": []}
    module = types.ModuleType("snapshot_restore_py")
    module.register_before_snapshot = lambda fn, *args: registered["before"].append((fn, args))
    module.register_after_restore = lambda fn, *args: registered["after"].append((fn, args))
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", module)
    return registered


def initialised_as(monkeypatch, kind: str) -> None:
    for key, value in sample.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", kind)
    wiring.reset()


def test_without_the_runtime_hooks_the_module_imports_and_registers_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # importing it now fails, as off Lambda
    initialised_as(monkeypatch, "snap-start")
    assert snapshot.runtime_hooks() is None
    assert snapshot.prepare(modules=(), services=("dynamodb",)) == ""


@pytest.mark.parametrize("function", VOICE)
def test_each_voice_function_registers_its_hooks_under_snapstart(monkeypatch, runtime_hooks, function):
    initialised_as(monkeypatch, "snap-start")
    load_function(function)
    assert [fn for fn, _ in runtime_hooks["before"]] == [snapshot.warm]
    assert [fn for fn, _ in runtime_hooks["after"]] == [snapshot.restored]


@pytest.mark.parametrize("function", VOICE + OTHERS)
def test_on_demand_nothing_is_registered_or_warmed(monkeypatch, runtime_hooks, function):
    initialised_as(monkeypatch, "on-demand")
    load_function(function)
    assert runtime_hooks == {"before": [], "after": []}
    assert wiring.settings.cache_info().currsize == 0  # init did no request's work


def test_other_functions_register_nothing_under_snapstart(monkeypatch, runtime_hooks):
    initialised_as(monkeypatch, "snap-start")
    for function in OTHERS:
        load_function(function)
    assert runtime_hooks == {"before": [], "after": []}


BEFORE_SNAPSHOT = r"""
import json, os, secrets, socket, sys, types, uuid
registered = []
hooks = types.ModuleType("snapshot_restore_py")
hooks.register_before_snapshot = lambda fn, *args: registered.append(("before", fn, args))
hooks.register_after_restore = lambda fn, *args: registered.append(("after", fn, args))
sys.modules["snapshot_restore_py"] = hooks
sys.path[:0] = json.loads(sys.argv[1])
import importlib
importlib.import_module(sys.argv[2])  # the function's init: it registers its hooks

from agent_handoff import wiring
import botocore.session

def refuse(what):
    def guard(*args, **kwargs):
        raise AssertionError(what + " before the snapshot")
    return guard

# What must not happen between here and the snapshot.
socket.socket.connect = refuse("a network connection")
uuid.uuid1 = uuid.uuid4 = refuse("a unique id")
secrets.token_bytes = secrets.token_hex = secrets.token_urlsafe = refuse("a token")
os.urandom = refuse("randomness")
wiring._read_secret = refuse("the Twilio secret read")
botocore.session.Session.get_credentials = refuse("AWS credentials resolved")
before = set(sys.modules)
for kind, fn, args in registered:
    if kind == "before":
        fn(*args)
print("RESULT " + json.dumps({
    "hooks": [kind for kind, _, _ in registered],
    "settings kept": wiring.settings.cache_info().currsize,
    "clients kept": wiring.aws_client.cache_info().currsize,
    "imported": sorted(m for m in set(sys.modules) - before if m.startswith("agent_handoff")),
    "models": sorted(wiring.aws_session().get_component("data_loader")._cache),
}))
"""


@pytest.mark.parametrize("function", VOICE)
def test_before_the_snapshot_nothing_secret_or_unique_and_no_connection(function):
    """In a fresh interpreter, as Lambda's init: the Twilio secret is configured and there are no
    AWS credentials, so reading either would trip a guard; so would a uuid, a token or a socket."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        **{k: v for k, v in sample.environment().items() if k not in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")},
        "TWILIO_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:twilio-AbCdEf",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    paths = [str(ROOT / "functions"), str(ROOT / "layers" / "core" / "python"), *sys.path[1:]]
    result = subprocess.run(
        [sys.executable, "-c", BEFORE_SNAPSHOT, json.dumps(paths), f"{function}.app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = json.loads(result.stdout.split("RESULT ", 1)[1])

    assert done["hooks"] == ["before", "after"]
    assert done["settings kept"] == 0 and done["clients kept"] == 0  # made after restore, with the secret
    assert any("dynamodb" in str(key) for key in done["models"])  # what makes the real client quick to create
    if function == "voice_relay":
        assert "agent_handoff.agent.openai_chat" in done["imported"]  # the configured provider


def test_after_restore_each_environment_draws_its_own_random_numbers():
    snapshotted = random.getstate()
    snapshot.restored()
    first = [random.random() for _ in range(3)]
    random.setstate(snapshotted)  # a second environment restored from the same snapshot
    snapshot.restored()
    assert [random.random() for _ in range(3)] != first


def test_a_bad_setting_fails_the_warm_up_so_the_version_is_never_published(monkeypatch):
    initialised_as(monkeypatch, "snap-start")
    monkeypatch.setenv("LLM_PROVIDER", "nonsense")
    with pytest.raises(ConfigError, match="LLM_PROVIDER"):
        snapshot.warm((), (), agent=True)


def test_provisioned_concurrency_warms_at_init_secret_and_clients_included(monkeypatch, aws):
    initialised_as(monkeypatch, "provisioned-concurrency")
    assert snapshot.prepare(modules=("agent_handoff.voice.relay",), services=("dynamodb",), agent=True) == "warmed"
    assert wiring.settings.cache_info().currsize == 1  # no snapshot to keep a secret out of
    assert wiring.aws_client.cache_info().currsize == 1


def test_provisioned_concurrency_survives_a_secret_it_cannot_read_at_init(monkeypatch, aws):
    """Secrets Manager failing during init must not fail the environment (nor the deploy that
    provisions it): the warm-up goes on, and the first request reads the secret."""
    initialised_as(monkeypatch, "provisioned-concurrency")
    monkeypatch.setenv("TWILIO_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    wiring.reset()
    assert snapshot.prepare(modules=("agent_handoff.voice.relay",), services=("dynamodb",), agent=True) == "warmed"
    assert wiring.settings.cache_info().currsize == 0  # not kept: the first request reads it
