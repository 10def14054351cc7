"""cold_start.py: no garbage collection during a cold start in Lambda, collection as usual elsewhere."""

from __future__ import annotations

import ast
import gc
import importlib

import pytest

from agent_handoff import cold_start
from devtools.local.lambdas import LambdaContext, load_function
from devtools.samples import sample
from devtools.template import ROOT

FUNCTIONS = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").is_file())


@pytest.fixture
def collector():
    """Whatever a test does to the collector is undone after it."""
    yield
    gc.unfreeze()
    gc.enable()
    cold_start._held = False


def test_outside_lambda_collection_goes_on(monkeypatch, collector):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    importlib.reload(cold_start)
    assert gc.isenabled()


def test_in_lambda_nothing_is_collected_until_the_first_invocation_ends(monkeypatch, collector):
    for key, value in sample.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ai-handoff-HandoffReleaseFunction")
    importlib.reload(cold_start)  # what the handler's first import does in a fresh process
    assert not gc.isenabled()

    handler = load_function("handoff_release").handler
    assert not gc.isenabled()  # importing the handler collects nothing either
    answer = handler({"headers": {}, "body": "customer=%2B14155550100"}, LambdaContext())

    assert answer["statusCode"] in (400, 403)  # refused: it reached no AWS, which is not the point here
    assert gc.isenabled() and gc.get_freeze_count() > 0  # what lived through the cold start is frozen


def test_the_first_invocation_releases_the_collector_even_when_it_fails(monkeypatch, collector):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "f")
    cold_start.hold()

    @cold_start.released_after
    def failing(event, context):
        raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError):
        failing({}, None)
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError):
        failing({}, None)
    assert gc.get_freeze_count() == frozen  # once per container


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_handler_holds_collections_from_its_first_import_to_its_first_answer(function):
    tree = ast.parse((ROOT / "functions" / function / "app.py").read_text())
    ours = [n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("agent_handoff")]
    assert ours[0].module == "agent_handoff" and ours[0].names[0].name == "cold_start"  # before any other of ours
    handler = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "handler")
    assert ast.unparse(handler.decorator_list[0]) == "cold_start.released_after"  # outermost: after everything
