"""Label selector syntax, checked before any request so a typo is exit 2, not an empty list."""

from __future__ import annotations

import re

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
KEY = re.compile(rf"({_PREFIX}/)?{_NAME}")
VALUE = re.compile(rf"({_NAME})?")
_TERM = re.compile(
    r"\s*(?P<neg>!)?\s*(?P<key>[^\s!=,()]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)|\s(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?\s*"
)


def selector_problem(selector: str) -> str | None:
    """Why selector is not a valid Kubernetes label selector, or None."""
    if not selector.strip():
        return "it is empty (it would select every Service of the remote cluster)"
    for term in re.split(r",(?![^()]*\))", selector):
        match = _TERM.fullmatch(term)
        if not match:
            return (
                f"cannot read {term.strip()!r} (use key=value, key!=value, key, !key, key in (a,b))"
            )
        key = match["key"]
        if not KEY.fullmatch(key) or len(key.split("/")[-1]) > 63:
            return f"{key!r} is not a valid label key"
        if match["neg"] and (match["op"] or match["set"]):
            return f"{term.strip()!r}: '!' takes a key alone"
        values = (
            [match["value"]]
            if match["op"]
            else (match["values"] or "").split(",")
            if match["set"]
            else []
        )
        for value in values:
            if not VALUE.fullmatch(value.strip()):
                return (
                    f"{value.strip()!r} is not a valid label value "
                    "(at most 63 characters: alphanumerics, '-', '_', '.')"
                )
    return None
