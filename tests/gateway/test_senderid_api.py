"""The sender-ID workflow, brand classification and send-time enforcement over the API (both backends)."""

from __future__ import annotations

from typing import Any

from aiohttp import FormData

from tests.gateway.harness import Gw

AE = "+971501234567"
SA = "+966501234567"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def upload(
    gw: Gw, key: str, reg_id: str, code: str, content: bytes = PDF, filename: str = "doc.pdf"
) -> tuple[int, Any]:
    form = FormData()
    form.add_field("code", code)
    form.add_field("file", content, filename=filename, content_type="application/pdf")
    resp = await gw.client.post(
        f"/v1/sender-ids/{reg_id}/documents", data=form, headers={"Authorization": f"Bearer {key}"}
    )
    return resp.status, await resp.json()


AE_DOCUMENTS = (
    "company_registration",
    "loa",
    "noc",
    "brand_ownership_proof",
    "industry_license",
    "url_allowlist",
)


async def upload_ae_documents(gw: Gw, key: str, reg_id: str) -> None:
    """Every document the UAE asks for."""
    for code in AE_DOCUMENTS:
        st, body = await upload(gw, key, reg_id, code)
        assert st == 201, body


async def file_request(
    gw: Gw,
    key: str,
    sender: str = "ACMEOTP",
    countries: tuple[str, ...] = ("AE",),
    templates: tuple[str, ...] = (),
) -> dict[str, Any]:
    st, reg, _ = await gw.call(
        "POST",
        "/v1/sender-ids",
        key,
        {
            "sender": sender,
            "brand": "Acme",
            "use_case": "login codes",
            "countries": list(countries),
            "templates": list(templates),
        },
    )
    assert st == 201, reg
    return dict(reg)


async def test_whole_workflow_then_send(gw: Gw) -> None:
    onb = await gw.tenant("acme", scopes="onboarding,send")
    admin = await gw.tenant("acme-admin", scopes="admin")  # another tenant: cannot see acme's request
    reg = await file_request(gw, onb, countries=("AE", "SA"))
    assert {c["country"]: c["state"] for c in reg["countries"]} == {"AE": "draft", "SA": "draft"}
    # before approval the sender is refused where registration is required
    st, err, _ = await gw.call("POST", "/v1/otp", onb, {"to": AE, "sender_id": "ACMEOTP"})
    assert st == 422 and err["error"]["code"] == "sender_not_registered"
    assert "company_registration" in err["error"]["requirements"]["documents"]
    # submitting without the documents the countries need: refused with what is missing
    st, out, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/submit", onb, {})
    assert st == 200 and {r["country"] for r in out["refused"]} == {"AE", "SA"}
    missing_ae = next(r["missing"] for r in out["refused"] if r["country"] == "AE")
    assert "company_registration" in missing_ae
    for code in missing_ae:
        st, body = await upload(gw, onb, reg["id"], code)
        assert st == 201, body
    st, out, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/submit", onb, {"countries": ["AE"]})
    assert st == 200 and out["refused"] == []
    states = {c["country"]: c["state"] for c in out["registration"]["countries"]}
    assert states["AE"] == "submitted"
    # the onboarding key cannot approve; another tenant's admin does not see it
    st, err, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/approve", onb, {"country": "AE"})
    assert st == 403
    st, err, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/approve", admin, {"country": "AE"})
    assert st == 404
    own_admin = await _admin_of(gw, onb)
    st, done, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/approve", own_admin, {"country": "AE"})
    assert st == 200 and {c["country"]: c["state"] for c in done["countries"]}["AE"] == "approved"
    # approved for AE: sent; not approved for SA: refused
    st, body, _ = await gw.call("POST", "/v1/otp", onb, {"to": AE, "sender_id": "ACMEOTP"})
    assert st == 202 and body["sender_id"] == "ACMEOTP"
    st, err, _ = await gw.call("POST", "/v1/otp", onb, {"to": SA, "sender_id": "ACMEOTP"})
    assert st == 422 and err["error"]["code"] == "sender_not_registered"
    await gw.settle()
    assert gw.sim.inbox.by_to[AE][0].sender == "ACMEOTP"
    st, trail, _ = await gw.call("GET", f"/v1/sender-ids/{reg['id']}/audit", onb)
    actions = [e["action"] for e in trail["entries"]]
    assert actions[0] == "sender_id.created" and "sender_id.approve" in actions
    assert actions.count("sender_id.submit_refused") == 2


