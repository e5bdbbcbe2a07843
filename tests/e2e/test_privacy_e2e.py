"""Compliance as an operator meets it: real processes, real files."""

from __future__ import annotations

import asyncio
import glob
import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

import aiohttp

from tests.conftest import free_port
from tests.e2e.procs import Procs, get_json, sim_config, spread, wait_until


def config(port: int, sim_port: int, extra: str = "") -> str:
    return sim_config(port, sim_port, carrier="batch_max = 50", extra=extra)


async def traffic(base: str, key: str, sim: str, numbers: list[str]) -> list[str]:
    """OTPs to every number, verify half, a transactional message and an event each; returns the codes."""
    codes = []
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {key}"}) as s:
        ids = []
        for to in numbers:
            async with s.post("/v1/otp", json={"to": to}) as r:
                assert r.status == 202, await r.text()
                ids.append((await r.json())["id"])
            async with s.post(
                "/v1/messages", json={"to": to, "sender_id": "ACME", "body": "Parcel 42 shipped"}
            ) as r:
                assert r.status == 202, await r.text()
        async with aiohttp.ClientSession() as plain:
            for i, (to, oid) in enumerate(zip(numbers, ids, strict=True)):
                for _ in range(100):
                    async with plain.get(f"{sim}/inbox?to={quote(to)}") as r:
                        texts = [m["text"] for m in await r.json() if "code" in m["text"]]
                    if texts:
                        break
                    await asyncio.sleep(0.05)
                code = re.search(r"\b(\d{6})\b", texts[0]).group(1)  # type: ignore[union-attr]
                codes.append(code)
                if i % 2 == 0:
                    async with s.post(f"/v1/otp/{oid}/verify", json={"code": code}) as r:
                        assert r.status == 200
                    async with s.post("/v1/events", json={"otp_id": oid, "event": "signup"}) as r:
                        assert r.status == 202
        async with s.post("/v1/privacy/export", json={"phone": numbers[0]}) as r:
            assert r.status == 200
        async with s.post("/v1/privacy/erasure", json={"phone": numbers[1]}) as r:
            assert r.status == 200
    return codes


def test_nothing_in_clear_in_files_logs_or_metrics(procs: Procs) -> None:
    sim_port = procs.sim_carrier()
    port = free_port()
    procs.gateway(port, config(port, sim_port))
    key = procs.tenant(scopes="send,verify,admin")
    numbers = [spread(n) for n in range(3, 40, 3)] + ["+33612345678", "+447400123456"]
    codes = asyncio.run(traffic(f"http://127.0.0.1:{port}", key, f"http://127.0.0.1:{sim_port}", numbers))
    metrics = asyncio.run(_get(f"http://127.0.0.1:{port}/metrics"))
    procs.stop_all()
    blobs = {Path(f).name: Path(f).read_bytes() for f in glob.glob(str(procs.workdir / "smsgw.db*"))}
    blobs["gw.log"] = (procs.workdir / "gw.log").read_bytes()
    blobs["metrics"] = metrics.encode()
    for name, blob in blobs.items():
        for to in numbers:
            national = to[3:] if to.startswith(("+4", "+3")) else to[2:]
            assert to[1:].encode() not in blob and national.encode() not in blob, (
                f"a number in clear in {name}"
            )
        if not name.startswith("smsgw.db"):  # in binary pages a 6-digit run can occur by chance
            for code in codes:
                assert not re.search(rb"(?<!\d)" + code.encode() + rb"(?!\d)", blob), (
                    f"a code in clear in {name}"
                )


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return await r.text()


def test_audit_verify_detects_an_edited_or_removed_record(procs: Procs) -> None:
    for name in ("a", "b", "c"):
        procs.tenant(name)
    ok = procs.smsgw("audit", "verify")
    assert ok.returncode == 0 and "3 record(s)" in ok.stdout
    db = sqlite3.connect(procs.workdir / "smsgw.db")
    try:
        db.execute("UPDATE audit SET details = '{}' WHERE seq = 2")
        raise AssertionError("the audit table took an UPDATE")
    except sqlite3.DatabaseError as e:
        assert "append-only" in str(e)
    # someone with the file drops the guard and edits a record
    db.execute("DROP TRIGGER audit_append_only")
    db.execute("""UPDATE audit SET details = replace(details, '"b"', '"mallory"') WHERE seq = 2""")
    db.commit()
    bad = procs.smsgw("audit", "verify")
    assert bad.returncode == 1 and "record 2" in bad.stdout and "edited" in bad.stdout
    # removing a record from the middle breaks the links
    db.execute("""UPDATE audit SET details = replace(details, '"mallory"', '"b"') WHERE seq = 2""")
    db.commit()
    assert procs.smsgw("audit", "verify").returncode == 0
    db.execute("DELETE FROM audit WHERE seq = 2")
    db.commit()
    db.close()
    gone = procs.smsgw("audit", "verify")
    assert gone.returncode == 1 and "record 3" in gone.stdout


