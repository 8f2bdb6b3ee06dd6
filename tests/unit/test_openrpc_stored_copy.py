"""The OpenRPC document is what docs/openrpc.json says, to the byte.

The document is generated from the params and result models; the stored copy
makes every change to it a visible diff. A refactoring of chalicelib/rpc must
leave it alone; a deliberate API change rewrites it (see the message below).
"""

from __future__ import annotations

import difflib
import json

from chalicelib.rpc.methods import openrpc
from chalicelib.rpc.openrpc import REGENERATE, STORED_COPY, canonical_json

MAX_DIFF_LINES = 60


def test_generated_openrpc_document_matches_the_stored_copy() -> None:
    # Given the stored copy and the document generated from the registry
    stored = STORED_COPY.read_text(encoding="utf-8")
    generated = canonical_json(openrpc())

    # Then they are the same text
    if generated != stored:
        diff = list(
            difflib.unified_diff(
                stored.splitlines(),
                generated.splitlines(),
                fromfile="docs/openrpc.json (stored)",
                tofile="generated",
                lineterm="",
            )
        )
        shown = "\n".join(diff[:MAX_DIFF_LINES])
        more = (
            f"\n... ({len(diff) - MAX_DIFF_LINES} more diff lines)"
            if len(diff) > MAX_DIFF_LINES
            else ""
        )
        raise AssertionError(
            "The OpenRPC document differs from docs/openrpc.json.\n"
            "If the API change is deliberate, rewrite the stored copy with\n"
            f"    .venv/bin/{REGENERATE}\n"
            "and commit it with the change; otherwise the change altered the API.\n"
            f"{shown}{more}"
        )


def test_stored_copy_is_canonical_json() -> None:
    # Sorted keys, indent 2 and a final newline: regenerating it never reorders.
    stored = STORED_COPY.read_text(encoding="utf-8")
    assert canonical_json(json.loads(stored)) == stored
