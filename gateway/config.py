"""Typed settings, parsed once at the edge: ``load(path, environ) -> Settings``.

Sources, later wins: built-in defaults → TOML file (``--config`` or ``SMSGW_CONFIG``) → environment
(``SMSGW_DB``, ``REDIS_URL``, ``SMSGW_MASTER_KEY``, ``SMSGW_LOG_LEVEL``). Every bad value is reported at
once, each with its dotted path, in a :class:`ConfigError`. Nothing below ``gateway/`` reads the
environment; ``docs/configuration.md`` lists every setting.

Without a file, the gateway routes all traffic to a ``sim-carrier`` on its default ports
(HTTP 8025, SMPP 2775) so a newcomer can try the whole flow at once.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_TEMPLATES = {
    "en": "Your {brand} code is {code}. It expires in {minutes} min. Don't share it.",
    "de": "Ihr {brand}-Code lautet {code}. Gültig für {minutes} Min. Nicht weitergeben.",
    "fr": "Votre code {brand} est {code}. Il expire dans {minutes} min. Ne le partagez pas.",
    "es": "Tu código de {brand} es {code}. Caduca en {minutes} min. No lo compartas.",
    "pt": "Seu código {brand} é {code}. Expira em {minutes} min. Não o compartilhe.",
    "id": "Kode {brand} Anda adalah {code}. Berlaku {minutes} menit. Jangan bagikan.",
    "zh": "您的{brand}验证码是{code}，{minutes}分钟内有效，请勿泄露。",
}

# Destination countries a tenant may send to when created without --countries: an operator's safe
# list (low pumping risk, well-regulated); ALL must be asked for explicitly.
DEFAULT_TENANT_COUNTRIES = ("US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "AU", "JP")


class ConfigError(Exception):
    """All problems found in the configuration, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how carriers reach us for receipts; default http://host:port
    max_body_bytes: int = 64 * 1024
    log_level: str = "info"
    # a connection must finish a request's headers within this, and an idle keep-alive connection is
    # closed after it (slowloris headers, thousands of idle sockets)
    idle_timeout_seconds: float = 15.0
    body_timeout_seconds: float = 10.0  # a JSON body not complete by then: 408 request_timeout
    backlog: int = 1024  # listen queue: bursts of new connections wait here instead of being refused
    # on SIGTERM: /readyz answers 503 this long while requests are still served, then the listener closes
    drain_seconds: float = 2.0


@dataclass(frozen=True)
class OtpSettings:
    code_length: int = 6
    ttl_seconds: int = 300
    max_attempts: int = 5
    resend_cooldown_seconds: int = 30
    max_per_number_per_hour: int = 10
    default_locale: str = "en"
    brand: str = "smsgw"
    default_sender: str = "SMSGW"
    templates: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))


@dataclass(frozen=True)
class DispatchSettings:
    workers: int = 64  # concurrent submissions in flight per process
    claim_lease_seconds: float = 30.0  # a claimed message not finished by then is taken again
    sweep_interval_seconds: float = 1.0
    max_attempts: int = 5
    retry_backoff_seconds: float = 2.0


@dataclass(frozen=True)
class CarrierSettings:
    name: str
    type: str = "http"  # http | smpp
    url: str = ""  # http: where submissions are POSTed
    host: str = "127.0.0.1"  # smpp
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    bind_mode: str = "trx"  # trx | tx (transmitters plus one receiver for receipts)
    enquire_link_seconds: float = 30.0
    binds: int = 1
    window: int = 10
    tps: float = 0.0  # 0 = unlimited
    timeout_seconds: float = 10.0
    batch_max: int = 1  # http: messages per request (bulk submission) when > 1
    down_seconds: float = 5.0  # http: after a transport error or 5xx the carrier rests this long
    # smpp: a silent peer (connection open, no answers) gets this long past timeout_seconds before its
    # outstanding submits fail (and may then go elsewhere); meanwhile the bind takes no new submits
    stall_grace_seconds: float = 5.0


