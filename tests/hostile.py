"""What a hostile sender can put in JSON, as Hypothesis strategies (shared by the
tests that send it to ingest, to every API method and to the live events API)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Any code point, lone surrogates included: JSON can spell them (\ud800), UTF-8
# cannot hold them, and DynamoDB refuses them. They are 2,048 of 1.1 million
# code points, so a fair share of the characters drawn are sampled from them
# apart. (Not st.text: it merges such an alphabet into one set of code
# points, each as likely as another, and surrogates all but vanish.)
_ANY_CHARACTER = st.characters(codec=None, exclude_categories=()) | st.sampled_from(
    ["\ud800", "\udbff", "\udc00", "\udfff"]
)


def any_text(max_size: int | None = None) -> st.SearchStrategy[str]:
    """Any string, lone surrogates included."""
    return st.lists(_ANY_CHARACTER, max_size=max_size).map("".join)


# Every scalar JSON has (numbers beyond 64 bits, NaN and Infinity as Python
# writes them, decimals as strings, any text), nested a little.
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str)
    | any_text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def mostly(
    plausible: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any] = JSON_VALUES, odds: int = 3
) -> st.SearchStrategy[Any]:
    """``plausible`` ``odds`` times for each time ``hostile``, so that most calls
    get past the first check to the ones behind it. (``st.one_of`` picks among
    its distinct branches alike: naming one branch three times does not weigh it.)"""
    return st.integers(0, odds).flatmap(lambda n: hostile if n == 0 else plausible)
