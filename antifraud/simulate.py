"""Traffic simulator: legitimate users and SMS-pumping attacks, deterministic by seed.

It produces timestamped OTP requests and plays the people behind them: real users who read the code
and verify (most of the time, sometimes late, sometimes after a resend), pass a challenge when asked,
retry after a rate limit; and attackers who never verify (or verify a few codes to look human), fail
challenges (or pass some, through a CAPTCHA farm), and move on when refused. Every request carries its
ground truth (legit, or the attack family and campaign) in the simulator's own log only.

The gateway side is behind :class:`Driver` (request / verified / delivery failed / probe): the
in-process driver in ``evaluate.py`` calls :class:`~antifraud.engine.FraudEngine` on a simulated
clock over days (:meth:`Simulation.run`); ``http_driver.py`` drives a running gateway and sim-carrier
with a short *window* of the same traffic in real time (:class:`WindowConfig`,
:meth:`Simulation.for_window`, :meth:`Simulation.play`: a paced player with bounded concurrency).

Families follow ``shared/notes/fraud.md`` §(b); parameters marked there as assumptions are
assumptions here too.

Legitimate (L)                                     Attacks (A)
  L1 daily cycle by destination local time          A1 sequential sweep of a block, high-cost country
  L2 Zipf country mix, a single-country tenant      A2 shuffled sweep over 1–20 10k blocks
  L3 returning users, typos, landlines              A3 premium-rate / shared-cost / UAN numbers
  L4 per-country verify rate by route quality       A4 low and slow over 50–500 blocks, fresh IPs
  L5 log-normal verify delay, some after the TTL    A5 hidden in a country the tenant serves
  L6 resends after 30–60 s                          A6 night burst
  L7 CGNAT: many users behind few IPs               A7 verifies 5–30 % of codes, CAPTCHA farm
  L8 devices on apps, none on the web               A8 many countries from one IP
  L9 marketing surge (5× for hours)                 A9 SMS bombing of a few numbers
  L10 route outage: half the deliveries fail        A10 one range through many tenants
  L11 real users inside attacked ranges             A11 adaptive prober, new prefix after a refusal
  L12 tenant that never reports 30 % of verifies    A12 bursts timed around the code TTL
  L13 lossy network: 30 % of a user's SMS vanish    A13 CAPTCHA farm: every 428 answered with a token
  cold start: a tenant with no history

Real users' requests are also labelled by family (``LEGIT_FAMILIES``: plain, resend, CGNAT, surge,
lossy network, new tenant), so the friction each family meets is reported apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import heapq
import math
import random
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import phonenumbers
from phonenumbers import PhoneNumberType

from antifraud.decision import FraudRequest
from antifraud.geo import LocalClock, country_info
from antifraud.numbers import number_info

DAY = 86400.0
HOUR = 3600.0
EPOCH = 1_772_409_600.0  # 2026-03-02 00:00 UTC, a Monday
OTP_TTL = 300.0
DECISIONS = ("allow", "challenge", "block", "rate_limited")  # what a driver's probe may answer
ATTACK_FAMILIES = ("A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9", "A10", "A11", "A12", "A13")
HIGH_COST = ("UZ", "KG", "TJ", "AZ", "LB", "LY", "IQ", "MM", "LK", "KZ")
MID_COST = ("NG", "PK", "BD", "EG", "ID", "VN", "GH", "NP", "RU")
CGNAT_COUNTRIES = ("ID", "NG", "PH", "IN", "PK", "BD")
# Families of real users whose friction is reported apart (a request may belong to several; "plain"
# is one that belongs to none of the others): a resend after a lost or late SMS, a user behind a
# carrier-grade NAT address, the L9 surge (a launch day), a user on a lossy network (a share of their
# SMS never arrive, without a failed receipt), a tenant without history (cold start).
LEGIT_FAMILIES = ("plain", "resend", "cgnat", "surge", "lossy", "new_tenant")
LOSSY_SHARE = 0.08  # of real users on a lossy network
LOSSY_LOSS = 0.3  # of their SMS that never arrive


# ---- the seam to whatever decides ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """What the simulator keeps about an OTP the driver sent, to report on it later."""

    req: FraudRequest
    challenged: bool
    ref: Any = None  # the driver's own handle (an OTP id over HTTP)


@dataclass(frozen=True, slots=True)
class Answer:
    action: str  # allow | challenge | block | rate_limited
    retry_after: float | None
    sent: Sent | None  # set when allowed
    latency_ns: int = 0
    codes: tuple[str, ...] = ()
    features: list[float] | None = None  # the model's inputs, when the driver exposes them (training)


class Driver(Protocol):
    async def request(self, req: FraudRequest) -> Answer: ...

    async def verified(self, sent: Sent, at: float) -> None: ...

    async def delivery_failed(self, sent: Sent, at: float) -> None: ...

    async def probe(self, req: FraudRequest) -> str:
        """What would be answered now, without counting anything (release measurement)."""
        ...


# ---- numbers ---------------------------------------------------------------------------------------


@functools.cache
def mobile_blocks(cc: str) -> tuple[str, ...]:
    """Up to 300 100k blocks holding valid mobile numbers of ``cc``, found once per process by
    sampling around the region's example number (the numbering plan does not depend on the seed)."""
    rng = random.Random(zlib.crc32(cc.encode()))
    ex = phonenumbers.example_number_for_type(cc, PhoneNumberType.MOBILE)
    if ex is None:
        raise ValueError(f"no mobile numbering known for {cc}")
    nat = phonenumbers.national_significant_number(ex)
    code = ex.country_code
    found: set[str] = set()
    for _ in range(4000):
        j = rng.choice((1, 2))
        n = nat[:j] + "".join(rng.choice("0123456789") for _ in range(len(nat) - j))
        info = number_info(f"+{code}{n}")
        if info.valid and info.region == cc and info.kind in ("mobile", "fixed_line_or_mobile"):
            found.add(info.p5)
        if len(found) >= 300:
            break
    return tuple(sorted(found))


