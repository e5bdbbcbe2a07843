"""Tenant isolation swept over the route table: tenant A creates one of everything (OTP, message,
sender-ID registration with a document, privacy request, consent, fraud list entries and decisions,
webhook, brand profile, conversion event); tenant B, holding every scope, then aims each endpoint at
A's ids and A's number. B always gets 404 or 403, or an answer about B alone: never A's data, and
nothing B does changes what A sees. Every route of the app is either probed here or exempted with the
reason, so a new endpoint cannot be added without deciding which."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import FormData

from gateway.app import create_app
from tests.gateway.harness import Gw, make_settings
from tests.gateway.test_senderid_api import PDF

ALL = "send,verify,onboarding,admin"
# the destinations both tenants declare (tenant create --countries): anti-fraud is enforced here, and a
# declared country is not "unusual" for a new tenant at any hour of the day there
COUNTRIES = "DE,AE,ID,US,GB,FR"
N_A = "+4915123456789"  # A's subject
N_BLOCKED = "+4915198765432"  # on A's block list
A_PREFIX = "+4930"  # on A's allow list


@dataclass
class World:
    gw: Gw
    a: str  # A's key (every scope)
    b: str  # B's key (every scope)
    a_tenant: str
    b_tenant: str
    otp: str
    code: str
    message: str
    registration: str
    markers: dict[str, str] = field(default_factory=dict)  # what of A's must never reach B
    problems: list[str] = field(default_factory=list)

    async def as_b(
        self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (404, 403)
    ) -> Any:
        """B's request; its status must be one of ``ok`` and its answer must carry none of A's data."""
        st, out, _ = await self.gw.call(method, path, self.b, json=body)
        if st not in ok:
            self.problems.append(f"{method} {path} as B: {st} (wanted {ok}): {out}")
        self.no_leak(f"{method} {path}", out, sent=path + json.dumps(body))
        return out

    async def as_a(self, method: str, path: str, body: Any = None) -> Any:
        st, out, _ = await self.gw.call(method, path, self.a, json=body)
        assert st in (200, 201, 202), (method, path, st, out)
        return out

    def no_leak(self, what: str, out: Any, sent: str = "") -> None:
        """None of A's markers in ``out`` (but for what B itself sent, which an answer may echo)."""
        text = out if isinstance(out, str) else json.dumps(out)
        for name, marker in self.markers.items():
            if marker in text and marker not in sent:
                self.problems.append(f"{what} as B leaks A's {name}: {text[:300]}")

    def check(self, cond: bool, what: str) -> None:
        if not cond:
            self.problems.append(what)


async def build_world(gw: Gw) -> World:
    a = await gw.tenant("acme-isolated", scopes=ALL, countries=COUNTRIES, fraud_mode="enforce")
    b = await gw.tenant("intruder", scopes=ALL, countries=COUNTRIES, fraud_mode="enforce")
    whoami = lambda key: gw.call("GET", "/v1/whoami", key)  # noqa: E731
    a_tenant = (await whoami(a))[1]["tenant_id"]
    b_tenant = (await whoami(b))[1]["tenant_id"]

    async def ok(method: str, path: str, body: Any = None) -> Any:
        st, out, _ = await gw.call(method, path, a, json=body)
        assert st in (200, 201, 202), (method, path, st, out)
        return out

    otp = (await ok("POST", "/v1/otp", {"to": N_A}))["id"]
    await ok("POST", "/v1/consent", {"phone": N_A, "status": "opted_in"})
    message = (
        await ok(
            "POST", "/v1/messages", {"to": N_A, "sender_id": "ACME", "body": "Your parcel A-7731 is here"}
        )
    )["id"]
    await gw.settle()
    code = gw.code_for(N_A)
    reg = await ok(
        "POST",
        "/v1/sender-ids",
        {
            "sender": "ACMEOTP",
            "brand": "Acme",
            "use_case": "login codes",
            "countries": ["AE"],
            "templates": [],
        },
    )
    form = FormData()
    form.add_field("code", "company_registration")
    form.add_field("file", PDF, filename="acme-registry.pdf", content_type="application/pdf")
    resp = await gw.client.post(
        f"/v1/sender-ids/{reg['id']}/documents", data=form, headers={"Authorization": f"Bearer {a}"}
    )
    assert resp.status == 201, await resp.text()
    await ok("POST", "/v1/events", {"otp_id": otp, "event": "signup"})
    await ok("POST", "/v1/privacy/export", {"phone": N_A})
    await ok("POST", "/v1/fraud/block", {"kind": "number", "value": N_BLOCKED})
    await ok("POST", "/v1/fraud/allow", {"kind": "prefix", "value": A_PREFIX})
    st, _, _ = await gw.call("POST", "/v1/otp", a, json={"to": N_BLOCKED})
    assert st == 403  # refused by A's block list, and the decision logged
    await ok(
        "PUT", "/v1/webhook", {"url": "https://hooks.acme.example/sms", "secret": "acme-webhook-secret-1"}
    )
    await ok("PUT", "/v1/brand", {"name": "Acme Sendco", "countries": {"ID": {"local_entity": True}}})
    w = World(gw, a, b, a_tenant, b_tenant, otp, code, message, reg["id"])
    w.markers = {
        "tenant id": a_tenant,
        "tenant name": "acme-isolated",
        "OTP id": otp,
        "message id": message,
        "registration id": reg["id"],
        "document name": "acme-registry.pdf",
        "message body": "A-7731",
        "number": N_A,
        "blocked number": N_BLOCKED,
        "allowed prefix": A_PREFIX,
        "webhook": "hooks.acme.example",
        "brand name": "Acme Sendco",
    }
    return w


