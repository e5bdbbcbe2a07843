"""Micro-benchmark of the send-time sender check (``SenderIndex.check``): prints ns per check.

Run: .venv/bin/python bench/senderid_check.py [--n 200000] [--tenants 1000]

Builds an index with ``tenants`` tenants, each approved for a sender in 10 registration countries, then
times each path of ``check`` on a warm index (format results cached): approved sender, unregistered sender
refused, country without registration, fallback used, and a template-country message matched against 5
templates. Bounded: it does ``n`` checks per path and stops.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from senderid import Approval, SenderIndex, Template, load_rules

COUNTRIES = ("AE", "ID", "SA", "SG", "PH", "VN", "TH", "NG", "KE", "IN")
TEMPLATES = (
    *(Template(f"t{i}", f"Message kind {i}: your code is {{#numeric#}}.") for i in range(4)),
    Template("otp", "Your {#var#} code is {#numeric#}. Do not share it."),
)


def timed(n: int, fn: Callable[[], object]) -> float:
    for _ in range(min(n, 1000)):
        fn()
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--tenants", type=int, default=1000)
    args = ap.parse_args()
    rules = load_rules()
    approvals = [
        Approval(f"t{i}", f"BRAND{i % 1000}", c, templates=TEMPLATES if c == "IN" else ())
        for i in range(args.tenants)
        for c in COUNTRIES
    ]
    start = time.perf_counter()
    index = SenderIndex(rules, approvals, {f"t{i}": "+4915123456789" for i in range(args.tenants)})
    build_ms = (time.perf_counter() - start) * 1000
    cold = SenderIndex(rules, approvals, cache_size=1)  # every check misses the caches
    text = "Your Acme code is 482913. Do not share it."
    cases: dict[str, Callable[[], object]] = {
        "approved sender (AE)": lambda: index.check("t7", "BRAND7", "AE"),
        "unregistered, refused (AE)": lambda: index.check("t7", "OTHER", "AE"),
        "no registration needed (DE)": lambda: index.check("t7", "OTHER", "DE"),
        "fallback used (ES)": lambda: index.check("t7", "OTHER", "ES"),
        "template matched (IN, 5 templates)": lambda: index.check("t7", "BRAND7", "IN", text),
        "approved, caches cold (AE)": lambda: (
            cold.check("t7", "BRAND7", "AE"),
            cold.check("t8", "BRAND8", "AE"),
        ),
        "refused, caches cold (AE)": lambda: (
            cold.check("t7", "OTHER", "AE"),
            cold.check("t8", "OTHER", "AE"),
        ),
    }
    print(f"index: {len(approvals)} approvals, built in {build_ms:.1f} ms")
    for name, fn in cases.items():
        d = fn()
        per = 2 if isinstance(d, tuple) else 1  # the cold cases alternate two keys per call
        code = d[0].code if isinstance(d, tuple) else getattr(d, "code", "?")
        print(f"{name:<38} {timed(args.n, fn) / per:8.0f} ns/check   ({code})")


if __name__ == "__main__":
    main()
