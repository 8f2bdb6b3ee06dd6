"""One run of the CLI: where the marketplace is, the keys directory, and the client."""

from __future__ import annotations

import argparse
import http.client
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from nacl.signing import SigningKey

from energy_client import keyfiles
from energy_client.cli.display import dumps, emit, note
from energy_client.cli.errors import OK, USAGE, CliError
from energy_client.rpc_client import MarketplaceClient, Signer, http_transport

DEFAULT_URL: Final = "http://127.0.0.1:8000/rpc"
DEFAULT_KEYS: Final = "~/.energy-market/keys"
URL_ENV: Final = "ENERGY_MARKET_URL"
KEYS_ENV: Final = "ENERGY_MARKET_KEYS"

ClientFactory = Callable[[str], MarketplaceClient]


class Unreachable(CliError):
    """The marketplace did not answer (refused, timed out, not JSON-RPC)."""

    def __init__(self, url: str, problem: object, *, sent: bool) -> None:
        hints = [
            f"is the marketplace running? `make run` serves it at {DEFAULT_URL}",
            f"elsewhere: pass --url (or set {URL_ENV}) to its JSON-RPC endpoint",
        ]
        super().__init__(f"cannot reach the marketplace at {url}: {problem}", USAGE, hints)
        self.sent = sent  # the request may have arrived even though no answer did


@dataclass(frozen=True)
class KeyStore:
    """The keys directory: one key file ``<name>.key`` per key (energy_client.keyfiles).

    The format of ``.local/operator.key`` (written by ``make run``) and of the
    owner key file ``python -m iot.provision`` reads.
    """

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / f"{name}{keyfiles.KEY_SUFFIX}"

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        suffix = keyfiles.KEY_SUFFIX
        return sorted(p.name[: -len(suffix)] for p in self.directory.glob(f"*{suffix}"))

    def create(self, name: str, key: SigningKey) -> Path:
        path = self.path(name)
        try:
            keyfiles.write_key(path, key)
        except FileExistsError as exc:
            raise CliError(
                f"a key named {name!r} already exists ({path}); not overwriting it",
                hints=["pick another name, or move the old key away first"],
            ) from exc
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror}") from exc
        return path

    def load(self, name: str) -> SigningKey:
        path = self.path(name)
        try:
            key = keyfiles.read_key(path)
            mode = keyfiles.open_mode(path)
        except FileNotFoundError as exc:
            raise CliError(
                f"no key named {name!r} in {self.directory}", USAGE, self._missing_hints(name)
            ) from exc
        except keyfiles.NotASeed as exc:
            raise CliError(str(exc), USAGE) from exc
        except OSError as exc:
            raise CliError(f"cannot read the key {path}: {exc}", USAGE) from exc
        if mode is not None:
            note(f"{path} can be read by other users (mode {mode:04o}); chmod 600 it")
        return key

    def _missing_hints(self, name: str) -> list[str]:
        if name == "operator":
            make = "import the marketplace's operator key: with `make run`, "
            first = f"{make}`keys import operator --seed-file .local/operator.key`"
        else:
            first = (
                f"create one with `keys new {name}`, or bring one with "
                f"`keys import {name} --seed-file FILE`"
            )
        return [
            first,
            f"`keys list` shows the keys in {self.directory} (elsewhere: --keys DIR or {KEYS_ENV})",
        ]

    def signer(self, name: str) -> Signer:
        return Signer(name, self.load(name))


# -- the session: one client, one key store ---------------------------------------------------


def http_client(url: str) -> MarketplaceClient:
    """The client over HTTP; the marketplace id is fetched before the first signed call."""
    try:
        send = http_transport(url)
    except ValueError as exc:
        raise CliError(f"--url: {exc}", USAGE) from exc

    def guarded(body: bytes) -> bytes | None:
        try:
            return send(body)
        except (OSError, http.client.HTTPException) as exc:
            problem = getattr(exc, "reason", None) or exc
            refused = isinstance(problem, ConnectionRefusedError)
            raise Unreachable(url, problem, sent=not refused) from exc

    return MarketplaceClient(guarded, marketplace_id="")


Handler = Callable[["Session", argparse.Namespace], int]


@dataclass
class Session:
    """What every command gets: the client (made on first use), the keys, --json."""

    url: str
    keys: KeyStore
    json: bool
    factory: ClientFactory
    _client: MarketplaceClient | None = field(default=None, repr=False)

    @property
    def client(self) -> MarketplaceClient:
        if self._client is None:
            self._client = self.factory(self.url)
        return self._client

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, signer: Signer | None = None
    ) -> Any:
        client = self.client
        if signer is not None and not client.marketplace_id:
            client.marketplace_id = self._call(client, "energy.getMarketInfo", None, None)[
                "marketplace_id"
            ]
        return self._call(client, method, params, signer)

    def _call(
        self,
        client: MarketplaceClient,
        method: str,
        params: Mapping[str, Any] | None,
        signer: Signer | None,
    ) -> Any:
        try:
            return client.call(method, params, signer)
        except Unreachable as exc:
            if signer is not None and exc.sent:
                exc.hints.append(
                    f"{method} may have reached the marketplace: check before repeating it"
                )
            raise
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not JSON-RPC
            raise CliError(
                f"{self.url} did not answer {method} with a JSON-RPC response",
                USAGE,
                [f"is {self.url} the marketplace's JSON-RPC endpoint (it ends in /rpc)?"],
            ) from exc

    def signer(self, name: str) -> Signer:
        return self.keys.signer(name)

    def pages(
        self,
        method: str,
        params: Mapping[str, Any],
        items: str,
        *,
        limit: int,
        every: bool,
    ) -> dict[str, Any]:
        """Pages of a listing merged into one result: ``limit`` items, or with
        ``every`` all of them, ``limit`` a page.

        A page may be short while the listing goes on (selective filters), so
        it keeps reading until it has ``limit`` items or the cursor ends.
        """
        first: dict[str, Any] = dict(self.call(method, {**params, "limit": limit}))
        found = list(first[items])
        cursor = first["next_cursor"]
        while cursor is not None and (every or len(found) < limit):
            size = limit if every else limit - len(found)
            page = self.call(method, {**params, "limit": size, "cursor": cursor})
            found.extend(page[items])
            cursor = page["next_cursor"]
        return first | {items: found, "next_cursor": cursor}

    def print_json(self, result: Any) -> None:
        emit(dumps(result))

    def show(self, result: Any, as_text: Callable[[Any], str]) -> int:
        """Print a result: its JSON with --json, else ``as_text`` of it."""
        if self.json:
            self.print_json(result)
        else:
            emit(as_text(result))
        return OK


def more(what: str, cursor: str | None) -> None:
    """Say on stderr that a listing goes on past what was shown."""
    if cursor is not None:
        note(f"there are more {what}: --all lists them all")
