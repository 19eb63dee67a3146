"""Questions to the tests' CoreDNS through a real DNS client (dnspython), and waits on answers.

CoreDNS learns of a mirror through its informers and caches answers for their TTL (5 s), so a
test asks until the answer it expects comes, within a bound, and fails showing the last answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

TIMEOUT = 30.0


@dataclass(frozen=True)
class Resolver:
    """The CoreDNS at host:port, and the remote domain its ksm-sync block serves."""

    host: str
    port: int
    domain: str

    def name(self, *labels: str) -> str:
        """`<labels>.svc.<domain>`, e.g. name("web", "shop") for a Service shop/web."""
        return ".".join((*labels, "svc", self.domain))

    def ask(self, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        send = dns.query.tcp if tcp else dns.query.udp
        return send(query, self.host, port=self.port, timeout=5)

    def wait(
        self,
        name: str,
        rdtype: str,
        expected: Callable[[dns.message.Message], bool],
        timeout: float = TIMEOUT,
    ) -> dns.message.Message:
        """Asks until expected(answer) holds; fails with the last answer after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.ask(name, rdtype)
            if expected(answer):
                return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} {rdtype}: no expected answer in {timeout:.0f}s; "
                                     f"the last was:\n{answer.to_text()}")  # fmt: skip
            time.sleep(0.25)


def records(answer: dns.message.Message, rdtype: str) -> list[dns.rrset.RRset]:
    return [r for r in answer.answer if r.rdtype == dns.rdatatype.from_text(rdtype)]


def addresses(answer: dns.message.Message) -> set[str]:
    """The A and AAAA addresses in the answer section."""
    return {rd.address for rrset in answer.answer for rd in rrset if hasattr(rd, "address")}


def rcode(answer: dns.message.Message) -> str:
    return dns.rcode.to_text(answer.rcode())


def names(answer: dns.message.Message) -> set[str]:
    """Every owner name in the answer, authority and additional sections, without the dot."""
    return {r.name.to_text(omit_final_dot=True)
            for r in (*answer.answer, *answer.authority, *answer.additional)}  # fmt: skip


def answers_with(addrs: set[str]) -> Callable[[dns.message.Message], bool]:
    """expected(): a NOERROR answer with exactly these addresses."""
    return lambda answer: rcode(answer) == "NOERROR" and addresses(answer) == addrs


def nxdomain(answer: dns.message.Message) -> bool:
    return rcode(answer) == "NXDOMAIN"


def asked(answer: dns.message.Message) -> dns.name.Name:
    return answer.question[0].name
