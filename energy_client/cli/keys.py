"""``keys``: the Ed25519 keys in the keys directory (new, import, list, show)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nacl.signing import SigningKey

from energy_client import keyfiles
from energy_client.cli.arguments import Commands, key_name
from energy_client.cli.display import LEFT, details, emit, note, table
from energy_client.cli.errors import OK, USAGE, CliError
from energy_client.cli.session import Session


def add_commands(commands: Commands) -> None:
    keys = commands.group("keys", "Ed25519 keys in the keys directory")
    sub = keys.add("new", cmd_keys_new, "generate a key (saved with mode 0600)")
    sub.add_argument("name", type=key_name, metavar="NAME", help="the account it will sign for")
    sub = keys.add("import", cmd_keys_import, "save an existing seed as a key")
    sub.add_argument("name", type=key_name, metavar="NAME")
    sub.add_argument(
        "--seed-file",
        required=True,
        metavar="FILE",
        help="a file holding the 32-byte seed in hex, e.g. .local/operator.key (- for stdin)",
    )
    keys.add("list", cmd_keys_list, "the keys and their public keys")
    sub = keys.add("show", cmd_keys_show, "print a key's public key")
    sub.add_argument("name", type=key_name, metavar="NAME")


def cmd_keys_new(session: Session, args: argparse.Namespace) -> int:
    path = _save(session, args.name, SigningKey.generate())
    if not session.json:
        note(f"keep {path} safe and backed up: it is the only key that signs as {args.name}")
    return OK


def cmd_keys_import(session: Session, args: argparse.Namespace) -> int:
    source = args.seed_file
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        seed = keyfiles.parse_seed(text, "standard input" if source == "-" else source)
    except keyfiles.NotASeed as exc:
        raise CliError(str(exc), USAGE) from exc
    _save(session, args.name, SigningKey(seed))
    return OK


def _save(session: Session, name: str, key: SigningKey) -> Path:
    """Save ``key`` as ``name`` and show what was saved where."""
    path = session.keys.create(name, key)
    public_key = bytes(key.verify_key).hex()
    if session.json:
        session.print_json({"name": name, "public_key": public_key, "path": str(path)})
    else:
        emit(details([("key", name), ("public key", public_key), ("file", f"{path} (0600)")]))
    return path


def cmd_keys_list(session: Session, args: argparse.Namespace) -> int:
    rows: list[dict[str, str]] = []
    for name in session.keys.names():
        path = session.keys.path(name)
        try:
            public_key = bytes(keyfiles.read_key(path).verify_key).hex()
        except (OSError, ValueError):  # NotASeed is a ValueError
            public_key = "(unreadable: not a hex Ed25519 seed)"
        rows.append({"name": name, "public_key": public_key, "path": str(path)})
    if session.json:
        session.print_json(rows)
        return OK
    if not rows:
        emit(f"no keys in {session.keys.directory} (create one with `keys new NAME`)")
        return OK
    emit(table([("KEY", LEFT), ("PUBLIC KEY", LEFT)], ((r["name"], r["public_key"]) for r in rows)))
    return OK


def cmd_keys_show(session: Session, args: argparse.Namespace) -> int:
    public_key = bytes(session.keys.load(args.name).verify_key).hex()
    if session.json:
        path = str(session.keys.path(args.name))
        session.print_json({"name": args.name, "public_key": public_key, "path": path})
    else:
        emit(public_key)  # alone, so that $(... keys show NAME) is the key
    return OK