class NumberPool:
    """Valid numbers per country from ``phonenumbers`` metadata: mobile 100k blocks found by sampling
    around the region's example number, weighted like operators' market shares (Zipf)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._blocks: dict[str, tuple[list[str], list[float]]] = {}

    def blocks(self, cc: str) -> tuple[list[str], list[float]]:
        got = self._blocks.get(cc)
        if got is not None:
            return got
        rng = random.Random(zlib.crc32(f"{self._seed}:{cc}".encode()))
        blocks = list(mobile_blocks(cc))
        rng.shuffle(blocks)
        # operators: 5 groups of blocks with Zipf market shares, numbers uniform inside an operator
        ops = 5
        share = [1.0 / (i + 1) for i in range(ops)]
        sizes = [sum(1 for j in range(len(blocks)) if j % ops == i) for i in range(ops)]
        weights = [share[j % ops] / max(sizes[j % ops], 1) for j in range(len(blocks))]
        self._blocks[cc] = (blocks, weights)
        return blocks, weights

    def number_in(self, prefix: str, rng: random.Random, cc: str) -> str | None:
        missing = 15 - (len(prefix) - 1)
        width = len(self._template(cc)) - len(prefix)
        width = max(1, min(width, missing))
        for _ in range(25):
            e164 = prefix + "".join(rng.choice("0123456789") for _ in range(width))
            info = number_info(e164)
            if info.valid and info.kind in ("mobile", "fixed_line_or_mobile"):
                return e164
        return None

    def _template(self, cc: str) -> str:
        blocks, _ = self.blocks(cc)
        return blocks[0] + "00000"

    def legit_number(self, cc: str, rng: random.Random) -> str:
        blocks, weights = self.blocks(cc)
        for _ in range(10):
            block = rng.choices(blocks, weights)[0]
            e164 = self.number_in(block, rng, cc)
            if e164 is not None:
                return e164
        raise RuntimeError(f"could not draw a valid number in {cc}")

    def attack_blocks(self, cc: str, n: int, rng: random.Random, operator: bool = False) -> list[str]:
        """``n`` 10k blocks (E.164 minus 4) holding valid numbers; ``operator``: all in one 100k block
        neighbourhood of the same operator (A5)."""
        blocks, weights = self.blocks(cc)
        out: list[str] = []
        seen: set[str] = set()
        base = rng.choices(blocks, weights)[0]
        for _ in range(n * 20):
            p5 = base if operator else rng.choice(blocks)
            p4 = p5 + rng.choice("0123456789")
            if p4 in seen:
                continue
            if self.number_in(p4, rng, cc) is not None:
                seen.add(p4)
                out.append(p4)
            if len(out) >= n:
                break
        return out

    @staticmethod
    def typed_number(region: str, kind: int, rng: random.Random) -> str | None:
        ex = phonenumbers.example_number_for_type(region, kind)
        if ex is None:
            return None
        e164 = phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.E164)
        for _ in range(20):
            cand = e164[:-3] + f"{rng.randrange(1000):03d}"
            if number_info(cand).valid:
                return cand
        return e164


# ---- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantSpec:
    id: str
    per_day: float
    countries: tuple[tuple[str, float], ...]  # (country, share)
    allowed: tuple[str, ...] | None = None  # None: every country (the worst case for the detector)
    report_ratio: float = 1.0  # L12: share of verifications the integration reports
    start: float = 0.0  # seconds after the simulation start (cold start)


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int
    days: float = 3.0
    attack_from: float = 2.0  # days of legitimate history before the first attack
    scale: float = 1.0  # multiplies legitimate volumes
    families: tuple[str, ...] = ATTACK_FAMILIES
    campaigns_per_family: int = 2
    attack_scale: float = 1.0  # multiplies campaign sizes
    legit_events: bool = True  # L9 surge and L10 outage on the attack day
    origin: float | None = None  # the first second (epoch); None: a Monday in March 2026 by seed

    @property
    def start(self) -> float:
        return self.origin if self.origin is not None else EPOCH + (self.seed % 28) * DAY


def default_tenants(rng: random.Random, scale: float) -> list[TenantSpec]:
    tier12 = ["US", "GB", "DE", "FR", "ES", "IT", "BR", "MX", "IN", "ID", "PH", "TR", "NG", "PK", "EG", "VN"]
    tier12 += ["TH", "MY", "ZA", "SA", "AE", "KE", "CO", "AR", "PL", "NL", "JP", "KR", "AU", "CA"]

    def zipf(cs: list[str]) -> tuple[tuple[str, float], ...]:
        w = [1.0 / (i + 1) ** 1.1 for i in range(len(cs))]
        tot = sum(w)
        return tuple((c, x / tot) for c, x in zip(cs, w, strict=True))

    def pick(k: int, extra: tuple[str, ...] = ()) -> list[str]:
        cs = rng.sample(tier12, k - len(extra))
        return [*cs, *extra]

    # every tenant allows every country (worst case); small tails in high-cost destinations
    tenants = [
        TenantSpec("global", 20_000 * scale, zipf(pick(18, ("UZ", "KZ")))),
        TenantSpec("single", 8_000 * scale, (("IN", 1.0),)),
        TenantSpec("regional", 6_000 * scale, zipf(pick(8, ("AZ",)))),
        TenantSpec("sloppy", 5_000 * scale, zipf(pick(5)), report_ratio=0.7),
        TenantSpec("newbie", 3_000 * scale, zipf(pick(6, ("LK",))), start=-1.0),
    ]
    tenants += [TenantSpec(f"small{i}", 400 * scale, zipf(pick(3))) for i in range(5)]
    return tenants


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """A short window of the same traffic, played in real time against a running gateway.

    Rates are per second as in service (nothing is compressed): ``legit_rate`` real users' requests per
    second over all tenants, mixed by tenant, country and the destination's time of day as in the
    multi-day simulation; each attack family runs one campaign at its own rate, starting after
    ``attack_after`` × ``seconds`` of real users only. New sessions and attack requests start inside
    the window; for ``tail`` seconds after it, sessions already begun go on (verifications, a retry
    after a challenge). There is no history: every tenant starts cold.

    Opt-in, as in service: ``outage_at`` (a share of the window) starts an L10 route outage in
    ``outage_country`` ("" = the first tenant's busiest destination) for ``outage_seconds``, in which
    ``outage_share`` of real users' deliveries fail (the driver hears of each 2–20 s after the send);
    ``probe_every`` > 0 asks every so many seconds after each campaign's last request, as a dry run,
    whether a real user in its range would be let through again, until released or the run ends.
    """

    seed: int
    seconds: float = 60.0
    legit_rate: float = 5.0
    tenants: int = 3
    families: tuple[str, ...] = ATTACK_FAMILIES
    attack_after: float = 0.25
    tail: float = 30.0
    exclude_countries: tuple[str, ...] = ()  # destinations the gateway refuses before anti-fraud
    outage_at: float | None = None  # L10: share of the window when the route outage starts; None: none
    outage_seconds: float = 30.0
    outage_share: float = 0.5  # of real users' deliveries that fail during the outage
    outage_country: str = ""  # "" = the first tenant's busiest destination
    probe_every: float = 0.0  # seconds between release probes after a campaign; 0: no probes

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.legit_rate < 0 or self.tail < 0 or self.tenants < 1:
            raise ValueError("seconds > 0, legit_rate ≥ 0, tail ≥ 0 and at least one tenant")
        if not 0.0 <= self.attack_after < 1.0:
            raise ValueError("attack_after is a share of the window, in [0, 1)")
        if self.outage_at is not None and not (
            0.0 <= self.outage_at < 1.0 and self.outage_seconds > 0 and 0.0 < self.outage_share <= 1.0
        ):
            raise ValueError("outage_at in [0, 1), outage_seconds > 0 and outage_share in (0, 1]")
        if self.probe_every < 0:
            raise ValueError("probe_every is seconds between probes, ≥ 0 (0: no probes)")
        unknown = sorted(set(self.families) - set(ATTACK_FAMILIES))
        if unknown:
            raise ValueError(f"unknown attack families {unknown}; known: {', '.join(ATTACK_FAMILIES)}")


def window_tenants(window: WindowConfig) -> list[TenantSpec]:
    """The first ``window.tenants`` simulated tenants that keep a destination once the excluded
    countries are dropped (their shares renormalised), all starting at once (no cold-start delay)."""
    out: list[TenantSpec] = []
    for ten in default_tenants(random.Random(window.seed), 1.0):
        kept = [(c, x) for c, x in ten.countries if c not in window.exclude_countries]
        if not kept:
            continue
        tot = sum(x for _, x in kept)
        out.append(dataclasses.replace(ten, countries=tuple((c, x / tot) for c, x in kept), start=0.0))
        if len(out) >= window.tenants:
            break
    if not out:
        raise ValueError("every simulated tenant's destinations are excluded")
    return out


# ---- the log ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    t: float
    who: str  # "legit", "typo" (invalid number typed by a real user) or the attack family
    campaign: str  # "" for legit
    tenant: str
    country: str
    price: float
    action: str
    sent: bool
    challenge_passed: bool
    latency_ns: int
    session: int
    codes: tuple[str, ...]
    groups: tuple[str, ...] = ()  # a real user's families (LEGIT_FAMILIES) this request belongs to


@dataclass(slots=True)
class Campaign:
    id: str
    family: str
    tenants: tuple[str, ...]
    start: float
    end: float = 0.0  # time of its last request
    target: str = ""  # a 10k block (or country) to probe for release
    countries: tuple[str, ...] = ()
    baseline: str = ""  # what a real user in the target was answered just before the campaign


@dataclass(slots=True)
class Episode:
    """A legitimate event whose effect is measured apart (L9 surge, L10 outage)."""

    kind: str
    tenant: str
    country: str
    start: float
    end: float


@dataclass(slots=True)
class Probe:
    campaign: str
    t: float
    action: str


@dataclass(slots=True)
class SimResult:
    config: SimConfig
    rows: list[Row] = field(default_factory=list)
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    episodes: list[Episode] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    sessions_lost: int = 0
    sessions: int = 0
    samples: list[tuple[str, list[float]]] = field(default_factory=list)  # (who, features) for training


# ---- the simulation ----------------------------------------------------------------------------------


class Simulation:
    def __init__(
        self,
        config: SimConfig,
        driver: Driver,
        *,
        tenants: list[TenantSpec] | None = None,
        collect_features: bool = False,
    ) -> None:
        self.collect_features = collect_features
        self.cfg = config
        self.driver = driver
        self.rng = random.Random(config.seed)
        self.pool = NumberPool(config.seed)
        self.t0 = config.start
        self.tenants = tenants if tenants is not None else default_tenants(self.rng, config.scale)
        self.result = SimResult(config)
        self._heap: list[tuple[float, int, Callable[[], Awaitable[None]]]] = []
        self._seq = 0
        self._now = self.t0
        self._local = LocalClock()
        self._offsets: dict[str, float] = {}
        self._returning: dict[tuple[str, str], list[str]] = {}
        self._last_use: dict[str, float] = {}
        self._session = 0
        self._ipseq = 0
        self._surge: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._outage: dict[str, tuple[float, float, float]] = {}
        self._verify_p: dict[str, float] = {}
        self.window: WindowConfig | None = None  # set by for_window(): a short real-time run
        self._wake: asyncio.Event | None = None  # set by play(): a new event or a finished one

    # -- scheduling --

    def at(self, t: float, fn: Callable[[], Awaitable[None]]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn))
        if self._wake is not None:
            self._wake.set()

    async def run(self, progress: bool = False) -> SimResult:
        end = self.t0 + self.cfg.days * DAY
        hours = int(self.cfg.days * 24)
        for h in range(hours):
            self.at(self.t0 + h * HOUR, self._hour_tick(self.t0 + h * HOUR))
        self._plan_legit_events()
        self._plan_attacks()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=hours, unit="sim-h", desc=f"simulate seed {self.cfg.seed}")
        last_hour = 0
        while self._heap:
            t, _, fn = heapq.heappop(self._heap)
            if t > end + 2 * HOUR:
                break
            self._now = t
            await fn()
            if bar is not None:
                h = int((t - self.t0) // HOUR)
                if h > last_hour:
                    bar.update(min(h, hours) - last_hour)
                    last_hour = min(h, hours)
        if bar is not None:
            bar.close()
        return self.result

    # -- a short window in real time --

    @classmethod
    def for_window(cls, window: WindowConfig, driver: Driver, origin: float) -> Simulation:
        """The window's traffic, its first second at ``origin`` (epoch seconds, usually now), planned
        and ready for :meth:`play`. The plan is deterministic by seed and origin; what happens after
        each answer depends on the answers."""
        cfg = SimConfig(
            seed=window.seed,
            days=window.seconds / DAY,
            attack_from=window.attack_after * window.seconds / DAY,
            families=window.families,
            campaigns_per_family=1,
            legit_events=False,
            origin=origin,
        )
        sim = cls(cfg, driver, tenants=window_tenants(window))
        sim.window = window
        sim._plan_window()
        return sim

    @property
    def window_end(self) -> float:
        """The window's last second (the end of the multi-day run's span otherwise)."""
        return self.t0 + self.cfg.days * DAY

    def _plan_window(self) -> None:
        w = self.window
        assert w is not None
        rng = self.rng
        mid = self.t0 + w.seconds / 2
        mix = [
            (ten, cc, ten.per_day * share * self._diurnal(cc, mid))
            for ten in self.tenants
            for cc, share in ten.countries
        ]
        total = sum(x for _, _, x in mix) or 1.0
        for ten, cc, x in mix:
            for _ in range(_poisson(rng, w.legit_rate * w.seconds * x / total)):
                self.at(self.t0 + rng.random() * w.seconds, self._legit_user(ten, cc))
        arng = random.Random(w.seed * 31 + 7)
        first = self.t0 + w.attack_after * w.seconds
        spread = max(0.0, min(0.2, 1.0 - w.attack_after)) * w.seconds
        for fam in w.families:
            start = first + arng.uniform(0.0, spread)
            agent = _Attacker(self, f"{fam}-0", fam, random.Random(arng.getrandbits(32)), start)
            self.at(start, agent.begin)
        if w.outage_at is not None:
            cc = w.outage_country or self.tenants[0].countries[0][0]
            s = self.t0 + w.outage_at * w.seconds
            self._outage[cc] = (s, s + w.outage_seconds, w.outage_share)
            self.result.episodes.append(
                Episode(f"L10 outage {w.outage_share:.0%}", "*", cc, s, s + w.outage_seconds)
            )

    @property
    def probes_on(self) -> bool:
        """Release probes: every minute over days; in a window only when asked (``probe_every``)."""
        return self.window is None or self.window.probe_every > 0

    async def play(
        self,
        until: float,
        *,
        clock: Callable[[], float],
        concurrency: int = 64,
        pace: bool = True,
    ) -> SimResult:
        """Play the planned events up to ``until`` (epoch seconds) in time order, each as soon as
        ``clock()`` reaches its time (``pace``; without it, at once and one at a time: run until
        idle), at most ``concurrency`` at a time. An event that schedules an earlier one wakes the
        player; it ends when nothing is due before ``until`` and nothing is in flight. An event that
        raises stops the run and the error is raised here."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not pace:
            # run until idle in exact time order, as run() does: with several events in flight, the
            # player would start later ones (a real user a minute on) before an in-flight event had
            # scheduled its own next step (an attack's next request), and the engine would judge the
            # future on a past that had not happened yet
            concurrency = 1
        wake = self._wake = asyncio.Event()
        slots = asyncio.Semaphore(concurrency)
        running: set[asyncio.Task[None]] = set()
        failed: list[BaseException] = []

        async def one(t: float, fn: Callable[[], Awaitable[None]]) -> None:
            try:
                self._now = t  # read before the event's first await, as in run()
                await fn()
            except Exception as e:  # re-raised by the player
                failed.append(e)
            finally:
                slots.release()

        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            wake.set()  # after the discard: the player sees what is still in flight

        try:
            while not failed:
                wake.clear()
                if self._heap and self._heap[0][0] <= until:
                    delay = self._heap[0][0] - clock() if pace else 0.0
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), delay)
                        continue  # an earlier event may have been scheduled meanwhile
                    await slots.acquire()
                    t, _, fn = heapq.heappop(self._heap)
                    task = asyncio.create_task(one(t, fn))
                    running.add(task)
                    task.add_done_callback(done)
                elif running:
                    await wake.wait()
                else:
                    break
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            self._wake = None
        if failed:
            raise failed[0]
        return self.result

    # -- helpers --

    def offset(self, cc: str) -> float:
        off = self._offsets.get(cc)
        if off is None:
            blocks, _ = self.pool.blocks(cc)
            zone = number_info(blocks[0] + "00000").zone
            off = self._offsets[cc] = self._local.offset(zone, self.t0)
        return off

    def local_hour(self, cc: str, t: float) -> float:
        return ((t + self.offset(cc)) % DAY) / HOUR

    def verify_prob(self, cc: str) -> float:
        p = self._verify_p.get(cc)
        if p is None:
            rng = random.Random(zlib.crc32(f"p:{self.cfg.seed}:{cc}".encode()))
            p = self._verify_p[cc] = min(0.95, max(0.4, country_info(cc).fillback + rng.uniform(-0.05, 0.05)))
        return p

    def new_ip(self, prefix: str = "100") -> str:
        self._ipseq += 1
        n = self._ipseq
        return f"{prefix}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def record(
        self,
        req: FraudRequest,
        who: str,
        campaign: str,
        ans: Answer,
        session: int,
        groups: tuple[str, ...] = (),
    ) -> None:
        self.result.rows.append(
            Row(
                req.now,
                who,
                campaign,
                req.tenant_id,
                req.country,
                country_info(req.country).price_usd,
                ans.action,
                ans.sent is not None,
                req.challenge_passed,
                ans.latency_ns,
                session,
                ans.codes,
                groups,
            )
        )
        if self.collect_features and ans.features is not None:
            self.result.samples.append((who, ans.features))

    # -- legitimate users --

    def _diurnal(self, cc: str, t: float) -> float:
        h = self.local_hour(cc, t)
        dow = int(((t + self.offset(cc)) // DAY) % 7)
        weekday = 1.1 if dow < 5 else 0.85
        return (1.0 + 0.78 * math.cos(2 * math.pi * (h - 20.0) / 24.0)) * weekday

    def _hour_tick(self, hour_start: float) -> Callable[[], Awaitable[None]]:
        async def tick() -> None:
            rng = self.rng
            for ten in self.tenants:
                start = self.t0 + (self.cfg.attack_from * DAY if ten.start < 0 else ten.start)
                if hour_start < start:
                    continue
                for cc, share in ten.countries:
                    rate = ten.per_day * share / 24.0 * self._diurnal(cc, hour_start + 1800)
                    surge = self._surge.get((ten.id, cc))
                    if surge and surge[0] <= hour_start < surge[1]:
                        rate *= surge[2]
                    n = _poisson(rng, rate)
                    for _ in range(n):
                        self.at(hour_start + rng.random() * HOUR, self._legit_user(ten, cc))
                # L11: a few real users a day inside ranges under attack
            for camp in list(self.result.campaigns.values()):
                active = camp.target.startswith("+") and camp.start <= hour_start <= camp.end + HOUR
                if active and rng.random() < 0.25:  # ≈ 6 real users a day in the range
                    ten_id = camp.tenants[0]
                    ten = next(x for x in self.tenants if x.id == ten_id)
                    cc = camp.countries[0]
                    number = self.pool.number_in(camp.target, rng, cc)
                    if number:
                        user = self._legit_user(ten, cc, number, who="collateral")
                        self.at(hour_start + rng.random() * HOUR, user)

        return tick

    def _legit_user(
        self, ten: TenantSpec, cc: str, number: str | None = None, who: str = "legit"
    ) -> Callable[[], Awaitable[None]]:
        async def start() -> None:
            rng = self.rng
            self._session += 1
            session = self._session
            self.result.sessions += 1
            key = (ten.id, cc)
            pool = self._returning.setdefault(key, [])
            e164 = number
            kind = who
            if e164 is None:
                r = rng.random()
                if r < 0.5:
                    e164 = self._returning_user(pool, rng) if pool else None
                elif r < 0.51:
                    e164 = self._typo(cc, rng)
                    kind = "typo"
                if e164 is None:
                    e164 = self.pool.legit_number(cc, rng)
            self._last_use[e164] = self._now
            h = zlib.crc32(e164.encode())
            device = f"dev-{h:08x}" if h % 10 < 6 else None
            if cc in CGNAT_COUNTRIES and h % 10 < 3:
                ip = f"100.64.{CGNAT_COUNTRIES.index(cc)}.{h % 5}"
            else:
                ip = f"100.{(h >> 8) & 255}.{(h >> 16) & 255}.{h & 255}"
            lossy = (h >> 20) % 1000 < LOSSY_SHARE * 1000
            user = _User(ten, cc, e164, ip, device, session, kind, lossy)
            await self._attempt(user, self._now, attempt=1, challenged=False)

        return start

    def _returning_user(self, pool: list[str], rng: random.Random) -> str | None:
        """A user who verified before, at most once per 8 h (people do not log in all day long)."""
        for _ in range(3):
            e164 = rng.choice(pool)
            if self._now - self._last_use.get(e164, -1e18) > 8 * HOUR:
                return e164
        return None

    def _typo(self, cc: str, rng: random.Random) -> str:
        good = self.pool.legit_number(cc, rng)
        return good[:-1] if rng.random() < 0.5 else good + str(rng.randrange(10))

    def _groups(self, u: _User, t: float) -> tuple[str, ...]:
        g: list[str] = []
        if u.resend:
            g.append("resend")
        if u.ip.startswith("100.64."):
            g.append("cgnat")
        surge = self._surge.get((u.tenant.id, u.cc))
        if surge is not None and surge[0] <= t < surge[1]:
            g.append("surge")
        if u.lossy:
            g.append("lossy")
        if u.tenant.start < 0 or self.window is not None:  # a window's tenants are all brand new
            g.append("new_tenant")
        return tuple(g) or ("plain",)

    async def _attempt(self, u: _User, t: float, attempt: int, challenged: bool) -> None:
        rng = self.rng
        session = f"s-{self.cfg.seed}-{u.session}"  # the app's or web page's session, kept on a resend
        req = FraudRequest(u.tenant.id, u.e164, u.cc, u.ip, u.device, session, challenged, t)
        ans = await self.driver.request(req)
        self.record(req, u.who, "", ans, u.session, self._groups(u, t))
        if ans.action == "allow" and ans.sent is not None:
            u.resend = True  # what this session asks for from now on is a resend
            self._deliver(u, ans.sent, t, attempt)
            return
        if ans.action == "challenge" and not challenged:
            if rng.random() < 0.93:
                self.at(t + rng.uniform(5.0, 20.0), self._retry(u, attempt, challenged=True))
            else:
                self.result.sessions_lost += 1
            return
        if (
            ans.action == "rate_limited"
            and ans.retry_after is not None
            and ans.retry_after <= 120
            and attempt < 4
        ):
            self.at(t + ans.retry_after + rng.uniform(1.0, 10.0), self._retry(u, attempt + 1, challenged))
            return
        self.result.sessions_lost += 1

    def _retry(self, u: _User, attempt: int, challenged: bool) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            await self._attempt(u, self._now, attempt, challenged)

        return go

    def _deliver(self, u: _User, sent: Sent, t: float, attempt: int) -> None:
        rng = self.rng
        info = number_info(u.e164)
        out = self._outage.get(u.cc)
        failed = info.kind == "fixed_line" or (
            out is not None and out[0] <= t < out[1] and rng.random() < out[2]
        )
        if failed:
            self.at(t + rng.uniform(2.0, 20.0), self._failed(sent))
            if attempt < 3 and rng.random() < 0.6:
                self.at(t + rng.uniform(30.0, 60.0), self._retry(u, attempt + 1, sent.challenged))
            return
        if u.lossy and rng.random() < LOSSY_LOSS:  # never arrives, and no receipt says so
            if attempt < 3 and rng.random() < 0.8:
                self.at(t + rng.uniform(30.0, 90.0), self._retry(u, attempt + 1, sent.challenged))
            return
        if rng.random() < self.verify_prob(u.cc):
            late = rng.random() < 0.02
            delay = rng.uniform(120.0, 600.0) if late else math.exp(math.log(25.0) + 0.8 * rng.gauss(0, 1))
            if delay <= OTP_TTL:
                if rng.random() < u.tenant.report_ratio:
                    self.at(t + delay, self._verified(sent, u))
                else:
                    self.at(t + delay, self._remember(u))
                return
        if attempt < 3 and rng.random() < 0.15:
            self.at(t + rng.uniform(30.0, 60.0), self._retry(u, attempt + 1, sent.challenged))

    def _verified(self, sent: Sent, u: _User) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            await self.driver.verified(sent, self._now)
            await self._remember(u)()

        return go

    def _remember(self, u: _User) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            pool = self._returning.setdefault((u.tenant.id, u.cc), [])
            if u.who != "typo" and len(pool) < 20_000:
                pool.append(u.e164)

        return go

    def _failed(self, sent: Sent) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            await self.driver.delivery_failed(sent, self._now)

        return go

    def _plan_legit_events(self) -> None:
        if not self.cfg.legit_events:
            return
        rng = random.Random(self.cfg.seed * 7 + 1)
        day0 = self.t0 + self.cfg.attack_from * DAY
        big = self.tenants[0]
        cc = big.countries[0][0]
        s = day0 + rng.uniform(6, 14) * HOUR
        self._surge[(big.id, cc)] = (s, s + rng.uniform(3, 6) * HOUR, 5.0)
        self.result.episodes.append(Episode("L9 surge 5x", big.id, cc, s, self._surge[(big.id, cc)][1]))
        cc2 = big.countries[1][0]
        s2 = day0 + rng.uniform(2, 20) * HOUR
        self._outage[cc2] = (s2, s2 + rng.uniform(30, 90) * 60, 0.5)
        self.result.episodes.append(Episode("L10 outage 50%", "*", cc2, s2, self._outage[cc2][1]))

    # -- attacks --

    def _plan_attacks(self) -> None:
        rng = random.Random(self.cfg.seed * 31 + 7)
        day0 = self.t0 + self.cfg.attack_from * DAY
        span = (self.cfg.days - self.cfg.attack_from) * DAY
        for fam in self.cfg.families:
            for k in range(self.cfg.campaigns_per_family):
                start = day0 + rng.uniform(0.0, max(span - 14 * HOUR, HOUR))
                if fam == "A6":  # night bursts start at the first destination night of the attack day
                    start = day0
                cid = f"{fam}-{k}"
                agent = _Attacker(self, cid, fam, random.Random(rng.getrandbits(32)), start)
                self.at(start, agent.begin)

    def probe_release(self, camp: Campaign) -> None:
        """After a campaign's last request, ask every minute (a dry run, nothing counted) whether a
        real user in its range would be let through (allowed, or answered as before the campaign),
        until so or for 6 h. A window asks every ``probe_every`` seconds until its tail ends; "never"
        there means not within the run."""
        if not camp.target or not self.probes_on:
            return
        w = self.window
        every = 60.0 if w is None else w.probe_every
        last = self.window_end + w.tail if w is not None else math.inf

        def probe(i: int) -> Callable[[], Awaitable[None]]:
            async def go() -> None:
                action = await self.driver.probe(self.release_probe(camp, i))
                released = action == "allow" or (action == camp.baseline and action in DECISIONS)
                if released or i >= 360 or self._now + every > last:
                    outcome = "released" if released else "never"
                    self.result.probes.append(Probe(camp.id, self._now, outcome))
                else:
                    self.at(self._now + every, probe(i + 1))

            return go

        self.at(camp.end + every, probe(1))

    def release_probe(self, camp: Campaign, i: int) -> FraudRequest:
        """A real user's request in the campaign's target range (a fresh number, IP and device)."""
        rng = random.Random(zlib.crc32(f"{camp.id}:{i}".encode()))
        cc = camp.countries[0]
        number = self.pool.number_in(camp.target, rng, cc) if camp.target.startswith("+") else None
        if number is None:
            number = self.pool.legit_number(cc, rng)
        ip = f"100.99.{i % 250}.{rng.randrange(250)}"
        return FraudRequest(camp.tenants[0], number, cc, ip, f"dev-probe-{i}", None, False, self._now)


@dataclass(slots=True)
class _User:
    tenant: TenantSpec
    cc: str
    e164: str
    ip: str
    device: str | None
    session: int
    who: str
    lossy: bool = False  # on a lossy network (LOSSY_SHARE of users)
    resend: bool = False  # a code was sent in this session: what it asks for now is a resend


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class _Attacker:
    """One campaign: schedules its own requests and reacts to answers."""

    def __init__(self, sim: Simulation, cid: str, family: str, rng: random.Random, start: float) -> None:
        self.sim = sim
        self.id = cid
        self.family = family
        self.rng = rng
        self.start = start
        self.sent_n = 0
        self.count = 0
        self.refusals_here = 0
        self.verify = 0.0
        self.verify_bot = True
        self.farm = 0.0  # share of challenges passed (CAPTCHA farm)
        self.rate = 1.0
        self.max_requests = 1000
        self.stop_at = start + 6 * HOUR
        self.tenants: list[str] = []
        self.numbers: Callable[[], tuple[str, str]] = lambda: ("", "")
        self.ip: Callable[[], str] = lambda: "203.0.113.1"
        self.device: Callable[[], str | None] = lambda: None
        self.burst: tuple[float, float] | None = None  # (on, off) seconds for A12
        self.adaptive = False
        self.camp: Campaign | None = None

    async def begin(self) -> None:
        self._configure()
        assert self.camp is not None
        self.sim.result.campaigns[self.id] = self.camp
        if self.camp.target and self.sim.probes_on:
            self.camp.baseline = await self.sim.driver.probe(self.sim.release_probe(self.camp, 0))
        await self.step()

    def _configure(self) -> None:
        sim, rng, fam = self.sim, self.rng, self.family
        scale = sim.cfg.attack_scale
        tenant = rng.choice(sim.tenants[:5])
        self.tenants = [tenant.id]
        cc = rng.choice(HIGH_COST)
        target = ""
        countries = [cc]
        dc_ips = [f"203.0.{rng.randrange(256)}.{i}" for i in range(rng.randint(1, 10))]
        self.ip = lambda: rng.choice(dc_ips)

        if fam in ("A1", "A6"):
            p4 = sim.pool.attack_blocks(cc, 1, rng)[0]
            target = p4
            start_n = rng.randrange(0, 5000)
            seq = iter(range(start_n, 10_000))
            self.numbers = lambda: (cc, p4 + f"{next(seq, rng.randrange(10_000)):04d}")
            self.rate = rng.uniform(2.0, 10.0) if fam == "A1" else rng.uniform(5.0, 20.0)
            self.max_requests = int(rng.randint(2000, 4000) * scale)
            if fam == "A6" and sim.window is not None:  # a window plays the burst whatever the hour
                self.stop_at = self.start + rng.uniform(10, 30) * 60
            elif fam == "A6":
                local = sim.local_hour(cc, self.start)
                self.start += ((rng.uniform(1.0, 4.0) - local) % 24.0) * HOUR
                self.stop_at = self.start + rng.uniform(10, 30) * 60
            else:
                self.stop_at = self.start + 3 * HOUR
        elif fam in ("A2", "A7"):
            blocks = sim.pool.attack_blocks(cc, rng.randint(1, 20), rng)
            target = blocks[0]
            self.numbers = lambda: (cc, rng.choice(blocks) + f"{rng.randrange(10_000):04d}")
            self.rate = rng.uniform(1.0, 5.0)
            self.max_requests = int(rng.randint(2000, 4000) * scale)
            ips = [self.sim.new_ip("198") for _ in range(rng.randint(10, 100))]
            self.ip = lambda: rng.choice(ips)
            if fam == "A7":
                self.verify = rng.choice((0.05, 0.1, 0.3))
                self.verify_bot = rng.random() < 0.5
                self.farm = 0.15
            self.stop_at = self.start + 4 * HOUR
        elif fam == "A3":
            kinds = (
                PhoneNumberType.PREMIUM_RATE,
                PhoneNumberType.SHARED_COST,
                PhoneNumberType.UAN,
                PhoneNumberType.PERSONAL_NUMBER,
            )
            regions = ("GB", "DE", "FR", "IT", "ES", "US")
            blocks = sim.pool.attack_blocks(cc, 3, rng)
            target = blocks[0]

            def a3() -> tuple[str, str]:
                if rng.random() < 0.5:
                    region = rng.choice(regions)
                    n = NumberPool.typed_number(region, rng.choice(kinds), rng)
                    if n is not None:
                        return region, n
                return cc, rng.choice(blocks) + f"{rng.randrange(10_000):04d}"

            self.numbers = a3
            self.rate = rng.uniform(0.5, 2.0)
            self.max_requests = int(800 * scale)
        elif fam == "A4":
            cs = rng.sample((*HIGH_COST, *MID_COST), rng.randint(1, 3))
            countries = list(cs)
            spread = [(c, b) for c in cs for b in sim.pool.attack_blocks(c, rng.randint(20, 150), rng)]
            target = spread[0][1]
            countries = [spread[0][0], *[c for c in cs if c != spread[0][0]]]

            def a4() -> tuple[str, str]:
                c, b = rng.choice(spread)
                return c, b + f"{rng.randrange(10_000):04d}"

            self.numbers = a4
            self.rate = rng.uniform(0.05, 0.2)
            self.max_requests = int(rng.randint(1500, 5000) * scale)
            self.stop_at = self.start + 12 * HOUR
            self.ip = lambda: sim.new_ip("172")
            self.device = lambda: f"bot-{rng.getrandbits(40):x}"
        elif fam == "A5":
            cc, share = tenant.countries[min(1, len(tenant.countries) - 1)]
            countries = [cc]
            blocks = sim.pool.attack_blocks(cc, rng.randint(2, 10), rng, operator=True)
            target = blocks[0]
            self.numbers = lambda: (cc, rng.choice(blocks) + f"{rng.randrange(10_000):04d}")
            base = tenant.per_day * share / DAY
            self.rate = max(base * rng.uniform(0.5, 3.0), 0.01)
            self.max_requests = int(4000 * scale)
            self.stop_at = self.start + rng.uniform(4, 8) * HOUR
            self.ip = lambda: sim.new_ip("100")
        elif fam == "A8":
            cs = rng.sample((*HIGH_COST, *MID_COST), rng.randint(5, 15))
            countries = list(cs)
            per = {c: sim.pool.attack_blocks(c, 2, rng) for c in cs}
            target = cs[0]

            def a8() -> tuple[str, str]:
                c = rng.choice(cs)
                return c, rng.choice(per[c]) + f"{rng.randrange(10_000):04d}"

            self.numbers = a8
            one_ip = f"203.0.113.{rng.randrange(256)}"
            self.ip = lambda: one_ip
            self.rate = rng.uniform(0.5, 3.0)
            self.max_requests = int(rng.randint(1000, 2000) * scale)
        elif fam == "A9":
            cc = rng.choice(("US", "GB", "DE", "IN", "BR"))
            countries = [cc]
            victims = [sim.pool.legit_number(cc, rng) for _ in range(rng.randint(3, 10))]
            target = ""
            self.numbers = lambda: (cc, rng.choice(victims))
            self.rate = rng.uniform(0.2, 1.0)
            self.max_requests = len(victims) * rng.randint(5, 50)
        elif fam == "A10":
            blocks = sim.pool.attack_blocks(cc, 3, rng)
            target = blocks[0]
            small = [t.id for t in sim.tenants if t.id.startswith("small")] or [tenant.id]
            self.tenants = small
            self.numbers = lambda: (cc, rng.choice(blocks) + f"{rng.randrange(10_000):04d}")
            self.rate = 0.03 * len(small)
            self.max_requests = int(3000 * scale)
            self.stop_at = self.start + 8 * HOUR
            self.ip = lambda: sim.new_ip("172")
        elif fam == "A11":
            self.adaptive = True
            self.farm = 0.1
            self._a11_countries = list(rng.sample(HIGH_COST, 3))
            self._a11_moves = 0
            self._a11_block = ""
            self._new_prefix()
            cc = self._a11_countries[0]
            target = self._a11_block
            self.numbers = lambda: (self._a11_cc, self._a11_block + f"{self.rng.randrange(10_000):04d}")
            self.rate = 1.0
            self.max_requests = int(1500 * scale)
            ips = [self.sim.new_ip("198") for _ in range(200)]
            self.ip = lambda: rng.choice(ips)
        elif fam == "A13":  # pays a solving service: every challenge is passed, no code is verified
            blocks = sim.pool.attack_blocks(cc, rng.randint(1, 10), rng)
            target = blocks[0]
            self.numbers = lambda: (cc, rng.choice(blocks) + f"{rng.randrange(10_000):04d}")
            self.rate = rng.uniform(0.5, 3.0)
            self.farm = 1.0
            self.max_requests = int(rng.randint(1000, 3000) * scale)
            ips = [self.sim.new_ip("198") for _ in range(rng.randint(20, 200))]
            self.ip = lambda: rng.choice(ips)
            self.device = lambda: f"farm-{rng.getrandbits(40):x}"
            self.stop_at = self.start + 4 * HOUR
        elif fam == "A12":
            blocks = sim.pool.attack_blocks(cc, rng.randint(2, 6), rng)
            target = blocks[0]
            self.numbers = lambda: (cc, rng.choice(blocks) + f"{rng.randrange(10_000):04d}")
            self.rate = rng.uniform(2.0, 5.0)
            self.burst = (rng.uniform(60.0, 120.0), rng.uniform(360.0, 600.0))
            self.max_requests = int(3000 * scale)
            self.stop_at = self.start + 3 * HOUR
        else:
            raise ValueError(f"unknown attack family {fam}")
        if sim.window is not None:  # attack requests stay inside the window
            self.stop_at = min(self.stop_at, sim.window_end)
        self.camp = Campaign(
            self.id, fam, tuple(self.tenants), self.start, self.start, target, tuple(countries)
        )

    def _new_prefix(self) -> None:
        rng = self.rng
        self._a11_moves += 1
        self._a11_cc = self._a11_countries[(self._a11_moves // 4) % len(self._a11_countries)]
        self._a11_block = self.sim.pool.attack_blocks(self._a11_cc, 1, rng)[0]
        self._a11_quota = rng.randint(10, 50)
        self.refusals_here = 0

    def _next_gap(self) -> float:
        gap = self.rng.expovariate(self.rate)
        if self.burst is not None:
            on, off = self.burst
            phase = (self.sim._now + gap - self.start) % (on + off)
            if phase > on:
                gap += on + off - phase
        return gap

    async def step(self) -> None:
        sim = self.sim
        now = sim._now
        if now < self.start:
            sim.at(self.start, self.step)
            return
        if self.count >= self.max_requests or now > self.stop_at:
            assert self.camp is not None
            sim.probe_release(self.camp)
            return
        self.count += 1
        cc, number = self.numbers()
        tenant = self.tenants[self.count % len(self.tenants)]
        req = FraudRequest(tenant, number, cc, self.ip(), self.device(), None, False, now)
        await self._send(req)
        assert self.camp is not None
        self.camp.end = now
        sim.at(now + self._next_gap(), self.step)

    async def _send(self, req: FraudRequest) -> None:
        sim, rng = self.sim, self.rng
        ans = await sim.driver.request(req)
        sim.record(req, self.family, self.id, ans, 0)
        if ans.action == "challenge" and rng.random() < self.farm:
            req2 = FraudRequest(
                req.tenant_id,
                req.e164,
                req.country,
                req.client_ip,
                req.device_id,
                None,
                True,
                req.now + rng.uniform(3.0, 10.0),
            )
            sim.at(req2.now, lambda: self._send_passed(req2))
            return
        self._after(ans, req)

    async def _send_passed(self, req: FraudRequest) -> None:
        ans = await self.sim.driver.request(req)
        self.sim.record(req, self.family, self.id, ans, 0)
        self._after(ans, req)

    def _after(self, ans: Answer, req: FraudRequest) -> None:
        sim, rng = self.sim, self.rng
        if ans.sent is not None:
            self.sent_n += 1
            if self.verify and rng.random() < self.verify:
                delay = (
                    rng.uniform(3.0, 8.0)
                    if self.verify_bot
                    else math.exp(math.log(25.0) + 0.8 * rng.gauss(0, 1))
                )
                sent = ans.sent

                async def v() -> None:
                    await sim.driver.verified(sent, sim._now)

                sim.at(req.now + delay, v)
        elif self.adaptive:
            self.refusals_here += 1
        if self.adaptive:
            self._a11_quota -= 1
            if self.refusals_here >= 1 or self._a11_quota <= 0:
                pause = rng.uniform(60.0, 600.0) if self.refusals_here else 0.0
                self._new_prefix()
                if self.camp is not None:
                    self.camp.target = self._a11_block
                    if self._a11_cc not in self.camp.countries:
                        self.camp.countries = (*self.camp.countries, self._a11_cc)
                if pause:
                    self.start = sim._now + pause
