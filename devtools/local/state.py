"""What a local session leaves for the next command: the running stack's release token, the last numbers.

Kept in .local-stack/ at the repository's root (git-ignored; LOCAL_STATE_DIR moves it, as tests do):
- stack.json: the URL, agent number and generated HANDOFF_RELEASE_TOKEN of the running
  `make local`, written when it listens and removed when it stops, readable by its owner only;
- numbers.json: the last customer (`make sms`) and caller (`make call`), for CUSTOMER=last.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

from devtools.cli import UserError
from devtools.template import ROOT

NEW, LAST = "new", "last"
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def state_dir() -> Path:
    return Path(os.environ.get("LOCAL_STATE_DIR") or ROOT / ".local-stack")


def _read(name: str) -> dict[str, Any]:
    try:
        value = json.loads((state_dir() / name).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write(name: str, value: dict[str, Any]) -> None:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    # Owner-only from the start: the file may hold the session's release token.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(value, handle, indent=2)


def save_stack(*, url: str, release_token: str, agent_number: str) -> None:
    _write("stack.json", {"url": url, "release_token": release_token, "agent_number": agent_number, "pid": os.getpid()})


def forget_stack() -> None:
    if _read("stack.json").get("pid") == os.getpid():
        (state_dir() / "stack.json").unlink(missing_ok=True)


def running_stack() -> dict[str, Any]:
    """The running `make local`'s session ({} when none left its file)."""
    return _read("stack.json")


def fresh_number() -> str:
    """A number in the 555-0100..0199 block, which North America keeps for fiction in every area code."""
    area = random.choice([n for n in range(201, 990) if n % 100 != 11])  # N11 codes are services
    return f"+1{area}5550{random.randint(100, 199)}"


def choose_number(role: str, wanted: str | None) -> str:
    """'new' (or nothing): a fresh number; 'last': the one `role` used last time; else the number given.

    Not remembered yet: a session remembers its number once the stack has answered it (`remember`),
    so one that reached no stack leaves CUSTOMER=last on the number a handoff may be holding.
    """
    wanted = (wanted or NEW).strip()
    if wanted.lower() == NEW:
        number = fresh_number()
    elif wanted.lower() == LAST:
        number = _read("numbers.json").get(role, "")
        if not number:
            raise UserError(f"no last {role} number yet: leave it out for a fresh one, or give one (+14155550100)")
    elif E164.fullmatch(wanted):
        number = wanted
    else:
        raise UserError(f"the {role} number must be E.164 like +14155550100, 'new' or 'last' (got {wanted!r})")
    return number


def remember(role: str, number: str) -> None:
    numbers = _read("numbers.json")
    numbers[role] = number
    _write("numbers.json", numbers)
