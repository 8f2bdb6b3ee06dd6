"""The local stack's child processes: ports, spawning in process groups, waiting and stopping."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from infra.local.errors import LocalStackError, PortInUseError
from infra.local.options import DEFAULT_HOST
from iot.lifecycle import read_status

DISCOVER_REQUEST = {"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}
# A developer's own AWS settings must not leak into the local stack.
_HOST_AWS_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN")


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise PortInUseError (one readable line) if something listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR ignores sockets in TIME_WAIT, as the servers themselves do.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(what, host, port, exc.strerror) from exc


def free_port(host: str = DEFAULT_HOST) -> int:
    """Return a port that was free a moment ago (for tests that start servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def child_environment(stack_environment: Mapping[str, str], host: str) -> dict[str, str]:
    """The environment of the stack's processes: ours, less AWS settings, plus the stack's."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(_HOST_AWS_SETTINGS)
    }
    environment.update(stack_environment)
    environment["NO_PROXY"] = ",".join(
        filter(None, [environment.get("NO_PROXY", ""), host, "localhost"])
    )
    return environment


def spawn(
    command: Sequence[str],
    *,
    cwd: Path,
    environment: Mapping[str, str],
    output: IO[Any] | None,
) -> subprocess.Popen[bytes]:
    """A child in its own process group, writing to ``output`` (None: our stdout/stderr).

    Its own group: Ctrl-C reaches only us, and stop_process_group() ends the
    child together with whatever it started (chalice's autoreload worker).
    """
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(environment),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        process_group=0,
    )


def python_command(module: str, *arguments: str) -> list[str]:
    """``python -m module arguments...`` with the interpreter running us."""
    return [sys.executable, "-m", module, *arguments]


def chalice_command(
    project_dir: Path, host: str, port: int, stage: str, *, autoreload: bool
) -> list[str]:
    """``chalice local`` serving project_dir on host:port."""
    command = [
        _chalice_executable(),
        "--project-dir",
        str(project_dir),
        "local",
        "--host",
        host,
        "--port",
        str(port),
        "--stage",
        stage,
    ]
    if not autoreload:
        command.append("--no-autoreload")
    return command


def _chalice_executable() -> str:
    beside_python = Path(sys.executable).with_name("chalice")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("chalice")
    if found is None:
        raise LocalStackError("the chalice command is not installed (run `make run`)")
    return found


def wait_until_serving(process: subprocess.Popen[bytes], rpc_url: str, timeout: float) -> None:
    """Return once the JSON-RPC API at rpc_url answers; raise if its process exits first."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = json.dumps(DISCOVER_REQUEST).encode()
    deadline = time.monotonic() + timeout
    while True:
        exit_code = process.poll()
        if exit_code is not None:
            raise LocalStackError(f"chalice local exited with code {exit_code} while starting")
        request = urllib.request.Request(  # noqa: S310 - our own http:// URL
            rpc_url,
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with opener.open(request, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise LocalStackError(
                f"chalice local did not answer at {rpc_url} within {timeout:.0f}s"
            )
        time.sleep(0.1)


def wait_until_reported(
    process: subprocess.Popen[bytes], status_path: Path, key: str, what: str, timeout: float
) -> None:
    """Return once a child's status file says ``key`` is true; raise if it exits first."""
    deadline = time.monotonic() + timeout
    while not read_status(status_path).get(key):
        exit_code = process.poll()
        if exit_code is not None:
            raise LocalStackError(f"{what} exited with code {exit_code} while starting")
        if time.monotonic() > deadline:
            raise LocalStackError(f"{what} did not start within {timeout:.0f}s")
        time.sleep(0.05)


def first_exited(
    components: Callable[[], Sequence[tuple[str, subprocess.Popen[bytes] | None]]],
    poll_seconds: float = 0.5,
) -> tuple[str, int]:
    """Block until one of the named processes exits; return its name and exit code.

    ``components`` is asked again at every poll: a process stopped on purpose
    meanwhile (the demo fleet) is no longer among them.
    """
    while True:
        for name, process in components():
            if process is not None and (code := process.poll()) is not None:
                return name, code
        time.sleep(poll_seconds)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period, and reap the leader."""
    group = process.pid  # process_group=0 made the child its group's leader
    # No grace: SIGKILL at once (a crash, for tests).
    steps = (
        ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)) if grace else ((signal.SIGKILL, 10.0),)
    )
    for sig, timeout in steps:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure nothing it started lives on in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        return