Probe = Callable[[World], Awaitable[None]]


async def otp_by_id(w: World) -> None:
    await w.as_b("GET", f"/v1/otp/{w.otp}")
    await w.as_b("POST", f"/v1/otp/{w.otp}/verify", {"code": w.code})  # A's own, right code
    st, got, _ = await w.gw.call("GET", f"/v1/otp/{w.otp}", w.a)
    w.check(st == 200 and got["status"] != "verified", f"B's verify changed A's OTP: {st} {got}")


async def message_by_id(w: World) -> None:
    await w.as_b("GET", f"/v1/messages/{w.message}")


async def events_on_a_ids(w: World) -> None:
    await w.as_b("POST", "/v1/events", {"otp_id": w.otp, "event": "payment"})
    await w.as_b("POST", "/v1/events", {"message_id": w.message, "event": "click"})


async def registration_by_id(w: World) -> None:
    reg = w.registration
    before = await w.as_a("GET", f"/v1/sender-ids/{reg}")
    await w.as_b("GET", f"/v1/sender-ids/{reg}")
    await w.as_b("GET", f"/v1/sender-ids/{reg}/audit")
    await w.as_b("POST", f"/v1/sender-ids/{reg}/submit", {})
    await w.as_b("POST", f"/v1/sender-ids/{reg}/approve", {"country": "AE"})
    await w.as_b("POST", f"/v1/sender-ids/{reg}/reject", {"country": "AE", "reason": "not yours"})
    form = FormData()
    form.add_field("code", "loa")
    form.add_field("file", PDF, filename="intruder.pdf", content_type="application/pdf")
    resp = await w.gw.client.post(
        f"/v1/sender-ids/{reg}/documents", data=form, headers={"Authorization": f"Bearer {w.b}"}
    )
    w.check(resp.status == 404, f"B's upload onto A's registration: {resp.status}")
    w.no_leak("POST documents", await resp.text())
    mine = await w.as_a("GET", f"/v1/sender-ids/{reg}")
    w.check(mine == before, f"B's calls changed A's registration: {before} -> {mine}")


async def registration_list(w: World) -> None:
    out = await w.as_b("GET", "/v1/sender-ids", ok=(200,))
    w.check(isinstance(out, dict), f"the list is not an object: {out}")
    # the same sender name is B's to file for itself (a draft of its own, not A's)
    await w.as_b(
        "POST",
        "/v1/sender-ids",
        {
            "sender": "ACMEOTP",
            "brand": "Intruder",
            "use_case": "login codes",
            "countries": ["AE"],
            "templates": [],
        },
        ok=(201, 409),
    )


async def privacy_subject(w: World) -> None:
    out = await w.as_b("POST", "/v1/privacy/export", {"phone": N_A}, ok=(200,))
    w.check(
        not out["otps"] and not out["messages"] and not out["events"] and not out["consent"],
        f"B's export of A's subject holds data: {out}",
    )
    await w.as_b("POST", "/v1/privacy/erasure", {"phone": N_A}, ok=(200,))
    st, got, _ = await w.gw.call("GET", f"/v1/otp/{w.otp}", w.a)
    w.check(st == 200, f"B's erasure removed A's OTP: {st} {got}")
    mine = await w.as_a("POST", "/v1/privacy/export", {"phone": N_A})
    w.check(len(mine["otps"]) == 1 and len(mine["messages"]) == 2, f"A's data after B's erasure: {mine}")


async def privacy_requests(w: World) -> None:
    mine = await w.as_a("GET", "/v1/privacy/requests")
    w.check(len(mine["requests"]) >= 1, f"A has no privacy request, so the probe would test nothing: {mine}")
    out = await w.as_b("GET", "/v1/privacy/requests", ok=(200,))  # B has filed none yet
    w.check(out["requests"] == [], f"B sees privacy requests it did not file: {out}")


