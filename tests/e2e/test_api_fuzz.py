"""Every endpoint of /openapi.json, fuzzed against a running gateway: bad input gets the contract's error
shape with a specific code, never a 500.

Schemathesis generates the requests from the gateway's own OpenAPI document: bodies, path parameters
and headers that fit the schema (positive) and that break it (negative: wrong types, missing or extra
fields, out-of-range values, odd strings). Endpoints whose body the document leaves open (carrier
receipts, documents, the brand profile) get arbitrary bytes and JSON from Hypothesis. Generation is
seeded, so CI sees the same cases on every run; ``SMSGW_FUZZ_EXAMPLES`` raises the count for a longer
hunt and ``SMSGW_FUZZ_RANDOM=1`` draws new cases each run
(``SMSGW_FUZZ_RANDOM=1 SMSGW_FUZZ_EXAMPLES=500 pytest tests/e2e/test_api_fuzz.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.app  # noqa: F401  (registers every route, so the document lists them all)
from gateway import __version__
from gateway.errors import ERROR_CODES
from gateway.openapi import build_spec
from tests.conftest import free_port
from tests.e2e.procs import Procs, sim_config

EXAMPLES = int(os.environ.get("SMSGW_FUZZ_EXAMPLES", "12"))
SEEDED = os.environ.get("SMSGW_FUZZ_RANDOM", "") != "1"

schema = schemathesis.openapi.from_dict(build_spec(__version__))
schema.config.generation.update(
    modes=list(schemathesis.GenerationMode), max_examples=EXAMPLES, deterministic=SEEDED
)


@dataclass
class Live:
    url: str
    key: str
    session: requests.Session


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    procs = Procs(tmp_path_factory.mktemp("fuzz"))
    try:
        sim = procs.sim_carrier()
        port = free_port()
        procs.gateway(port, sim_config(port, sim))
        key = procs.tenant("fuzz", scopes="send,verify,onboarding,admin")
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {key}"
            yield Live(f"http://127.0.0.1:{port}", key, session)
    finally:
        procs.stop_all()


def check_answer(resp: Any, what: str) -> None:  # a requests or a schemathesis response
    """No 5xx but the two the contract allows (a dependency down, no route up); every error in the
    contract's shape with a known code."""
    assert resp.status_code < 500 or resp.status_code == 503, f"{what}: {resp.status_code} {resp.text[:300]}"
    if resp.status_code < 400:
        return
    try:
        body: Any = resp.json()
    except ValueError:
        raise AssertionError(
            f"{what}: {resp.status_code} without a JSON error body: {resp.text[:300]}"
        ) from None
    err = body.get("error") if isinstance(body, dict) else None
    assert isinstance(err, dict), f"{what}: no error object: {body}"
    assert err.get("code") in ERROR_CODES and isinstance(err.get("message"), str), f"{what}: {body}"
    if resp.status_code == 503:
        assert err["code"] in {"unavailable", "no_route", "not_ready"}, f"{what}: {body}"


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case, live: Live) -> None:
    resp = case.call(base_url=live.url, session=live.session, timeout=10)
    check_answer(resp, f"{case.method} {case.formatted_path} {str(case.body)[:200]}")


OPEN_BODIES = [
    ("POST", "/v1/carriers/sim/receipts"),
    ("POST", "/v1/carriers/sim/inbound"),
    ("POST", "/v1/sender-ids/sid_00000000000000000000/documents"),
    ("PUT", "/v1/brand"),
    ("POST", "/v1/otp"),
    ("POST", "/v1/events"),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
raw_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@pytest.mark.parametrize(("method", "path"), OPEN_BODIES)
def test_arbitrary_bodies_get_a_clear_error(live: Live, method: str, path: str) -> None:
    @settings(max_examples=EXAMPLES * 2, deadline=None, derandomize=SEEDED, database=None)
    @given(body=raw_bodies, content_type=st.sampled_from(["application/json", "text/plain", "", "x/y; q=1"]))
    def probe(body: bytes, content_type: str) -> None:
        resp = live.session.request(
            method, live.url + path, data=body, headers={"Content-Type": content_type}, timeout=10
        )
        check_answer(resp, f"{method} {path} {body[:100]!r} ({content_type})")

    probe()


def test_every_endpoint_of_the_gateway_is_in_the_fuzzed_document(live: Live) -> None:
    served = requests.get(f"{live.url}/openapi.json", timeout=5).json()
    assert served["paths"] == schema.raw_schema["paths"]
    assert len(served["paths"]) > 30