def test_residency_keeps_mapped_countries_in_their_region_file(procs: Procs) -> None:
    sim_port = procs.sim_carrier()
    port = free_port()
    ru_db, eu_db = procs.workdir / "ru.db", procs.workdir / "eu.db"
    extra = f"""
[residency]
regions = {{ ru = "{ru_db}", eu = "{eu_db}" }}
countries = {{ RU = "ru", DE = "eu" }}
copy_to_control = ["RU"]
"""
    procs.gateway(port, config(port, sim_port, extra))
    key = procs.tenant(scopes="send,verify,admin")
    ru, de, fr = "+79161234567", "+4915123456789", "+33612345678"

    async def go() -> dict[str, str]:
        ids = {}
        async with aiohttp.ClientSession(
            f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as s:
            for to in (ru, de, fr):
                async with s.post("/v1/otp", json={"to": to}) as r:
                    assert r.status == 202
                    ids[to] = (await r.json())["id"]
            for oid in ids.values():
                async with s.get(f"/v1/otp/{oid}") as r:
                    assert r.status == 200
            async with s.post("/v1/privacy/export", json={"phone": ru}) as r:
                exported = await r.json()
                assert [o["id"] for o in exported["otps"]] == [ids[ru]]
                assert [c["id"] for c in exported["residency_copies"]] == [ids[ru]]
        return ids

    ids = asyncio.run(go())
    assert (
        ids[ru].startswith("otp_ru_")
        and ids[de].startswith("otp_eu_")
        and re.fullmatch(r"otp_[0-9a-f]{28}", ids[fr])
    )
    wait_until(lambda: get_json(f"http://127.0.0.1:{sim_port}/stats")["received"] == 3, 10, "three messages")
    procs.stop_all()

    def otp_ids(path: Path) -> set[str]:
        with sqlite3.connect(path) as db:
            return {r[0] for r in db.execute("SELECT id FROM otps")}

    assert otp_ids(ru_db) == {ids[ru]} and otp_ids(eu_db) == {ids[de]}
    assert otp_ids(procs.workdir / "smsgw.db") == {ids[fr]}
    with sqlite3.connect(procs.workdir / "smsgw.db") as db:  # Russia: local first, then a copy
        assert [r[0] for r in db.execute("SELECT id FROM residency_copies")] == [ids[ru]]
        assert not list(db.execute("SELECT id FROM messages WHERE country IN ('RU', 'DE')"))


def test_key_rotation_under_load_loses_nothing(procs: Procs) -> None:
    sim_port = procs.sim_carrier()
    port = free_port()
    procs.gateway(port, config(port, sim_port))
    key = procs.tenant(scopes="send,verify,admin")
    numbers = [spread(n) for n in range(60)]

    async def send(batch: list[str]) -> list[str]:
        async with aiohttp.ClientSession(
            f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as s:
            out = []
            for to in batch:
                async with s.post("/v1/otp", json={"to": to}) as r:
                    assert r.status == 202
                    out.append((await r.json())["id"])
            return out

    first = asyncio.run(send(numbers[:30]))
    import subprocess
    import sys

    rotate = subprocess.Popen(
        [sys.executable, "-m", "gateway", "keys", "rotate", "--batch", "5"],
        env=procs.env,
        cwd=procs.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second = asyncio.run(send(numbers[30:]))  # while the rotation runs
    _out, err = rotate.communicate(timeout=60)
    assert rotate.returncode == 0, err
    assert "re-encrypting control" in err  # the progress bar

    async def check() -> None:
        async with aiohttp.ClientSession(
            f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as s:
            for oid in first + second:
                async with s.get(f"/v1/otp/{oid}") as r:
                    assert r.status == 200 and (await r.json())["to_masked"].startswith("+49")

    asyncio.run(check())
    wait_until(lambda: get_json(f"http://127.0.0.1:{port}/readyz")["status"] == "ready", 5, "ready")
    procs.stop_all()
    with sqlite3.connect(procs.workdir / "smsgw.db") as db:
        keys = [r[0] for r in db.execute("SELECT key_id FROM keyring")]
        assert keys == [1, 2]
        old = db.execute("SELECT COUNT(*) FROM otps WHERE substr(phone_enc, 2, 4) = x'00000001'").fetchone()[
            0
        ]
    # values sealed by the gateway before it loaded key 2 may remain under key 1; both stay readable
    assert old <= len(second)
    assert procs.smsgw("audit", "verify").returncode == 0
