"""The local stand-in for EventBridge schedules: runs the app's scheduled jobs on a timer.

In AWS each ``@app.schedule`` function is a Lambda that an EventBridge rule
invokes at its rate. Offline, this process imports ``app``, finds the same
functions (Chalice keeps them as ``app.app.event_sources``) and calls each
with a "Scheduled Event" shaped like EventBridge's, every ``--interval``
seconds (shorter than the deployed rates, so that a local market moves). A
job that raises is logged and tried again at the next tick, as a Lambda
invocation that failed would be.

    python -m infra.scheduler --interval 30 --status-file .local/jobs/status.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chalice.app import ScheduledEventConfig

from iot.lifecycle import set_on_signals, write_status

logger = logging.getLogger("infra.scheduler")

DEFAULT_INTERVAL_SECONDS = 30.0


def scheduled_event(name: str, now: datetime.datetime) -> dict[str, Any]:
    """What EventBridge sends a scheduled Lambda (the fields Chalice reads)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{name}"],
        "detail": {},
    }


def scheduled_jobs(module: Any) -> list[tuple[str, Any]]:
    """(name, handler) of every ``@app.schedule`` function of a Chalice app module."""
    jobs = []
    for source in module.app.event_sources:
        if isinstance(source, ScheduledEventConfig):
            jobs.append((source.name, getattr(module, source.handler_string.split(".")[-1])))
    return jobs


class Scheduler:
    def __init__(self, jobs: list[tuple[str, Any]], interval: float, status_path: Path | None):
        self.jobs = jobs
        self.interval = interval
        self.status_path = status_path
        self.stopping = threading.Event()
        self.status: dict[str, dict[str, Any]] = {
            name: {"runs": 0, "failures": 0, "last": None, "last_error": None} for name, _ in jobs
        }

    def tick(self) -> None:
        for name, handler in self.jobs:
            if self.stopping.is_set():
                return
            record = self.status[name]
            started = time.monotonic()
            try:
                result = handler(scheduled_event(name, datetime.datetime.now(datetime.UTC)), None)
            except Exception as exc:  # a failed invocation: logged, retried next tick
                record["failures"] += 1
                record["last_error"] = f"{type(exc).__name__}: {exc}"
                logger.exception("scheduled job %s failed", name)
            else:
                record["last"] = result
                record["last_error"] = None
                logger.info("%s: %s", name, json.dumps(result, default=str))
            record["runs"] += 1
            record["seconds"] = round(time.monotonic() - started, 3)
        self.write_status()

    def write_status(self) -> None:
        if self.status_path is None:
            return
        write_status(self.status_path, self.status)

    def run(self) -> None:
        self.write_status()
        while not self.stopping.is_set():
            self.tick()
            self.stopping.wait(self.interval)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.scheduler", description=__doc__)
    parser.add_argument("--app", default="app", help="module holding the Chalice app")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_SECONDS)
    parser.add_argument("--status-file", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    scheduler = Scheduler(
        scheduled_jobs(importlib.import_module(args.app)), args.interval, args.status_file
    )

    set_on_signals(scheduler.stopping)
    logger.info("running %s every %ss", ", ".join(n for n, _ in scheduler.jobs), args.interval)
    scheduler.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
