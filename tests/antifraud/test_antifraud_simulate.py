"""The traffic simulator (deterministic, every family present, people behave as modelled) and the
re-implemented baselines."""

from __future__ import annotations

from collections import Counter

import pytest

from antifraud.baselines import CountryHourlyCap, PrefixConversionBlock, VolumeOverBaseline
from antifraud.decision import FraudRequest
from antifraud.evaluate import Figures, add_result, report, stop_index
from antifraud.simulate import (
    ATTACK_FAMILIES,
    DAY,
    LEGIT_FAMILIES,
    Answer,
    Sent,
    SimConfig,
    SimResult,
    Simulation,
)
from tests.antifraud.conftest import T0


class AllowAll:
    """A driver that sends everything and remembers what users verified."""

    def __init__(self) -> None:
        self.verifications: list[FraudRequest] = []
        self.failed = 0

    async def request(self, req: FraudRequest) -> Answer:
        return Answer("allow", None, Sent(req, False))

    async def verified(self, sent: Sent, at: float) -> None:
        assert at >= sent.req.now
        self.verifications.append(sent.req)

    async def delivery_failed(self, sent: Sent, at: float) -> None:
        self.failed += 1

    async def probe(self, req: FraudRequest) -> str:
        return "allow"


def small(seed: int, **kw: object) -> SimConfig:
    return SimConfig(seed=seed, days=2.0, attack_from=1.0, scale=0.05, attack_scale=0.05, **kw)  # type: ignore[arg-type]


async def run(cfg: SimConfig) -> tuple[SimResult, AllowAll]:
    drv = AllowAll()
    return await Simulation(cfg, drv).run(), drv


async def test_the_same_seed_gives_the_same_traffic() -> None:
    a, _ = await run(small(5))
    b, _ = await run(small(5))
    c, _ = await run(small(6))
    key = [(r.t, r.who, r.tenant, r.country) for r in a.rows]
    assert key == [(r.t, r.who, r.tenant, r.country) for r in b.rows]
    assert key != [(r.t, r.who, r.tenant, r.country) for r in c.rows]


async def test_every_family_and_the_legitimate_cases_are_there() -> None:
    res, drv = await run(small(7))
    who = Counter(r.who for r in res.rows)
    assert set(ATTACK_FAMILIES) <= set(who), who
    assert who["legit"] > 1000 and who["typo"] > 0
    assert {c.family for c in res.campaigns.values()} == set(ATTACK_FAMILIES)
    assert {e.kind.split()[0] for e in res.episodes} == {"L9", "L10"}
    legit = [r for r in res.rows if r.who == "legit"]
    assert (
        min(r.t for r in legit)
        < res.config.start + DAY
        < min(r.t for r in res.rows if r.who in ATTACK_FAMILIES)
    ), "attacks come after a day of history"
    # real users verify most codes (route-quality priors 60–88 %), attackers never do (A7 aside)
    legit_sent = sum(1 for r in legit if r.sent)
    verified_legit = sum(
        1 for q in drv.verifications if not q.client_ip or not q.client_ip.startswith(("198.", "203."))
    )
    assert 0.55 < verified_legit / legit_sent < 0.92
    assert drv.failed > 0  # landlines, the outage
    # the L12 tenant never reports some verifications; the cold-start tenant starts on the attack day
    assert min(r.t for r in legit if r.tenant == "newbie") >= res.config.start + DAY
    # every real-user family is played, and each request is labelled with the families it is in
    groups = Counter(g for r in legit for g in r.groups)
    assert set(groups) == set(LEGIT_FAMILIES), groups
    assert all(r.groups for r in legit) and not any("plain" in r.groups and len(r.groups) > 1 for r in legit)
    resends = [r for r in legit if "resend" in r.groups]
    assert all(r.session for r in resends) and len({r.session for r in resends}) > 10


async def test_attackers_move_on_and_real_users_retry() -> None:
    class Refuse(AllowAll):
        async def request(self, req: FraudRequest) -> Answer:
            bot = req.client_ip is not None and not req.client_ip.startswith("100.")
            if bot or req.country in ("UZ", "KG", "TJ"):
                return Answer("challenge", None, None)
            return Answer("allow", None, Sent(req, False))

    drv = Refuse()
    res = await Simulation(small(8, families=("A11",)), drv).run()
    a11 = [r for r in res.rows if r.who == "A11"]
    assert len({r.country for r in a11}) >= 2, "the prober moved to another country"
    passed = [r for r in res.rows if r.who == "legit" and r.challenge_passed]
    assert passed, "real users pass challenges and come back"


def test_stop_time_is_when_95_percent_are_refused_from_then_on() -> None:
    rows = [(float(i), s, 0.1) for i, s in enumerate([True] * 10 + [False] * 100)]
    assert stop_index(rows) == 5  # from the 6th on: 5 sent of 105 (95.2 % refused); from the 5th: 94.3 %
    assert stop_index([(0.0, True, 0.1)]) == 1


async def test_the_report_puts_detectors_side_by_side() -> None:
    res, _ = await run(small(9, families=("A1", "A3")))
    figs = [add_result(Figures("smsgw"), res), add_result(Figures("other"), res)]
    text = report(figs, [9], "test-model")
    assert "| A1 |" in text and "| A3 |" in text and "| all |" in text
    assert "smsgw: refused count / cost" in text and "other: stop / release" in text
    assert "L10 route outage" in text and "typos refused" in text
    for fam in LEGIT_FAMILIES:
        assert f"| {fam} | " in text


def req(e164: str, t: float, tenant: str = "t", country: str = "UZ") -> FraudRequest:
    return FraudRequest(tenant, e164, country, None, None, None, False, t)


async def test_country_hourly_cap_blocks_the_whole_country_for_hours() -> None:
    b = CountryHourlyCap(learn_until=T0, factor=1.5, floor=3)
    t = T0 - 7200
    for i in range(4):  # history: at most 4 an hour → cap 6
        assert (await b.request(req(f"+99890123{i:04d}", t + i))).action == "allow"
    t = T0 + 10
    actions = [(await b.request(req(f"+99890123{i:04d}", t + i))).action for i in range(8)]
    assert actions == ["allow"] * 6 + ["block"] * 2
    assert await b.probe(req("+998901239999", t + 11 * 3600)) == "block"
    assert await b.probe(req("+998901239999", t + 13 * 3600)) == "allow"


async def test_prefix_conversion_block_waits_for_expired_codes() -> None:
    b = PrefixConversionBlock()
    t = T0
    for i in range(12):
        assert (await b.request(req(f"+99890123{i:04d}", t + i))).action == "allow"
    assert await b.probe(req("+998901239999", t + 60)) == "allow", "codes still pending"
    assert (await b.request(req("+998901239998", t + 400))).action == "block"
    assert await b.probe(req("+998901239999", t + 400 + 301)) == "allow", "the first block lasts 5 min"


async def test_volume_over_baseline_needs_two_days_of_history() -> None:
    b = VolumeOverBaseline(minimum=20)
    t = T0
    for i in range(30):
        assert (await b.request(req(f"+99890123{i:04d}", t + i))).action == "allow"
    for h in range(49):  # a quiet history, one an hour
        await b.request(req(f"+99890124{h:04d}", t + 3600 * (h + 1)))
    t += 50 * 3600
    actions = [(await b.request(req(f"+99890125{i:04d}", t + i))).action for i in range(40)]
    assert "block" in actions


@pytest.mark.parametrize("seed", [1, 2])
def test_configs_start_on_different_days(seed: int) -> None:
    assert SimConfig(seed=seed).start != SimConfig(seed=seed + 1).start
