"""Demo traffic for the compose stack: OTPs to a few countries, most of them verified, some conversions.

Creates a tenant with ``smsgw tenant create`` (same database as the gateway), then loops: request an
OTP, read the code from the sim-carrier's inbox, verify it with a per-country probability, and report
a conversion event now and then. Stdlib only (plus phonenumbers, which the smsgw image has).

    python deploy/demo/traffic.py --gateway http://127.0.0.1:8080 --sim http://127.0.0.1:8025 --count 20

Prints one JSON line at the end: what it sent and verified per country, for checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import phonenumbers

# country → share of OTPs the demo users verify (NG low: what a pumped country looks like)
VERIFY_SHARE = {"DE": 0.85, "FR": 0.8, "US": 0.75, "BR": 0.7, "NG": 0.2}
FUNNEL = (("signup", 0.5), ("order", 0.4), ("payment", 0.6))


def http(method: str, url: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def random_mobile(country: str, rng: random.Random) -> str:
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    digits = str(example.national_number)
    for _ in range(100):
        national = digits[:3] + "".join(rng.choice("0123456789") for _ in digits[3:])
        number = phonenumbers.parse(f"+{example.country_code}{national}")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"+{example.country_code}{digits}"


def create_tenant(name: str) -> str:
    out = subprocess.run(
        ["smsgw", "tenant", "create", name, "--countries", "ALL"], capture_output=True, text=True, check=True
    )
    return str(json.loads(out.stdout.strip().splitlines()[-1])["api_key"])


def code_for(sim: str, to: str, seconds: float = 10.0) -> str | None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _, msgs = http("GET", f"{sim}/inbox?{urllib.parse.urlencode({'to': to})}")
        if msgs:
            m = re.search(r"\b(\d{4,10})\b", msgs[0].get("text", ""))
            if m:
                return m.group(1)
        time.sleep(0.1)
    return None


def run(gateway: str, sim: str, key: str, count: int, pause_s: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    tally: dict[str, dict[str, int]] = {}
    i = 0
    while count <= 0 or i < count:
        country = rng.choice(sorted(VERIFY_SHARE))
        to = random_mobile(country, rng)
        status, otp = http(
            "POST",
            f"{gateway}/v1/otp",
            {
                "to": to,
                "client_ip": f"198.51.100.{rng.randint(1, 254)}",
                "device_id": f"demo-{rng.getrandbits(48):x}",
            },
            key,
        )
        row = tally.setdefault(country, {"requested": 0, "accepted": 0, "verified": 0, "events": 0})
        row["requested"] += 1
        i += 1
        if status == 202:
            row["accepted"] += 1
            code = code_for(sim, to)
            if code and rng.random() < VERIFY_SHARE[country]:
                vs, _ = http("POST", f"{gateway}/v1/otp/{otp['id']}/verify", {"code": code}, key)
                if vs == 200:
                    row["verified"] += 1
                    for event, share in FUNNEL:
                        if rng.random() >= share:
                            break
                        es, _ = http(
                            "POST", f"{gateway}/v1/events", {"otp_id": otp["id"], "event": event}, key
                        )
                        row["events"] += es == 202
        time.sleep(pause_s)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--sim", default=os.environ.get("SIM_CARRIER_URL", "http://127.0.0.1:8025"))
    parser.add_argument("--api-key", default=os.environ.get("SMSGW_API_KEY", ""))
    parser.add_argument("--count", type=int, default=0, help="OTPs to request; 0 = until stopped")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between OTPs")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    key = args.api_key or create_tenant(f"demo-{int(time.time())}")
    print(json.dumps(run(args.gateway, args.sim, key, args.count, args.pause, args.seed)), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
