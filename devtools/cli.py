"""How every devtools command ends: one clear line and a non-zero status, never a traceback.

A command raises `UserError` for what the person running it must fix (its message says what,
and how); Ctrl-C ends it with "stopped" and 130, as a shell expects; anything unexpected gets
one line naming it. `--debug` or DEBUG=1 (also `make ... DEBUG=1`) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command stopped with Ctrl-C


class UserError(Exception):
    """Something the person must fix; the message is the whole explanation (no traceback)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def debugging(argv: Sequence[str] | None = None) -> bool:
    flag = "--debug" in (sys.argv[1:] if argv is None else argv)
    return flag or os.environ.get("DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def run(main: Callable[[list[str]], int | None], name: str, argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)` (without --debug) and turn every way it can end into a status and a line."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--debug"]
    debug = debugging(argv)
    try:
        return main(args) or 0
    except UserError as exc:
        if debug:
            traceback.print_exc()
        _say(f"{name}: {exc}")
        return exc.status
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        _say(f"\n{name}: stopped (Ctrl-C)")
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, and let Python's last flush go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if debug:
            raise
        _say(f"{name}: unexpected {type(exc).__name__}: {exc} (DEBUG=1 or --debug shows the traceback)")
        return 1


def open_script(path: str) -> TextIO:
    """The file a person named with SCRIPT=, or a line saying why it cannot be read."""
    try:
        return open(path, encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"SCRIPT={path}: the file does not exist (give a path from the repository's root)", 2) from None
    except OSError as exc:
        raise UserError(f"SCRIPT={path}: cannot read it ({exc.strerror})", 2) from None


def _say(line: str) -> None:
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)


def connection_refused(exc: BaseException) -> bool:
    """True for a refused or unreachable loopback connection, however the HTTP library wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionRefusedError, ConnectionResetError)):
            return True
        reason = getattr(current, "reason", None)  # urllib's URLError keeps the OSError here
        if isinstance(reason, BaseException):
            current = reason
            continue
        os_error = getattr(current, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(os_error, BaseException):
            current = os_error
            continue
        current = current.__cause__ or current.__context__
    return False