@dataclass(frozen=True)
class RouteSettings:
    name: str
    carrier: str
    countries: list[str] = field(default_factory=lambda: ["*"])
    prefixes: list[str] = field(default_factory=list)
    brand_class: str = "any"  # international | local | any
    senders: list[str] = field(default_factory=lambda: ["*"])
    price: float = 0.01  # per segment
    priority: int = 100
    # price per segment by ISO country ("DE") or number prefix ("+4915"); the longest matching prefix
    # wins, then the country, then ``price``
    prices: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RoutingSettings:
    """Route selection and health (docs/routing.md); reloaded with the route table."""

    breaker_failures: int = 5  # consecutive failed submissions that open a route's breaker
    breaker_failure_rate: float = 0.5  # ... or this share of failures
    breaker_min_samples: int = 20  # ... among at least this many submissions
    breaker_window_seconds: float = 60.0  # ... within this window
    breaker_cooldown_seconds: float = 30.0  # open this long, then one probe
    breaker_max_cooldown_seconds: float = 300.0  # the cool-down doubles after each failed probe
    throttle_hold_seconds: float = 0.5  # a throttled route takes no new message this long (doubling)
    throttle_hold_max_seconds: float = 8.0
    stats_window_seconds: float = 1800.0  # delivery and fill-back rates over this window
    stats_refresh_seconds: float = 10.0  # how often fill-back rates are read from the shared store
    delivery_prior_mean: float = 0.9  # a route with no receipts reads this delivery rate ...
    fillback_prior_mean: float = 0.6  # ... and no OTPs this fill-back
    prior_strength: float = 20.0  # worth this many messages
    explore_share: float = 0.02  # share of messages that may go to a little-sampled runner-up
    explore_below: int = 200  # samples under which a runner-up is worth exploring
    drain_seconds: float = 10.0  # a carrier removed by a reload still takes receipts this long, then closes


@dataclass(frozen=True)
class WebhookSettings:
    """Status callbacks to tenant webhooks (docs/routing.md)."""

    timeout_seconds: float = 5.0
    max_attempts: int = 6  # one try and up to five retries
    backoff_seconds: float = 1.0  # first retry after this, doubling
    max_backoff_seconds: float = 60.0
    queue_limit: int = 10_000  # events held in memory; beyond it they wait in the outbox only
    concurrency: int = 8  # POSTs in flight at once
    claim_lease_seconds: float = 60.0  # an event a dead process held is taken over after this
    sweep_seconds: float = 10.0  # how often the outbox is searched for events nobody holds
    allow_private_hosts: bool = False  # accept URLs on loopback/private addresses (on-premises receivers)


@dataclass(frozen=True)
class RetentionSettings:
    """Days each data class is kept (0 = forever), and how often the purge job runs."""

    otps_days: float = 30
    message_bodies_days: float = 7
    messages_days: float = 90
    receipts_days: float = 90
    events_days: float = 365
    audit_days: float = 730
    privacy_requests_days: float = 1095
    interval_seconds: float = 300


