"""Settings: defaults, TOML, environment overrides, and every bad value reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load


def test_defaults_route_everything_to_the_sim_carrier() -> None:
    s = load(None, {})
    assert s.db_path == "./smsgw.db" and s.redis_url == "" and s.server.port == 8080
    assert [(c.name, c.type, c.port) for c in s.carriers[:1]] == [("sim", "smpp", 2775)]
    assert s.carriers[1].url == "http://127.0.0.1:8025/messages"
    assert [(r.name, r.carrier) for r in s.routes] == [("sim-default", "sim-http"), ("sim-smpp", "sim")]
    assert s.otp.code_length == 6 and s.otp.ttl_seconds == 300 and s.otp.max_attempts == 5


def test_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "smsgw.toml"
    cfg.write_text('db_path = "/from/file.db"\n[otp]\ncode_length = 8\n[server]\nport = 9000\n')
    s = load(
        cfg, {"SMSGW_DB": "/from/env.db", "REDIS_URL": "redis://127.0.0.1:6379/0", "SMSGW_LOG_LEVEL": "DEBUG"}
    )
    assert (s.db_path, s.redis_url, s.otp.code_length, s.server.port) == (
        "/from/env.db",
        "redis://127.0.0.1:6379/0",
        8,
        9000,
    )
    assert s.server.log_level == "debug" and s.source == str(cfg)
    assert load(None, {"SMSGW_CONFIG": str(cfg)}).otp.code_length == 8


def test_every_problem_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("""
colour = "red"
[server]
port = 70000
[otp]
code_length = 2
ttl_seconds = "five"
[[carriers]]
name = "a"
type = "ftp"
""")
    with pytest.raises(ConfigError) as e:
        load(cfg, {})
    text = "\n".join(e.value.problems)
    for expected in (
        "colour: unknown setting",
        "server.port: must be a port number",
        "otp.code_length",
        "otp.ttl_seconds",
        "carriers[0].type: must be http or smpp",
    ):
        assert expected in text, expected
    assert len(e.value.problems) == 5


def test_cross_checks(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text("""
[[carriers]]
name = "a"
type = "http"
url = "ftp://nowhere"
[[routes]]
name = "r"
carrier = "missing"
[otp.templates]
en = "no code here"
""")
    with pytest.raises(ConfigError) as e:
        load(cfg, {"SMSGW_MASTER_KEY": "short", "REDIS_URL": "http://localhost"})
    text = "\n".join(e.value.problems)
    for expected in (
        "carriers[0].url",
        "routes[0].carrier: no carrier named 'missing'",
        "otp.templates.en: must contain {code}",
        "SMSGW_MASTER_KEY",
        "REDIS_URL",
    ):
        assert expected in text, expected


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad, {})


def test_docs_errors_md_is_current() -> None:
    from gateway.docs_gen import errors_md

    assert (Path(__file__).resolve().parents[2] / "docs/errors.md").read_text() == errors_md(), (
        "run: python -m gateway.docs_gen"
    )


def test_example_config_is_valid() -> None:
    s = load(Path(__file__).resolve().parents[2] / "examples/smsgw.toml", {})
    assert [r.name for r in s.routes] == ["sim-default", "b-europe"]


def test_the_store_engine_and_region_locations(tmp_path: Path) -> None:
    url = "postgresql://smsgw@127.0.0.1:5432/smsgw"
    cfg = tmp_path / "smsgw.toml"
    cfg.write_text(
        '[residency]\nregions = { ru = "", eu = "/data/eu.db" }\ncountries = { RU = "ru", DE = "eu" }\n'
    )
    s = load(cfg, {"SMSGW_DATABASE_URL": url})
    assert s.database_url == url and s.residency.regions == {"ru": "", "eu": "/data/eu.db"}
    with pytest.raises(ConfigError) as e:
        load(cfg, {"SMSGW_DATABASE_URL": "mysql://x/y"})
    assert e.value.problems == ["SMSGW_DATABASE_URL: must start with postgresql:// (got 'mysql://x/y')"]
    with pytest.raises(ConfigError) as e:
        load(cfg, {})  # region ru has no location of its own and there is no PostgreSQL to hold it
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith("residency.regions.ru:")
