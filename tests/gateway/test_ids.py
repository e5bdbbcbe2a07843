"""Ids come from a buffered CSPRNG: every byte handed out once, in threads and across fork()."""

from __future__ import annotations

import os
import re
import threading
import time

from gateway.ids import new_id, random_hex


def test_ids_have_the_kind_region_the_second_and_80_random_bits() -> None:
    assert re.fullmatch(r"otp_[0-9a-f]{28}", new_id("otp"))
    assert re.fullmatch(r"msg_ru_[0-9a-f]{28}", new_id("msg", "ru"))
    before = int(time.time())
    minted = [new_id("msg") for _ in range(1000)]
    assert before <= int(minted[0][4:12], 16) <= int(time.time())
    assert len(set(minted)) == 1000 and len({m[12:] for m in minted}) == 1000
    # in the order they were minted, up to the second: a B-tree takes them at its right edge
    assert [m[4:12] for m in minted] == sorted(m[4:12] for m in minted)
    assert len(random_hex(5000)) == 10000  # larger than the buffer: still served


def test_no_byte_is_handed_out_twice_across_threads() -> None:
    seen: list[list[str]] = [[] for _ in range(4)]

    def mint(out: list[str]) -> None:
        out.extend(random_hex(16) for _ in range(20_000))

    threads = [threading.Thread(target=mint, args=(s,)) for s in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [x for s in seen for x in s]
    assert len(set(every)) == len(every) == 80_000


def test_a_forked_child_does_not_reuse_the_parents_buffer() -> None:
    random_hex(8)  # the buffer now holds unread bytes
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(w, random_hex(16).encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != random_hex(16)


def test_random_below_is_uniform_and_in_range() -> None:
    """Chi-square over 10 buckets (n = 10, where 6 of 16 draws are rejected: a modulo would show bias) and
    the edges of a 6-digit code's range."""
    from collections import Counter

    from gateway.ids import random_below
    from gateway.services.otp import generate_code

    draws = 50_000
    counts = Counter(random_below(10) for _ in range(draws))
    assert set(counts) == set(range(10))
    expected = draws / 10
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 45  # 9 degrees of freedom: p ≈ 1e-6 (a modulo bias would give thousands)
    assert all(0 <= random_below(10**6) < 10**6 for _ in range(10_000))
    assert {random_below(1) for _ in range(100)} == {0}
    codes = [generate_code(6) for _ in range(2000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(set(codes)) > 1990
    assert any(c.startswith("0") for c in codes)  # leading zeros kept, not dropped


def test_the_region_is_read_from_ids_of_both_forms() -> None:
    from gateway.store.router import CONTROL, region_of_id

    assert region_of_id(new_id("msg", "ru")) == "ru"
    assert region_of_id("msg_ru_5a02f9e1c7d3f0a8b6e4") == "ru"  # minted before ids had the time
    assert region_of_id(new_id("msg")) == CONTROL
    assert region_of_id("msg_ru_not-an-id") == CONTROL
