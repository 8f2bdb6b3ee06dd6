"""signing.verify answers as pynacl's VerifyKey does, for well-formed and malformed hex.

verify calls pynacl's crypto_sign_open binding directly (no VerifyKey per
call) and keeps each public key's bytes; these tests hold it to what
VerifyKey.verify says about the same key, message and signature.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from chalicelib.domain import signing

KEYS = [SigningKey(bytes([n]) * 32) for n in range(3)]
HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
HEX_SIGNATURE = re.compile(r"^(0x)?[0-9a-fA-F]{128}$")


def pynacl_says(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """The documented rule, on pynacl's public API: hex of the right length, then VerifyKey."""
    if not HEX_KEY.match(public_key_hex) or not HEX_SIGNATURE.match(signature_hex):
        return False
    key = VerifyKey(bytes.fromhex(signing.normalise_hex(public_key_hex)))
    try:
        key.verify(message, bytes.fromhex(signing.normalise_hex(signature_hex)))
    except BadSignatureError:
        return False
    return True


spellings: st.SearchStrategy[Callable[[str], str]] = st.sampled_from(
    [
        lambda h: h,
        lambda h: h.upper(),
        lambda h: "0x" + h,
        lambda h: "0X" + h,  # refused: the prefix is lower case
        lambda h: h + "\n",
        lambda h: h[:-2],
        lambda h: h + "00",
        lambda h: h[:10] + "g" + h[11:],
        lambda h: " " + h,
    ]
)


@given(
    signer=st.sampled_from(KEYS),
    verifier=st.sampled_from(KEYS),
    signed=st.binary(max_size=200),
    tampered=st.booleans(),
    spell_key=spellings,
    spell_signature=spellings,
)
def test_verify_agrees_with_verify_key(
    signer: SigningKey,
    verifier: SigningKey,
    signed: bytes,
    tampered: bool,
    spell_key: Callable[[str], str],
    spell_signature: Callable[[str], str],
) -> None:
    message = signed + b"!" if tampered else signed
    public_key = spell_key(bytes(verifier.verify_key).hex())
    signature = spell_signature(signing.sign(signer, signed))
    expected = pynacl_says(public_key, message, signature)
    assert signing.verify(public_key, message, signature) is expected
    assert signing.verify(public_key, message, signature) is expected  # key bytes kept


def test_a_genuine_signature_verifies_and_a_changed_byte_does_not() -> None:
    key = KEYS[0]
    public = bytes(key.verify_key).hex()
    signature = signing.sign(key, b"reading")
    assert signing.verify(public, b"reading", signature)
    assert not signing.verify(public, b"readinG", signature)
    flipped = format(int(signature[:2], 16) ^ 1, "02x") + signature[2:]
    assert not signing.verify(public, b"reading", flipped)
    assert signing.public_key_bytes(public) == bytes(key.verify_key)
    assert signing.public_key_bytes("zz" * 32) is None
