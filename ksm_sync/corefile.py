"""The CoreDNS server block that answers a remote cluster's Service names from their mirrors.

A name under the remote domain D is rewritten to its mirror's name in the mirror namespace, the
kubernetes plugin answers it from the local cluster, and every name in the answer (owner names,
SRV and CNAME targets) is rewritten back, so that a client sees only names under D, starting
with the one it asked:

- `<svc>.<ns>.svc.D` A/AAAA: the mirror's cluster IP, or the ready pod IPs of a headless mirror;
- `<hostname>.<svc>.<ns>.svc.D`: that one pod;
- `_<port>._<proto>.<svc>.<ns>.svc.D` SRV: targets under D, with their addresses;
- an ExternalName mirror: its CNAME;
- a Service that is not mirrored, and any other name under D: NXDOMAIN.

The patterns are anchored at both ends and the part before `<svc>` is carried through: the block
in kube-service-mirror's README matched anywhere, so `<hostname>.<svc>.<ns>` lost its hostname
and answered with every pod. Standard library only: scripts/clusters imports it without a
virtual environment.
"""

from __future__ import annotations

import re

from ksm_sync.naming import LABEL, SEPARATOR, prefix_problem
from ksm_sync.ownership import CLUSTER_SET_LABEL, selector

# Before <svc>: nothing, `<hostname>.` or `_<port>._<proto>.`, kept as it is.
HEAD = rf"(_{LABEL}\._{LABEL}\.|{LABEL}\.)?"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def server_block(
    prefix: str,
    mirror_ns: str,
    remote_domain: str | None = None,
    cluster_domain: str = "cluster.local",
    *,
    bind: str | None = None,
    kubeconfig: str | None = None,
) -> str:
    """The server block for remote_domain (default `cluster.<prefix>`). ValueError if an
    argument cannot be part of a name.

    bind and kubeconfig are for a CoreDNS outside the cluster (the tests'): without them the
    kubernetes plugin reads the cluster it runs in, as the cluster's own CoreDNS does.
    """
    remote_domain = (remote_domain or f"cluster.{prefix}").lower().rstrip(".")
    cluster_domain = cluster_domain.lower().rstrip(".")
    if problem := prefix_problem(prefix):
        raise ValueError(f"the prefix is invalid: {problem}")
    if not _DNS_LABEL.fullmatch(mirror_ns):
        raise ValueError(f"the mirror namespace {mirror_ns!r} is not a namespace name")
    for what, domain in (("remote", remote_domain), ("cluster", cluster_domain)):
        if not all(_DNS_LABEL.fullmatch(label) for label in domain.split(".")):
            raise ValueError(f"the {what} domain {domain!r} is not a domain name")
    if within(remote_domain, cluster_domain) or within(cluster_domain, remote_domain):
        raise ValueError(
            f"the remote domain {remote_domain!r} overlaps the cluster domain "
            f"{cluster_domain!r}: its block would answer (and rewrite) the cluster's own "
            "names, an outage of every name in the cluster; choose another "
            "(--remote-domain, or another prefix)"
        )
    local = f"{mirror_ns}.svc.{cluster_domain}."
    asked = rf"^{HEAD}({LABEL})\.({LABEL})\.svc\.{_escape(remote_domain)}\.$"
    mirror = rf"^{HEAD}{prefix}-({LABEL})-{SEPARATOR}-({LABEL})\.{_escape(local)}$"
    back = f"{{1}}{{2}}.{{3}}.svc.{remote_domain}."
    lines = [f"{remote_domain} {{", *([f"    bind {bind}"] if bind else []), "    errors"]
    lines += [
        f"    # <svc>.<ns>.svc.{remote_domain} asks for the mirror of <ns>/<svc>; with <hostname>.",
        "    # in front, for that pod of it; with _<port>._<proto>. in front, for its SRV records",
        "    rewrite stop {",
        f"        name regex {asked} {{1}}{prefix}-{{2}}-{SEPARATOR}-{{3}}.{local}",
        f"        answer name {mirror} {back}",
        f"        answer value {mirror} {back}",
        # and the SOA of a negative answer names the zone that was asked
        f"        answer name ^{_escape(cluster_domain)}\\.$ {remote_domain}.",
        "    }",
        f"    kubernetes {cluster_domain} {{",
        *([f"        kubeconfig {kubeconfig}"] if kubeconfig else []),
        "        endpoint_pod_names",
        f"        labels {selector(prefix)}",
        "    }",
        f"    template ANY ANY {remote_domain} {{",
        "        rcode NXDOMAIN",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


CLUSTERSET_DOMAIN = "clusterset.local"


def clusterset_block(
    cluster_id: str, *, bind: str | None = None, kubeconfig: str | None = None
) -> str:
    """The server block that answers the cluster set's names from this cluster's imports.

    It is CoreDNS's own `kubernetes` plugin (1.12.2 and later) with its `multicluster` option:
    `<svc>.<ns>.svc.clusterset.local` answers the ServiceImport's IPs, or for a headless one
    the ready addresses of every member's slices; `<hostname>.<clusterid>.<svc>...` one pod.
    `labels` keeps the plugin's watches to what this cluster's ksm-sync wrote. CoreDNS needs
    list and watch on serviceimports besides its usual rules.
    """
    lines = [f"{CLUSTERSET_DOMAIN} {{", *([f"    bind {bind}"] if bind else []), "    errors"]
    lines += [
        f"    kubernetes {CLUSTERSET_DOMAIN} {{",
        *([f"        kubeconfig {kubeconfig}"] if kubeconfig else []),
        f"        multicluster {CLUSTERSET_DOMAIN}",
        f"        labels {CLUSTER_SET_LABEL}={cluster_id}",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def within(name: str, domain: str) -> bool:
    """Whether name is domain or a name under it."""
    return name == domain or name.endswith(f".{domain}")


def _escape(name: str) -> str:
    return name.replace(".", r"\.")
