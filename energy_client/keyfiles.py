"""Ed25519 key files: the one writer and reader of ``<name>.key`` seed files.

A key file holds the key's 32-byte seed as 64 hex digits and a newline, and is
created with mode 0600 (its directory 0700) and never overwritten. The CLI's
keys directory, the local stack's ``.local/operator.key`` and the owner key
file ``python -m iot.provision --owner-key-file`` reads all have this format.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from nacl.signing import SigningKey

from chalicelib.domain import signing

KEY_SUFFIX: Final = ".key"


class NotASeed(ValueError):
    """The text is not an Ed25519 seed written as 64 hex digits."""


def parse_seed(text: str, where: str) -> bytes:
    """A 32-byte seed from 64 hex digits (optional 0x, surrounding space); ``where`` names it."""
    seed_hex = text.strip()
    if signing.is_public_key_hex(seed_hex):  # the same shape: 64 hex digits
        return bytes.fromhex(signing.normalise_hex(seed_hex))
    raise NotASeed(f"{where} does not hold an Ed25519 seed (64 hex digits)")


def write_key(path: Path, key: SigningKey) -> None:
    """Create ``path`` (mode 0600) holding ``key``'s seed.

    Raises FileExistsError when ``path`` exists: a key is never overwritten.
    O_EXCL makes the check and the creation one step, and the mode is set as
    the file is created, so the seed is never readable by others.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as key_file:
        key_file.write(bytes(key).hex() + "\n")


def read_key(path: Path) -> SigningKey:
    """The key in ``path``: OSError when it cannot be read, NotASeed when it is no seed."""
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as exc:
        raise NotASeed(f"{path} does not hold an Ed25519 seed (64 hex digits)") from exc
    return SigningKey(parse_seed(text, str(path)))


def load_or_create_key(path: Path) -> SigningKey:
    """The key in ``path``, generated and written there first if there is none."""
    if not path.exists():
        key = SigningKey.generate()
        try:
            write_key(path, key)
        except FileExistsError:  # another process wrote it first: use that one
            pass
        else:
            return key
    return read_key(path)


def open_mode(path: Path) -> int | None:
    """The file's permission bits when group or others may use it, else None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & 0o077 else None
