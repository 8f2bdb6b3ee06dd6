"""Key files (energy_client/keyfiles.py): the seed file the CLI and the local stack share."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from energy_client import keyfiles


def test_a_written_key_is_its_seed_in_hex_readable_by_its_owner_only(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "keys" / "alice.theblock.key"

    keyfiles.write_key(path, key)

    assert path.read_text(encoding="ascii") == bytes(key).hex() + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keyfiles.open_mode(path) is None
    assert bytes(keyfiles.read_key(path)) == bytes(key)


def test_a_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "operator.key"
    first = SigningKey.generate()
    keyfiles.write_key(path, first)

    with pytest.raises(FileExistsError):
        keyfiles.write_key(path, SigningKey.generate())
    assert bytes(keyfiles.read_key(path)) == bytes(first)


def test_load_or_create_creates_once_then_reads_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "operator.key"

    created = keyfiles.load_or_create_key(path)
    loaded = keyfiles.load_or_create_key(path)

    assert bytes(created) == bytes(loaded)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "text",
    ["", "not hex\n", "ab" * 31 + "\n", "ab" * 33 + "\n", "é" * 64],
)
def test_a_file_that_holds_no_seed_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.key"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(keyfiles.NotASeed, match="does not hold an Ed25519 seed"):
        keyfiles.read_key(path)
    with pytest.raises(keyfiles.NotASeed):
        keyfiles.load_or_create_key(path)


def test_a_seed_may_carry_0x_and_surrounding_space(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "imported.key"
    path.write_text(f"  0x{bytes(key).hex().upper()}\r\n", encoding="ascii")

    assert bytes(keyfiles.read_key(path)) == bytes(key)


def test_a_key_others_can_read_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "loose.key"
    keyfiles.write_key(path, SigningKey.generate())
    path.chmod(0o644)

    assert keyfiles.open_mode(path) == 0o644
