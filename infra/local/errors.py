"""The local stack's errors: one base class, and a busy port told in one readable line."""

from __future__ import annotations

# How a person at the terminal picks another port for each server.
_PORT_HINTS = {
    "moto": "--moto-port or MOTO_PORT",
    "API": "--api-port or API_PORT",
    "MQTT": "--mqtt-port or MQTT_PORT",
    "WebSocket": "--ws-port or WS_PORT",
    "web": "--web-port or WEB_PORT",
}


class LocalStackError(RuntimeError):
    """The local stack could not start or stopped unexpectedly."""


class PortInUseError(LocalStackError):
    """A port the local stack needs is already taken."""

    def __init__(self, what: str, host: str, port: int, reason: str | None) -> None:
        hint = _PORT_HINTS.get(what)
        super().__init__(
            f"{what} port {host}:{port} is already in use ({reason or 'bind failed'})"
            + (f"; choose another with {hint}" if hint else "")
        )
