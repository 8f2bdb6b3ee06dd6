"""What a hostile sender can put in JSON, as Hypothesis strategies (shared by the
tests that send it to ingest and to every API method)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Any code point, lone surrogates included: JSON can spell them (\ud800), UTF-8
# cannot hold them, and DynamoDB refuses them.
ANY_TEXT = st.characters(codec=None, exclude_categories=())

# Every scalar JSON has (numbers beyond 64 bits, NaN and Infinity as Python
# writes them, decimals as strings, any text), nested a little.
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str)
    | st.text(ANY_TEXT, max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(ANY_TEXT, max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