@dataclass(frozen=True)
class ResidencySettings:
    # region name -> SQLite path, postgresql:// URL, or "" (a schema of its own on SMSGW_DATABASE_URL)
    regions: dict[str, str] = field(default_factory=dict)
    countries: dict[str, str] = field(default_factory=dict)  # ISO country -> region name
    copy_to_control: list[str] = field(default_factory=list)  # countries recorded locally first, then copied


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    db_path: str = "./smsgw.db"
    database_url: str = ""  # postgresql://…: the PostgreSQL engine instead of SQLite at db_path
    redis_url: str = ""
    master_key: str = ""  # base64 of 32 bytes; empty: a key file next to the database (development)
    default_tenant_countries: list[str] = field(default_factory=lambda: list(DEFAULT_TENANT_COUNTRIES))
    otp: OtpSettings = field(default_factory=OtpSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    carriers: list[CarrierSettings] = field(default_factory=list)
    routes: list[RouteSettings] = field(default_factory=list)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    residency: ResidencySettings = field(default_factory=ResidencySettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    quiet_hours: dict[str, str] = field(default_factory=dict)  # ISO -> window spec, overrides the data file
    # ISO code or "*" -> sender-ID rule overrides (see docs/senderid.md)
    senderid_countries: dict[str, dict[str, Any]] = field(default_factory=dict)
    senderid_pending_days: float = 90.0  # a submission with no decision by then expires (0 = never)
    source: str = "defaults"

    @property
    def public_url(self) -> str:
        return self.server.public_url or f"http://{self.server.host}:{self.server.port}"


# the sim-carrier's two sides. HTTP with bulk submission goes first: measured here it costs the gateway
# less CPU per message than our pure-Python SMPP client (bench/otp_throughput.py); SMPP is the fallback.
SIM_CARRIERS = [
    CarrierSettings(
        name="sim", type="smpp", host="127.0.0.1", port=2775, system_id="smsgw", password="secret", window=50
    ),
    CarrierSettings(name="sim-http", type="http", url="http://127.0.0.1:8025/messages", batch_max=100),
]
SIM_ROUTES = [
    RouteSettings(name="sim-default", carrier="sim-http", priority=10),
    RouteSettings(name="sim-smpp", carrier="sim", price=0.012, priority=20),
]

_ENV = {
    "SMSGW_DB": "db_path",
    "SMSGW_DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "SMSGW_MASTER_KEY": "master_key",
}

_CHECKS: dict[str, Any] = {
    "server.port": lambda v: 0 < v < 65536 or "must be a port number 1-65535",
    "server.drain_seconds": lambda v: 0 <= v <= 60 or "must be between 0 and 60",
    "server.max_body_bytes": lambda v: 1024 <= v <= 64 * 1024 * 1024 or "must be between 1024 and 67108864",
    "server.idle_timeout_seconds": lambda v: 1 <= v <= 3600 or "must be between 1 and 3600 seconds",
    "server.body_timeout_seconds": lambda v: 0.5 <= v <= 600 or "must be between 0.5 and 600 seconds",
    "server.backlog": lambda v: 16 <= v <= 65535 or "must be between 16 and 65535",
    "server.log_level": lambda v: (
        v in ("debug", "info", "warning", "error") or "must be debug|info|warning|error"
    ),
    "otp.code_length": lambda v: 4 <= v <= 10 or "must be between 4 and 10 digits",
    "otp.ttl_seconds": lambda v: 30 <= v <= 86400 or "must be between 30 and 86400 seconds",
    "otp.max_attempts": lambda v: 1 <= v <= 20 or "must be between 1 and 20",
    "otp.resend_cooldown_seconds": lambda v: 0 <= v <= 3600 or "must be between 0 and 3600 seconds",
    "otp.max_per_number_per_hour": lambda v: 1 <= v <= 1000 or "must be between 1 and 1000",
    "dispatch.workers": lambda v: 1 <= v <= 10000 or "must be between 1 and 10000",
    "dispatch.claim_lease_seconds": lambda v: 0.5 <= v <= 3600 or "must be between 0.5 and 3600",
    "dispatch.sweep_interval_seconds": lambda v: 0.05 <= v <= 60 or "must be between 0.05 and 60",
    "dispatch.max_attempts": lambda v: 1 <= v <= 100 or "must be between 1 and 100",
    "carriers.type": lambda v: v in ("http", "smpp") or "must be http or smpp",
    "carriers.bind_mode": lambda v: v in ("trx", "tx") or "must be trx or tx",
    "carriers.binds": lambda v: 1 <= v <= 64 or "must be between 1 and 64",
    "carriers.window": lambda v: 1 <= v <= 1000 or "must be between 1 and 1000",
    "carriers.batch_max": lambda v: 1 <= v <= 1000 or "must be between 1 and 1000",
    "carriers.down_seconds": lambda v: 0 <= v <= 3600 or "must be between 0 and 3600",
    "carriers.stall_grace_seconds": lambda v: 0 <= v <= 300 or "must be between 0 and 300",
    "routes.brand_class": lambda v: (
        v in ("international", "local", "any") or "must be international|local|any"
    ),
    "routes.price": lambda v: v >= 0 or "must not be negative",
    "routes.prices": lambda v: (
        all(
            p >= 0 and ((len(k) == 2 and k.isalpha() and k.isupper()) or (k[:1] == "+" and k[1:].isdigit()))
            for k, p in v.items()
        )
        or "keys are ISO country codes (DE) or +prefixes (+4915), prices not negative"
    ),
    "routing.breaker_failures": lambda v: 1 <= v <= 1000 or "must be between 1 and 1000",
    "routing.breaker_failure_rate": lambda v: 0 < v <= 1 or "must be in (0, 1]",
    "routing.breaker_min_samples": lambda v: 1 <= v <= 100_000 or "must be between 1 and 100000",
    "routing.breaker_window_seconds": lambda v: 1 <= v <= 3600 or "must be between 1 and 3600",
    "routing.breaker_cooldown_seconds": lambda v: 0.1 <= v <= 3600 or "must be between 0.1 and 3600",
    "routing.breaker_max_cooldown_seconds": lambda v: 0.1 <= v <= 86400 or "must be between 0.1 and 86400",
    "routing.throttle_hold_seconds": lambda v: 0 <= v <= 60 or "must be between 0 and 60",
    "routing.throttle_hold_max_seconds": lambda v: 0 <= v <= 600 or "must be between 0 and 600",
    "routing.stats_window_seconds": lambda v: 60 <= v <= 86400 or "must be between 60 and 86400",
    "routing.stats_refresh_seconds": lambda v: 0.1 <= v <= 3600 or "must be between 0.1 and 3600",
    "routing.delivery_prior_mean": lambda v: 0 < v < 1 or "must be in (0, 1)",
    "routing.fillback_prior_mean": lambda v: 0 < v < 1 or "must be in (0, 1)",
    "routing.prior_strength": lambda v: 0 < v <= 10_000 or "must be in (0, 10000]",
    "routing.explore_share": lambda v: 0 <= v <= 0.5 or "must be between 0 and 0.5",
    "routing.explore_below": lambda v: v >= 0 or "must not be negative",
    "routing.drain_seconds": lambda v: 0 <= v <= 600 or "must be between 0 and 600",
    "webhooks.timeout_seconds": lambda v: 0.1 <= v <= 60 or "must be between 0.1 and 60",
    "webhooks.max_attempts": lambda v: 1 <= v <= 20 or "must be between 1 and 20",
    "webhooks.backoff_seconds": lambda v: 0.001 <= v <= 3600 or "must be between 0.001 and 3600",
    "webhooks.max_backoff_seconds": lambda v: 0.001 <= v <= 86400 or "must be between 0.001 and 86400",
    "webhooks.queue_limit": lambda v: 1 <= v <= 10_000_000 or "must be between 1 and 10000000",
    "webhooks.concurrency": lambda v: 1 <= v <= 1000 or "must be between 1 and 1000",
    "webhooks.claim_lease_seconds": lambda v: 0.5 <= v <= 86400 or "must be between 0.5 and 86400",
    "webhooks.sweep_seconds": lambda v: 0.05 <= v <= 3600 or "must be between 0.05 and 3600",
    "retention.interval_seconds": lambda v: 1 <= v <= 86400 or "must be between 1 and 86400",
}


def _convert(cls: type[Any], raw: Mapping[str, Any], path: str, problems: list[str]) -> Any:
    """Build dataclass ``cls`` from ``raw``, appending every problem found instead of stopping."""
    if not isinstance(raw, Mapping):
        problems.append(f"{path or 'config'}: expected a table, got {type(raw).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    for key in raw:
        if key not in fields:
            problems.append(f"{path}{key}: unknown setting (known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{path}{name}: required")
            continue
        value = raw[name]
        hint = hints[name]
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        where = f"{path}{name}"
        if dataclasses.is_dataclass(hint):
            values[name] = _convert(typing.cast(type[Any], hint), value, where + ".", problems)
            continue
        if origin is list and args and dataclasses.is_dataclass(args[0]):
            if not isinstance(value, list):
                problems.append(f"{where}: expected an array of tables")
                continue
            values[name] = [
                _convert(typing.cast(type[Any], args[0]), item, f"{where}[{i}].", problems)
                for i, item in enumerate(value)
            ]
            continue
        try:
            values[name] = msgspec.convert(value, hint, strict=not isinstance(hint, types.UnionType))
        except msgspec.ValidationError as e:
            problems.append(f"{where}: {e} (got {value!r})")
            continue
        check = _CHECKS.get(_generic_path(where))
        if check is not None:
            verdict = check(values[name])
            if verdict is not True:
                problems.append(f"{where}: {verdict} (got {value!r})")
    if any(p.startswith(path) for p in problems) and path:
        return None
    try:
        return cls(**values)
    except TypeError as e:  # a required field reported above
        problems.append(f"{path or 'config'}: {e}")
        return None


def _generic_path(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)


def _cross_checks(s: Settings, problems: list[str]) -> None:
    carrier_names = [c.name for c in s.carriers]
    if len(set(carrier_names)) != len(carrier_names):
        problems.append("carriers: names must be unique")
    for i, c in enumerate(s.carriers):
        if c.type == "http" and not c.url.startswith(("http://", "https://")):
            problems.append(f"carriers[{i}].url: an http carrier needs an http(s) URL (got {c.url!r})")
        if c.type == "smpp" and not c.system_id:
            problems.append(f"carriers[{i}].system_id: an smpp carrier needs a system_id")
    route_names = [r.name for r in s.routes]
    if len(set(route_names)) != len(route_names):
        problems.append("routes: names must be unique")
    for i, r in enumerate(s.routes):
        if r.carrier not in carrier_names:
            problems.append(f"routes[{i}].carrier: no carrier named {r.carrier!r}")
    for region in s.residency.regions:
        if not re.fullmatch(r"[a-z0-9]{1,12}", region):
            problems.append(f"residency.regions.{region}: region names are 1-12 lowercase letters or digits")
    pg_urls = ("postgresql://", "postgres://")
    if s.database_url and not s.database_url.startswith(pg_urls):
        problems.append(f"SMSGW_DATABASE_URL: must start with postgresql:// (got {s.database_url!r})")
    for region, where in s.residency.regions.items():
        if not where and not s.database_url:
            problems.append(
                f"residency.regions.{region}: give a SQLite path or a postgresql:// URL (empty means a "
                "schema of its own on SMSGW_DATABASE_URL, which is not set)"
            )
    for country, region in s.residency.countries.items():
        if region not in s.residency.regions:
            problems.append(f"residency.countries.{country}: no region named {region!r} in residency.regions")
        if len(country) != 2 or not country.isupper():
            problems.append(f"residency.countries.{country}: use ISO 3166-1 alpha-2 codes, e.g. RU")
    for country in s.residency.copy_to_control:
        if country not in s.residency.countries:
            problems.append(f"residency.copy_to_control: {country} is not mapped to a region")
    for name in ("otps", "message_bodies", "messages", "receipts", "events", "audit", "privacy_requests"):
        if getattr(s.retention, f"{name}_days") < 0:
            problems.append(f"retention.{name}_days: must not be negative (0 keeps forever)")
    if 0 < s.retention.message_bodies_days < 1 / 24:
        problems.append(
            "retention.message_bodies_days: keep bodies at least an hour, or retries cannot send them"
        )
    for country, spec in s.quiet_hours.items():
        from gateway.privacy.quiet import parse_rule

        try:
            parse_rule(country, spec)
        except ValueError as e:
            problems.append(f"quiet_hours.{country}: {e}")
    if s.senderid_countries:
        from senderid import RulesError, load_rules

        try:
            load_rules(s.senderid_countries)
        except RulesError as e:
            problems.extend(f"senderid_countries: {p}" for p in e.problems)
    if s.otp.default_locale not in s.otp.templates:
        problems.append(f"otp.default_locale: no template for {s.otp.default_locale!r}")
    for loc, text in s.otp.templates.items():
        if "{code}" not in text:
            problems.append(f"otp.templates.{loc}: must contain {{code}}")
    if s.master_key:
        import base64
        import binascii

        try:
            if len(base64.b64decode(s.master_key, validate=True)) != 32:
                problems.append("SMSGW_MASTER_KEY: must be base64 of exactly 32 bytes")
        except (binascii.Error, ValueError):
            problems.append("SMSGW_MASTER_KEY: not valid base64 (make one: smsgw keys generate)")
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(f"REDIS_URL: must start with redis://, rediss:// or unix:// (got {s.redis_url!r})")


def load(path: str | Path | None, environ: Mapping[str, str]) -> Settings:
    """Read the TOML file (if any) and the environment overrides; raise ConfigError listing every problem."""
    problems: list[str] = []
    raw: dict[str, Any] = {}
    source = "defaults"
    path = path or environ.get("SMSGW_CONFIG") or None
    if path:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError([f"config file {path}: not found"]) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"config file {path}: not valid TOML: {e}"]) from None
    for env, key in _ENV.items():
        if env in environ:
            raw[key] = environ[env]
    if "SMSGW_LOG_LEVEL" in environ:
        raw.setdefault("server", {})
        if isinstance(raw["server"], dict):
            raw["server"]["log_level"] = environ["SMSGW_LOG_LEVEL"].lower()
    settings = _convert(Settings, raw, "", problems)
    if settings is None or problems:
        raise ConfigError(problems or ["configuration could not be read"])
    if not settings.carriers:
        settings = dataclasses.replace(settings, carriers=SIM_CARRIERS, routes=settings.routes or SIM_ROUTES)
    settings = dataclasses.replace(settings, source=source)
    _cross_checks(settings, problems)
    if problems:
        raise ConfigError(problems)
    return typing.cast(Settings, settings)
