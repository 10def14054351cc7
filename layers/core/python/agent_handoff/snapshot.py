"""Cold starts a caller never hears: the voice functions' first-request work, done during init.

With SnapStart (the template's VoiceSnapStart) Lambda runs a version's init once, when the version
is published, snapshots it, and resumes every cold start from the snapshot; with provisioned
concurrency (VoiceProvisionedConcurrency) it runs init before traffic arrives. Either way, what
init does no caller waits for, so `prepare` does there what the first request otherwise would:
import the modules the handler imports lazily, load the SDK's service models and endpoint rules,
parse and check the settings. On demand (neither) it does nothing: init is on the caller's time too.

One snapshot starts many execution environments and is kept, so before it:
- no secret is read: the settings are checked from the environment alone, and the Twilio secret
  is read on first use after restore (wiring.settings);
- no AWS client is made (a client resolves the role's credentials when it is made): a throwaway
  one with placeholder keys loads what makes clients slow to create, and the real ones are made
  on first use after restore, from the models already loaded;
- nothing unique is made (no uuid, token or key; nothing is signed) and no connection is opened;
  `random`, seeded when first imported, is seeded again after restore (`restored`).
tests/test_snapshot.py holds the hooks to this, without AWS.
"""

from __future__ import annotations

import importlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from . import wiring

log = logging.getLogger(__name__)

SNAP_START = "snap-start"
PROVISIONED = "provisioned-concurrency"
# The model provider's module, imported before the snapshot too (httpx's import is most of openai's).
PROVIDER_MODULES = {
    "rules": "agent_handoff.agent.rules",
    "openai": "agent_handoff.agent.openai_chat",
    "bedrock": "agent_handoff.agent.bedrock",
}


def prepare(*, modules: Iterable[str], services: Iterable[str], agent: bool = False) -> str:
    """At a handler's import: register or do the warm-up for how Lambda initialises this environment.

    `modules`: what the first request imports; `services`: the AWS clients it makes; `agent`: it
    runs agent turns (the configured provider's module is imported too). Returns what was done:
    "snapshot hooks", "warmed" (provisioned concurrency) or "" (on demand, or no runtime hooks).
    """
    modules, services = tuple(modules), tuple(services)
    kind = wiring.initialization_type()
    if kind == SNAP_START:
        hooks = runtime_hooks()
        if hooks is None:
            return ""
        register_before_snapshot, register_after_restore = hooks
        register_before_snapshot(warm, modules, services, agent)
        register_after_restore(restored)
        return "snapshot hooks"
    if kind == PROVISIONED:
        # No snapshot: the environment stays as it is until it serves, so the secret and the clients are safe now.
        warm(modules, services, agent)
        try:
            wiring.settings()
            wiring.aws_client("dynamodb")
        except Exception:
            # Secrets Manager briefly unavailable must not fail the environment (or the deploy that
            # provisions it): the first request reads the secret, as it does on demand.
            log.warning(
                "the settings from the secret could not be read during init; the first request reads them",
                exc_info=True,
            )
        return "warmed"
    return ""


def warm(modules: tuple[str, ...], services: tuple[str, ...], agent: bool = False) -> None:
    """What the first request would do, minus anything secret or unique (see the module's docstring)."""
    settings = wiring.environment_settings()  # a bad setting fails the version's publication, not a call
    if agent:
        modules = (*modules, PROVIDER_MODULES[settings.llm_provider])
    for name in modules:
        importlib.import_module(name)
    for service in services:
        wiring.preload_client(service)
    log.info("warmed before the snapshot: %d modules, %d AWS service models", len(modules), len(services))


def restored() -> None:
    """After restore: state one snapshot gave many environments must not stay shared."""
    random.seed()  # from the kernel's random source, now this environment's own


def runtime_hooks() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """The Python runtime's snapshot hooks; None where there are none (tests, local runs)."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:  # only Lambda's managed Python runtimes (3.12+) have the module
        return None
    return register_before_snapshot, register_after_restore