async def _admin_of(gw: Gw, tenant_key: str) -> str:
    """An admin key for the tenant of ``tenant_key`` (a second key of the same tenant)."""
    from gateway.privacy.crypto import hash_api_key

    principal = await gw.ctx.db.principal_for_key(hash_api_key(tenant_key))
    assert principal is not None
    key = "sk_live_admin-" + principal.tenant.id
    assert await gw.ctx.db.add_api_key(
        principal.tenant.id, hash_api_key(key), frozenset({"admin"}), gw.clock()
    )
    return key


async def test_reject_with_reason_then_resubmit(gw: Gw) -> None:
    onb = await gw.tenant("acme", scopes="onboarding")
    admin = await _admin_of(gw, onb)
    reg = await file_request(gw, onb)
    await upload_ae_documents(gw, onb, reg["id"])
    st, out, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/submit", onb, {})
    assert out["refused"] == [], out
    st, err, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/reject", admin, {"country": "AE"})
    assert st == 400  # a rejection needs a reason
    st, done, _ = await gw.call(
        "POST", f"/v1/sender-ids/{reg['id']}/reject", admin, {"country": "AE", "reason": "LOA unsigned"}
    )
    assert st == 200 and done["countries"][0] == {
        **done["countries"][0],
        "state": "rejected",
        "reason": "LOA unsigned",
    }
    st, err, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/approve", admin, {"country": "AE"})
    assert st == 409 and err["error"]["code"] == "conflict"
    st, out, _ = await gw.call("POST", f"/v1/sender-ids/{reg['id']}/submit", onb, {"countries": ["AE"]})
    assert out["registration"]["countries"][0]["state"] == "submitted"


async def test_approval_expires(gw: Gw) -> None:
    onb = await gw.tenant("acme", scopes="onboarding,send")
    admin = await _admin_of(gw, onb)
    reg = await file_request(gw, onb)
    await upload_ae_documents(gw, onb, reg["id"])
    await gw.call("POST", f"/v1/sender-ids/{reg['id']}/submit", onb, {})
    until = gw.clock() + 86400
    st, _, _ = await gw.call(
        "POST", f"/v1/sender-ids/{reg['id']}/approve", admin, {"country": "AE", "valid_until": until}
    )
    assert (await gw.call("POST", "/v1/otp", onb, {"to": AE, "sender_id": "ACMEOTP"}))[0] == 202
    gw.clock.advance(2 * 86400)
    assert await gw.ctx.senderids.expire_due(90) == 1
    st, got, _ = await gw.call("GET", f"/v1/sender-ids/{reg['id']}", onb)
    assert got["countries"][0]["state"] == "expired"
    st, err, _ = await gw.call("POST", "/v1/otp", onb, {"to": "+971501234568", "sender_id": "ACMEOTP"})
    assert st == 422 and err["error"]["code"] == "sender_not_registered"


async def test_bad_requests_scopes_and_tenants(gw: Gw) -> None:
    onb = await gw.tenant("acme", scopes="onboarding")
    sender_only = await gw.tenant("app", scopes="send,verify")
    other = await gw.tenant("other", scopes="onboarding,admin")
    assert (await gw.call("GET", "/v1/sender-ids", sender_only))[0] == 403
    assert (await gw.call("GET", "/v1/sender-ids/sid_nope", other))[0] == 404
    reg = await file_request(gw, onb)
    assert (await gw.call("GET", f"/v1/sender-ids/{reg['id']}", other))[0] == 404
    st, err, _ = await gw.call("POST", "/v1/sender-ids", onb, {"sender": "A", "brand": "", "countries": []})
    assert st == 400 and err["error"]["code"] == "invalid_request" and len(err["error"]["problems"]) >= 2
    st, err, _ = await gw.call(
        "POST", "/v1/sender-ids", onb, {"sender": "ACME", "brand": "Acme", "countries": ["US"]}
    )
    assert st == 400 and "alphanumeric" in err["error"]["message"]
    st, body = await upload(gw, onb, reg["id"], "company_registration", b"MZ\x90\x00 not a pdf", "x.pdf")
    assert st == 415 and body["error"]["code"] == "invalid_document"
    st, body = await upload(gw, onb, reg["id"], "horoscope")
    assert st == 400 and body["error"]["reason"] == "document_code_unknown"
    st, body = await upload(gw, onb, reg["id"], "company_registration", b"")
    assert st == 400 and body["error"]["reason"] == "document_empty"


