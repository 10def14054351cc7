"""The folders are the architecture: a lower layer never imports a higher one.

Each package's folder is a layer with a list of the layers it may import (its __init__ says the
same in words). Handlers in functions/ are the top and may import anything; inside the core,
only `webhook_handler` (the handlers' shared shape), `snapshot` and `cold_start` (their start) may import `wiring`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "layers" / "core" / "python"

FOUNDATION = {
    "errors",
    "masking",
    "log_context",
    "handoff",
    "config",
    "deadline",
    "payload_limits",
    "pan_redaction",
    "signing",
    "transcript_link",
    "keepers",
}
CORE_RULES = {
    "foundation": {"foundation"},
    "observability": {"foundation"},
    "storage": {"foundation"},
    "webhooks": {"foundation"},
    "agent": {"foundation", "storage"},
    "sms": {"foundation", "storage", "webhooks", "agent"},
    "voice": {"foundation", "storage", "webhooks", "agent"},
    "delivery": {"foundation", "storage", "webhooks"},
    "transcript": {"foundation", "storage", "webhooks"},
    "wiring": {
        "foundation",
        "observability",
        "storage",
        "webhooks",
        "agent",
        "sms",
        "voice",
        "delivery",
        "transcript",
    },
    "handler": {
        "foundation",
        "observability",
        "storage",
        "webhooks",
        "agent",
        "sms",
        "voice",
        "delivery",
        "transcript",
        "wiring",
    },
}

DEVTOOLS_RULES = {
    "cli": set(),  # how every command ends (devtools/cli.py): any command may use it
    "template": {"template"},
    "samples": {"template", "cli"},
    "fakes": set(),
    "ops": {"cli"},
    "local": {"template", "fakes", "samples", "cli"},
    "phones": {"template", "fakes", "local", "samples", "cli"},
    "bench": {"template", "fakes", "local", "samples", "phones", "cli"},
}


def core_layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "foundation"
    head = parts[0]
    if head in FOUNDATION:
        return "foundation"
    if head in ("webhook_handler", "snapshot", "cold_start"):
        return "handler"
    if head in CORE_RULES:
        return head
    raise AssertionError(f"{module} belongs to no layer: add it to a folder or to tests/test_layering.py")


def devtools_layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts or parts[0] in ("template", "template_functions"):
        return "template"
    if parts[0] in DEVTOOLS_RULES:
        return parts[0]
    raise AssertionError(f"{module} belongs to no folder of devtools: add it to tests/test_layering.py")


def module_name(path: Path, base: Path) -> tuple[str, bool]:
    parts = path.relative_to(base).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imported_modules(source: str, module: str, is_package: bool, top: str, base: Path) -> set[str]:
    """Every module of `top` that `source` imports, relative imports resolved, `from pkg import mod` as pkg.mod."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                target = ".".join(package + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                as_path = base / candidate.replace(".", "/")
                found.add(candidate if as_path.with_suffix(".py").is_file() or as_path.is_dir() else target)
    return found


def violations(base: Path, top: str, layer_of, rules) -> list[str]:
    found = []
    for path in sorted((base / top).rglob("*.py")):
        module, is_package = module_name(path, base)
        layer = layer_of(module)
        for imported in imported_modules(path.read_text(), module, is_package, top, base):
            target = layer_of(imported)
            if target != layer and target not in rules[layer]:
                found.append(f"{module} ({layer}) imports {imported} ({target})")
    return found


def test_core_layers_import_only_downwards():
    assert violations(CORE, "agent_handoff", core_layer, CORE_RULES) == []


def test_devtools_folders_import_only_what_their_folder_allows():
    assert violations(ROOT, "devtools", devtools_layer, DEVTOOLS_RULES) == []


@pytest.mark.parametrize(
    ("module", "source", "layer_of", "rules", "top", "base"),
    [
        ("agent_handoff.storage.dynamo", "from ..voice import relay\n", core_layer, CORE_RULES, "agent_handoff", CORE),
        ("agent_handoff.sms.service", "from .. import wiring\n", core_layer, CORE_RULES, "agent_handoff", CORE),
        (
            "agent_handoff.delivery.dispatch",
            "from ..sms.service import X\n",
            core_layer,
            CORE_RULES,
            "agent_handoff",
            CORE,
        ),
        ("devtools.fakes.llm", "from devtools.local import stack\n", devtools_layer, DEVTOOLS_RULES, "devtools", ROOT),
    ],
)
def test_the_checker_sees_an_upward_import(module, source, layer_of, rules, top, base):
    imported = imported_modules(source, module, False, top, base)
    assert imported, "the import was not resolved"
    layer = layer_of(module)
    assert any(layer_of(m) != layer and layer_of(m) not in rules[layer] for m in imported)


@pytest.mark.parametrize(
    "folder",
    sorted(
        [p for p in (CORE / "agent_handoff").iterdir() if (p / "__init__.py").is_file()]
        + [p for p in (ROOT / "devtools").iterdir() if (p / "__init__.py").is_file()]
    ),
    ids=lambda p: p.name,
)
def test_every_folder_says_what_lives_there_and_what_it_may_import(folder):
    docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    assert docstring.strip(), f"{folder}/__init__.py has no docstring"
    assert "import" in docstring, f"{folder}/__init__.py does not say what it may import"
