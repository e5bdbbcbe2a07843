"""Simple re-implementations of what commercial platforms document, to compare on the same traffic.

Each is a :class:`~antifraud.simulate.Driver` (it decides, and hears about verifications and
delivery failures), so ``evaluate.py`` runs it on the same simulated traffic as the engine. They are
written from the vendors' public documentation (``shared/notes/fraud.md`` §(a)); parameters the
documentation leaves open are chosen in the vendors' favour and named here.

* :class:`CountryHourlyCap` (Plivo Fraud Shield, "MPH"): per tenant and destination country, at most
  ``cap`` SMS per clock hour, the cap recommended from the tenant's own history (1.5 × the busiest
  hour seen, at least 10); a breach blocks the country for that tenant for 12 h ("Block & Alert").
* :class:`VolumeOverBaseline` (Vonage Fraud Defender volumetric rule): per tenant and country, SMS in
  the last 12 h above mean + 6 σ of the 12 h volumes in its history, with at least 1 000 SMS in the
  12 h and 48 h of history → block the country for 24 h.
* :class:`PrefixConversionBlock` (Twilio Verify Fraud Guard, as documented): per tenant and prefix
  (E.164 minus 4 digits), conversion judged on codes whose TTL has passed; ≥ 10 such codes in the
  last hour and conversion < 35 % → block the prefix for 5 min, doubling on each repeat, up to 12 h.

None of them checks number types (the vendors' pumping guards do not document it; the gateway's own
400 ``invalid_number`` still refuses invalid numbers, which is why typos are left out of the figures).
"""

from __future__ import annotations

import abc
import math
import time
from collections import defaultdict, deque

from antifraud.decision import FraudRequest
from antifraud.numbers import number_info
from antifraud.simulate import OTP_TTL, Answer, Sent

HOUR = 3600.0


class _Base(abc.ABC):
    name = "baseline"

    @abc.abstractmethod
    def refuse(self, req: FraudRequest, dry: bool) -> bool:
        """True when the request is refused; ``dry`` (a release probe) must not change state."""

    def sent(self, req: FraudRequest) -> None:
        return None

    async def request(self, req: FraudRequest) -> Answer:
        t0 = time.perf_counter_ns()
        info = number_info(req.e164)
        if not info.valid:  # the gateway answers 400 invalid_number before any fraud check
            return Answer("block", None, None, time.perf_counter_ns() - t0, ("number_invalid",))
        if self.refuse(req, dry=False):
            return Answer("block", None, None, time.perf_counter_ns() - t0, (self.name,))
        self.sent(req)
        return Answer("allow", None, Sent(req, False), time.perf_counter_ns() - t0)

    async def verified(self, sent: Sent, at: float) -> None:
        return None

    async def delivery_failed(self, sent: Sent, at: float) -> None:
        return None

    async def probe(self, req: FraudRequest) -> str:
        return "block" if self.refuse(req, dry=True) else "allow"


