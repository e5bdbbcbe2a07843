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


def test_tenant_key_list_and_revoke(procs: Procs) -> None:
    r = procs.smsgw("tenant", "create", "acme", "--scopes", "send,verify")
    first = json.loads(r.stdout.strip().splitlines()[-1])
    tenant = first["tenant_id"]
    second = json.loads(procs.smsgw("tenant", "key", "add", tenant, "--scopes", "admin").stdout)
    assert len(first["key_id"]) == 12 and first["key_id"] != second["key_id"]
    r = procs.smsgw("tenant", "key", "list", tenant)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)["keys"]
    assert [(k["key_id"], k["scopes"], k["revoked_at"]) for k in listed] == [
        (first["key_id"], ["send", "verify"], None),
        (second["key_id"], ["admin"], None),
    ]
    assert first["api_key"] not in r.stdout and second["api_key"] not in r.stdout
    r = procs.smsgw("tenant", "key", "revoke", tenant, second["key_id"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["key_id"] == second["key_id"] and out["revoked_at"] and out["already"] is False
    again = json.loads(procs.smsgw("tenant", "key", "revoke", tenant, second["key_id"]).stdout)
    assert again["already"] is True and again["revoked_at"] == out["revoked_at"]
    r = procs.smsgw("tenant", "key", "revoke", tenant, "000000000000")
    assert r.returncode == 2 and "no key" in r.stderr
    assert procs.smsgw("tenant", "key", "list", "tn_nope").returncode == 2
    listed = json.loads(procs.smsgw("tenant", "key", "list", tenant).stdout)["keys"]
    assert [k["revoked_at"] is None for k in listed] == [True, False]
    with sqlite3.connect(procs.workdir / "smsgw.db") as db:
        actions = [a for (a,) in db.execute("SELECT action FROM audit WHERE tenant_id = ?", (tenant,))]
    assert actions.count("tenant.key_revoke") == 1
    r = procs.smsgw("audit", "verify")
    assert r.returncode == 0, r.stderr
