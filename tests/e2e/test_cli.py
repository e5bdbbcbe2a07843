"""The smsgw command as operators use it."""

from __future__ import annotations

import json
import sqlite3

from tests.e2e.procs import Procs


def test_tenant_create_prints_a_key_once_and_stores_only_its_hash(procs: Procs) -> None:
    r = procs.smsgw("tenant", "create", "acme", "--scopes", "send,verify,admin", "--countries", "DE,FR")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["tenant_id"].startswith("tn_") and out["api_key"].startswith("sk_live_")
    blob = b"".join(p.read_bytes() for p in procs.workdir.glob("smsgw.db*"))
    assert out["api_key"].encode() not in blob


def test_tenant_create_refuses_bad_input(procs: Procs) -> None:
    r = procs.smsgw("tenant", "create", "acme", "--scopes", "send,superuser")
    assert r.returncode == 2 and "unknown scope" in r.stderr
    r = procs.smsgw("tenant", "create", "acme", "--countries", "DE,XX")
    assert r.returncode == 2 and "XX" in r.stderr


def test_tenant_create_stores_the_countries_its_users_are_expected_in(procs: Procs) -> None:
    r = procs.smsgw("tenant", "create", "acme", "--countries", "ALL", "--expect", "de, fr")
    assert r.returncode == 0, r.stderr
    tenant = json.loads(r.stdout.strip().splitlines()[-1])["tenant_id"]
    with sqlite3.connect(procs.workdir / "smsgw.db") as db:
        (settings,) = db.execute("SELECT settings FROM tenants WHERE id = ?", (tenant,)).fetchone()
    assert json.loads(settings)["expected_countries"] == ["DE", "FR"]
    r = procs.smsgw("tenant", "create", "acme", "--countries", "ALL", "--expect", "DE,XX")
    assert r.returncode == 2 and "XX" in r.stderr
    r = procs.smsgw("tenant", "create", "acme", "--countries", "DE", "--expect", "DE,FR")
    assert r.returncode == 2 and "outside --countries: FR" in r.stderr
    r = procs.smsgw("tenant", "create", "acme", "--expect", " , ")
    assert r.returncode == 2 and "at least one" in r.stderr


def test_bad_config_exits_2_with_every_problem(procs: Procs) -> None:
    cfg = procs.workdir / "bad.toml"
    cfg.write_text("[server]\nport = 0\n[otp]\nmax_attempts = 0\n")
    r = procs.smsgw("serve", "--config", str(cfg))
    assert r.returncode == 2
    assert "server.port" in r.stderr and "otp.max_attempts" in r.stderr


def test_keys_generate_gives_a_usable_master_key(procs: Procs) -> None:
    r = procs.smsgw("keys", "generate")
    assert r.returncode == 0
    procs.env["SMSGW_MASTER_KEY"] = r.stdout.strip()
    assert procs.smsgw("tenant", "create", "acme").returncode == 0


def test_tenant_key_add_gives_a_second_key_with_other_scopes(procs: Procs) -> None:
    r = procs.smsgw("tenant", "create", "acme", "--scopes", "onboarding")
    tenant = json.loads(r.stdout)["tenant_id"]
    r = procs.smsgw("tenant", "key", "add", tenant, "--scopes", "admin")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tenant_id"] == tenant and out["api_key"].startswith("sk_live_")
    assert procs.smsgw("tenant", "key", "add", "tn_nope", "--scopes", "admin").returncode == 2
    assert procs.smsgw("tenant", "key", "add", tenant, "--scopes", "root").returncode == 2