class CountryHourlyCap(_Base):
    name = "country_hourly_cap"

    def __init__(self, learn_until: float, factor: float = 1.5, floor: int = 10, block_hours: float = 12.0):
        self.learn_until = learn_until
        self.factor = factor
        self.floor = floor
        self.block_for = block_hours * HOUR
        self.hourly: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        self.blocked: dict[tuple[str, str], float] = {}

    def cap(self, key: tuple[str, str]) -> int:
        hist = [n for h, n in self.hourly[key].items() if h * HOUR < self.learn_until]
        return max(self.floor, math.ceil(self.factor * max(hist, default=0)))

    def refuse(self, req: FraudRequest, dry: bool) -> bool:
        key = (req.tenant_id, req.country)
        if self.blocked.get(key, 0.0) > req.now:
            return True
        hour = int(req.now // HOUR)
        if req.now >= self.learn_until and self.hourly[key].get(hour, 0) + 1 > self.cap(key):
            if not dry:
                self.blocked[key] = req.now + self.block_for
            return True
        return False

    def sent(self, req: FraudRequest) -> None:
        h = self.hourly[(req.tenant_id, req.country)]
        hour = int(req.now // HOUR)
        h[hour] = h.get(hour, 0) + 1


class VolumeOverBaseline(_Base):
    name = "volume_over_baseline"

    def __init__(
        self, sigmas: float = 6.0, minimum: int = 1000, history_hours: int = 48, block_hours: float = 24
    ):
        self.sigmas = sigmas
        self.minimum = minimum
        self.history_hours = history_hours
        self.block_for = block_hours * HOUR
        self.hourly: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        self.first: dict[tuple[str, str], float] = {}
        self.blocked: dict[tuple[str, str], float] = {}
        self._stats: dict[tuple[str, str], tuple[int, float, float]] = {}

    def _baseline(self, key: tuple[str, str], hour: int) -> tuple[float, float]:
        cached = self._stats.get(key)
        if cached is not None and cached[0] == hour:
            return cached[1], cached[2]
        h = self.hourly[key]
        first = int(self.first[key] // HOUR)
        sums = [sum(h.get(x, 0) for x in range(s, s + 12)) for s in range(first, hour - 12)]
        mean = sum(sums) / len(sums) if sums else 0.0
        var = sum((x - mean) ** 2 for x in sums) / len(sums) if sums else 0.0
        self._stats[key] = (hour, mean, math.sqrt(var))
        return mean, math.sqrt(var)

    def refuse(self, req: FraudRequest, dry: bool) -> bool:
        key = (req.tenant_id, req.country)
        if self.blocked.get(key, 0.0) > req.now:
            return True
        if key not in self.first or req.now - self.first[key] < self.history_hours * HOUR:
            return False
        hour = int(req.now // HOUR)
        h = self.hourly[key]
        last12 = sum(h.get(x, 0) for x in range(hour - 11, hour + 1))
        mean, sd = self._baseline(key, hour)
        if last12 + 1 >= self.minimum and last12 + 1 > mean + self.sigmas * sd:
            if not dry:
                self.blocked[key] = req.now + self.block_for
            return True
        return False

    def sent(self, req: FraudRequest) -> None:
        key = (req.tenant_id, req.country)
        self.first.setdefault(key, req.now)
        h = self.hourly[key]
        hour = int(req.now // HOUR)
        h[hour] = h.get(hour, 0) + 1


class PrefixConversionBlock(_Base):
    name = "prefix_conversion_block"

    def __init__(self, minimum: int = 10, conversion: float = 0.35, first_block: float = 300.0):
        self.minimum = minimum
        self.conversion = conversion
        self.first_block = first_block
        self.sends: dict[tuple[str, str], deque[list[float]]] = defaultdict(deque)  # [t, verified]
        self.blocked: dict[tuple[str, str], float] = {}
        self.strikes: dict[tuple[str, str], int] = defaultdict(int)
        self._by_sent: dict[tuple[str, str, float], list[float]] = {}

    @staticmethod
    def key(req: FraudRequest) -> tuple[str, str]:
        return req.tenant_id, req.e164[:-4]

    def refuse(self, req: FraudRequest, dry: bool) -> bool:
        key = self.key(req)
        if self.blocked.get(key, 0.0) > req.now:
            return True
        q = self.sends[key]
        while q and q[0][0] < req.now - HOUR - OTP_TTL:
            old = q.popleft()
            self._by_sent.pop((key[0], key[1], old[0]), None)
        expired = [s for s in q if s[0] <= req.now - OTP_TTL]
        if len(expired) >= self.minimum:
            conv = sum(s[1] for s in expired) / len(expired)
            if conv < self.conversion:
                if not dry:
                    self.strikes[key] += 1
                    span = min(self.first_block * 2 ** (self.strikes[key] - 1), 12 * HOUR)
                    self.blocked[key] = req.now + span
                    q.clear()
                return True
        return False

    def sent(self, req: FraudRequest) -> None:
        key = self.key(req)
        entry = [req.now, 0.0]
        self.sends[key].append(entry)
        self._by_sent[(key[0], key[1], req.now)] = entry

    async def verified(self, sent: Sent, at: float) -> None:
        key = self.key(sent.req)
        entry = self._by_sent.get((key[0], key[1], sent.req.now))
        if entry is not None:
            entry[1] = 1.0
