"""Label selectors are checked before any request: a typo is exit 2, never an empty list."""

from __future__ import annotations

import pytest

from ksm_sync.selector import selector_problem


@pytest.mark.parametrize(
    "selector",
    ["app=x", "app==x", "app!=x", "mirror", "!mirror", "env in (a, b),tier", "env notin (a)",
     "example.com/mirror=yes", "a=b,c!=d,e"],
)  # fmt: skip
def test_valid(selector: str) -> None:
    assert selector_problem(selector) is None


@pytest.mark.parametrize(
    ("selector", "why"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("a=b=c", "not a valid label value"),
        ("bad key=x", "cannot read"),
        ("x in (a,b", "cannot read"),
        ("app=-x", "not a valid label value"),
        ("-app=x", "not a valid label key"),
        ("!app=x", "'!' takes a key alone"),
    ],
)
def test_invalid(selector: str, why: str) -> None:
    problem = selector_problem(selector)
    assert problem is not None and why in problem