async def test_documents_are_sealed_at_rest(gw: Gw) -> None:
    onb = await gw.tenant("acme", scopes="onboarding")
    reg = await file_request(gw, onb)
    secret = b"%PDF-1.4\n(Registration no. HRB-998877 of Acme GmbH)\n%%EOF\n"
    assert (await upload(gw, onb, reg["id"], "company_registration", secret))[0] == 201
    rows = await gw.ctx.db._read_all("SELECT content_enc FROM sender_documents", ())
    assert b"HRB-998877" not in rows[0][0]
    assert gw.ctx.db.keyring.open(rows[0][0], "document") == secret


async def test_brand_classification_and_message_brand_class(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="onboarding,send")
    st, c, _ = await gw.call("GET", "/v1/brand/classification?country=IN", key)
    assert st == 200 and c["class"] == "international" and c["reasons"]
    st, _, _ = await gw.call(
        "PUT",
        "/v1/brand",
        key,
        {
            "name": "Acme",
            "well_known": False,
            "countries": {"ID": {"local_entity": True}, "IN": {"local_entity": True}},
        },
    )
    assert st == 200
    st, c, _ = await gw.call("GET", "/v1/brand/classification?country=ID", key)
    assert c["class"] == "local" and c["reasons"]
    st, c, _ = await gw.call("GET", "/v1/brand/classification?country=IN", key)
    assert c["class"] == "international"  # India also needs all message systems in India
    assert (await gw.call("GET", "/v1/brand/classification?country=Indonesia", key))[0] == 400
    assert (await gw.call("PUT", "/v1/brand", key, {"name": "Acme", "colour": "red"}))[0] == 400
    # messages carry the class routing needs
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": "+6281234567890"})
    assert st == 202
    rec = await gw.ctx.db.get_message(None, body["message_id"])
    assert rec is not None and rec.brand_class == "local"
    # well-known brands are international everywhere, and only an admin may clear the flag
    await gw.call(
        "PUT",
        "/v1/brand",
        key,
        {"name": "Acme", "well_known": True, "countries": {"ID": {"local_entity": True}}},
    )
    assert (await gw.call("GET", "/v1/brand/classification?country=ID", key))[1]["class"] == "international"
    st, _err, _ = await gw.call("PUT", "/v1/brand", key, {"name": "Acme", "well_known": False})
    assert st == 403


async def test_fallback_sender_is_used_where_allowed(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="onboarding,send")
    admin = await _admin_of(gw, key)
    st, _, _ = await gw.call("PUT", "/v1/brand", key, {"name": "Acme", "fallback_sender": "InfoSMS"})
    assert st == 200
    # the fallback itself is not approved for AE yet: the unregistered sender is refused
    st, err, _ = await gw.call("POST", "/v1/otp", key, {"to": AE, "sender_id": "ACMEOTP"})
    assert st == 422 and err["error"]["code"] == "sender_not_registered"
    reg = await file_request(gw, key, sender="InfoSMS")
    await upload_ae_documents(gw, key, reg["id"])
    await gw.call("POST", f"/v1/sender-ids/{reg['id']}/submit", key, {})
    assert (await gw.call("POST", f"/v1/sender-ids/{reg['id']}/approve", admin, {"country": "AE"}))[0] == 200
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": AE, "sender_id": "ACMEOTP"})
    assert st == 202 and body["fallback_sender_used"] is True and body["sender_id"] == "InfoSMS"
    # where any sender may be used, the requested one goes out as asked
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": "+4915123456789", "sender_id": "ACMEOTP"})
    assert st == 202 and body["sender_id"] == "ACMEOTP" and body["fallback_sender_used"] is False


async def test_countries_table(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send")
    st, body, _ = await gw.call("GET", "/v1/senderid/countries", key)
    assert st == 200
    ae = next(c for c in body["countries"] if c["iso2"] == "AE")
    assert ae["registration_required"] == "yes" and "company_registration" in ae["documents_required"]
    st, who, _ = await gw.call("GET", "/v1/whoami", key)
    assert who["scopes"] == ["send"]