async def consent(w: World) -> None:
    await w.as_b("POST", "/v1/consent", {"phone": N_A, "status": "opted_out"}, ok=(200, 201, 202))
    mine = await w.as_a("POST", "/v1/privacy/export", {"phone": N_A})
    w.check([c["status"] for c in mine["consent"]] == ["opted_in"], f"A's consent after B's opt-out: {mine}")


async def audit(w: World) -> None:
    await w.as_b("GET", "/v1/audit", ok=(200,))


async def fraud_decisions(w: World) -> None:
    mine = await w.as_a("GET", "/v1/fraud/decisions")
    w.check(len(mine["decisions"]) >= 1, f"A has no decision, so the probe would test nothing: {mine}")
    out = await w.as_b("GET", "/v1/fraud/decisions", ok=(200,))  # B has sent nothing yet
    w.check(out["decisions"] == [], f"B sees decisions it did not cause: {out}")


async def fraud_lists(w: World) -> None:
    before = await w.as_a("GET", "/v1/fraud/lists")
    await w.as_b("GET", "/v1/fraud/lists", ok=(200,))
    out = await w.as_b("POST", "/v1/fraud/unlist", {"kind": "number", "value": N_BLOCKED}, ok=(200,))
    w.check(out.get("result") == "absent", f"B's unlist of A's entry: {out}")
    await w.as_b("POST", "/v1/fraud/lift", {"kind": "number", "value": N_BLOCKED}, ok=(200,))
    await w.as_b("POST", "/v1/fraud/block", {"kind": "prefix", "value": A_PREFIX}, ok=(200,))
    await w.as_b("POST", "/v1/fraud/allow", {"kind": "number", "value": "+4915100000001"}, ok=(200,))
    mine = await w.as_a("GET", "/v1/fraud/lists")
    w.check(mine == before, f"B's calls changed A's lists: {before} -> {mine}")
    own = await w.as_a("POST", "/v1/fraud/check", {"to": N_BLOCKED})
    w.check(own["action"] == "block", f"A's block after B's calls: {own}")


async def fraud_check(w: World) -> None:
    out = await w.as_b("POST", "/v1/fraud/check", {"to": N_BLOCKED}, ok=(200,))
    w.check(
        all(r["code"] != "blocklisted" for r in out["reasons"]), f"A's block list applies to B's check: {out}"
    )


async def fraud_mode(w: World) -> None:
    await w.as_b("PUT", "/v1/fraud/mode", {"mode": "monitor"}, ok=(200,))
    out = await w.as_a("POST", "/v1/fraud/check", {"to": "+4915100000002"})
    w.check(out.get("mode") == "enforce", f"B's mode change reached A: {out}")
    await w.as_b("PUT", "/v1/fraud/mode", {"mode": "enforce"}, ok=(200,))


async def expected_countries(w: World) -> None:
    await w.as_b("PUT", "/v1/fraud/expected-countries", {"countries": ["FR"]}, ok=(200,))
    out = await w.as_a("GET", "/v1/fraud/expected-countries")
    w.check(out.get("countries") != ["FR"], f"B's expected countries reached A: {out}")


async def sends_to_a_numbers(w: World) -> None:
    # A's resend cool-down on N_A and A's block list on N_BLOCKED are A's: B may send to both at once
    for to in (N_A, N_BLOCKED):
        out = await w.as_b("POST", "/v1/otp", {"to": to}, ok=(202,))
        w.check(out.get("id") != w.otp, f"B got A's OTP id: {out}")
    await w.as_b("POST", "/v1/messages", {"to": N_A, "sender_id": "INTRUDE", "body": "hello"}, ok=(202,))


async def webhook(w: World) -> None:
    await w.as_b("GET", "/v1/webhook")
    await w.as_b("DELETE", "/v1/webhook")
    await w.as_b(
        "PUT", "/v1/webhook", {"url": "https://hooks.intruder.example/x", "secret": "b" * 20}, ok=(200,)
    )
    mine = await w.as_a("GET", "/v1/webhook")
    w.check(mine["url"] == "https://hooks.acme.example/sms", f"A's webhook after B's calls: {mine}")


async def brand(w: World) -> None:
    out = await w.as_b("GET", "/v1/brand/classification?country=ID", ok=(200,))
    w.check(out["class"] == "international", f"A's local presence applies to B: {out}")
    await w.as_b("PUT", "/v1/brand", {"name": "Intruder", "countries": {}}, ok=(200,))
    mine = await w.as_a("GET", "/v1/brand/classification?country=ID")
    w.check(mine["class"] == "local", f"B's brand change reached A: {mine}")


