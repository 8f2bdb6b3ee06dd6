"""One way to start and stop the local servers (``with Server(...) as running:``), and
the status files their processes write."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self


class StartStop:
    """A context manager over ``start()`` and ``stop()``; ``stop()`` runs whatever happened."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def set_on_signals(stopping: threading.Event) -> None:
    """SIGTERM (the stack stopping its processes) and SIGINT (Ctrl-C) set ``stopping``:
    a long-running process finishes its current step and stops cleanly."""

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def write_status(path: Path, status: Mapping[str, Any]) -> None:
    """Replace a process's status file whole: a reader never sees half of it."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(status, indent=1, sort_keys=True, default=str) + "\n")
    temporary.replace(path)


def read_status(path: Path) -> dict[str, Any]:
    """The status a process last wrote ({} before it wrote any)."""
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return status
