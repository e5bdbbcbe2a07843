"""Ids come from a buffered CSPRNG: every byte handed out once, in threads and across fork()."""

from __future__ import annotations

import os
import re
import threading

from gateway.ids import new_id, random_hex


def test_ids_have_the_kind_region_and_80_random_bits() -> None:
    assert re.fullmatch(r"otp_[0-9a-f]{20}", new_id("otp"))
    assert re.fullmatch(r"msg_ru_[0-9a-f]{20}", new_id("msg", "ru"))
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