async def whoami(w: World) -> None:
    out = await w.as_b("GET", "/v1/whoami", ok=(200,))
    w.check(out["tenant_id"] == w.b_tenant, f"whoami: {out}")


# "METHOD path" -> the probe that aims it at A's objects (one probe may cover several routes);
# probes run in this order (reads before B's own writes, so the answers hold only A's objects, if any)
PROBES: dict[str, Probe] = {
    "GET /v1/otp/{id}": otp_by_id,
    "POST /v1/otp/{id}/verify": otp_by_id,
    "GET /v1/messages/{id}": message_by_id,
    "POST /v1/events": events_on_a_ids,
    "GET /v1/sender-ids/{id}": registration_by_id,
    "GET /v1/sender-ids/{id}/audit": registration_by_id,
    "POST /v1/sender-ids/{id}/documents": registration_by_id,
    "POST /v1/sender-ids/{id}/submit": registration_by_id,
    "POST /v1/sender-ids/{id}/approve": registration_by_id,
    "POST /v1/sender-ids/{id}/reject": registration_by_id,
    "GET /v1/privacy/requests": privacy_requests,
    "GET /v1/audit": audit,
    "GET /v1/fraud/decisions": fraud_decisions,
    "GET /v1/fraud/lists": fraud_lists,
    "POST /v1/fraud/unlist": fraud_lists,
    "POST /v1/fraud/lift": fraud_lists,
    "POST /v1/fraud/block": fraud_lists,
    "POST /v1/fraud/allow": fraud_lists,
    "POST /v1/fraud/check": fraud_check,
    "PUT /v1/fraud/mode": fraud_mode,
    "PUT /v1/fraud/expected-countries": expected_countries,
    "GET /v1/fraud/expected-countries": expected_countries,
    "GET /v1/webhook": webhook,
    "PUT /v1/webhook": webhook,
    "DELETE /v1/webhook": webhook,
    "GET /v1/brand/classification": brand,
    "PUT /v1/brand": brand,
    "GET /v1/whoami": whoami,
    "GET /v1/sender-ids": registration_list,
    "POST /v1/sender-ids": registration_list,
    "POST /v1/privacy/export": privacy_subject,
    "POST /v1/privacy/erasure": privacy_subject,
    "POST /v1/consent": consent,
    "POST /v1/otp": sends_to_a_numbers,
    "POST /v1/messages": sends_to_a_numbers,
}

# routes that hold no tenant's objects, with the reason
EXEMPT: dict[str, str] = {
    "GET /healthz": "liveness, no key and no tenant data",
    "GET /readyz": "readiness, no key and no tenant data",
    "GET /metrics": "the operator's scrape (no key); labels never carry numbers, bodies or codes",
    "GET /openapi.json": "the API description, the same for everyone",
    "GET /docs": "the API description, the same for everyone",
    "GET /console": "static files of the web console; the data comes through the API probed here",
    "GET /console/": "static files of the web console",
    "GET /console/vocabulary.json": "static vocabulary of the web console",
    "GET /console/{file}": "static files of the web console",
    "GET /v1/senderid/countries": "the public per-country sender-ID rules, the same for every tenant",
    "GET /v1/routes": "the operator's route table, the same for every tenant (no tenant data)",
    "POST /v1/admin/routes/reload": "re-reads the operator's route table (no tenant data)",
    "POST /v1/carriers/{carrier}/receipts": "carriers' delivery receipts: a carrier token, no tenant key",
    "POST /v1/carriers/{carrier}/inbound": "carriers' mobile-originated messages (STOP): a carrier token",
    "GET /l/{id}": "a tracked short link: public by design (the recipient's phone follows it), no key",
}


def app_routes(tmp_path: Path) -> set[str]:
    app = create_app(make_settings(tmp_path, "http://127.0.0.1:9", 9))
    return {f"{r.method} {r.resource.canonical}" for r in app.router.routes() if r.resource is not None}


def test_every_route_is_probed_or_exempt(tmp_path: Path) -> None:
    routes = app_routes(tmp_path)
    assert not PROBES.keys() & EXEMPT.keys(), "a route both probed and exempt"
    assert routes - PROBES.keys() - EXEMPT.keys() == set(), "new routes: probe them here or exempt them"
    assert (PROBES.keys() | EXEMPT.keys()) - routes == set(), "probes or exemptions for routes that are gone"


async def test_another_tenant_never_sees_or_changes_a_tenants_objects(gw: Gw) -> None:
    w = await build_world(gw)
    for probe in dict.fromkeys(PROBES.values()):
        await probe(w)
    assert not w.problems, "\n".join(w.problems)
