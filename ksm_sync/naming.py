"""Mirror names: the shape the CoreDNS rewrite and kube-service-mirror's users rely on."""

from __future__ import annotations

import base64
import functools
import hashlib
import re

SEPARATOR = "6d6972726f720a"  # `echo mirror | xxd -p`, kept from kube-service-mirror
MAX_NAME_LENGTH = 63
LABEL = "[a-z0-9-]+"  # a name or namespace, as the CoreDNS rewrite matches it (lower-cased)

_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def mirror_name(prefix: str, namespace: str, name: str) -> str:
    return f"{prefix}-{name}-{SEPARATOR}-{namespace}"


def mirror_problem(prefix: str, namespace: str, name: str) -> str | None:
    """Why the remote namespace/name cannot have a mirror under prefix, or None if it can.

    Besides being a valid Service name, the mirror name must read back as the remote it
    stands for the way the CoreDNS answer rewrite reads it (the last separator splits
    name from namespace): a namespace holding the separator would make DNS answer a
    question with another name than the one asked.
    """
    mirror = mirror_name(prefix, namespace, name)
    if problem := name_problem(mirror):
        return f"mirror name {mirror!r} is {problem}"
    read = re.fullmatch(rf"{re.escape(prefix)}-({LABEL})-{SEPARATOR}-({LABEL})", mirror)
    if read is None or read.groups() != (name, namespace):
        return (
            f"its namespace holds the mirror separator {SEPARATOR!r}: DNS answers for "
            f"mirror {mirror!r} would name another Service than the one asked"
        )
    return None


def slice_name(mirror: str, source: str) -> str:
    """A mirror's EndpointSlice for the remote slice `source`: the same name every pass."""
    return f"{mirror}-{hashlib.sha256(source.encode()).hexdigest()[:10]}"


@functools.cache  # asked several times per import every pass; a hash each time adds up
def derived_name(namespace: str, name: str) -> str:
    """The derived Service of a ClusterSetIP import: named as mcs-api's reference controllers
    name it (`derived-` and 10 characters of the base32hex SHA-256 of `<namespace>/<name>`)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return "derived-" + base64.b32hexencode(digest).decode().lower()[:10]


def mcs_slice_name(service: str, cluster: str, source: str) -> str:
    """The local copy of member `cluster`'s slice `source` of an exported Service."""
    digest = hashlib.sha256(f"{cluster}/{service}/{source}".encode()).hexdigest()[:10]
    return f"{service}-{cluster}-{digest}"


def name_problem(name: str) -> str | None:
    """Why name cannot be a Service name (a DNS-1035 label), or None if it can."""
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters, over the limit of {MAX_NAME_LENGTH} for a Service name"
    if not _DNS_1035.fullmatch(name):
        return (
            "not a DNS-1035 label (lower-case letters, digits and '-', "
            "starting with a letter, ending with a letter or digit)"
        )
    return None


def prefix_problem(prefix: str) -> str | None:
    """Why prefix cannot start mirror names or be a label value, or None if it can."""
    if not prefix:
        return "it is empty"
    if len(prefix) > MAX_NAME_LENGTH or not _LABEL_VALUE.fullmatch(prefix):
        return "it must be a valid label value (at most 63 characters)"
    if not _DNS_1035.fullmatch(f"{prefix}-a"):
        return (
            "it must start with a lower-case letter and hold only lower-case letters, digits, '-'"
        )
    return None
