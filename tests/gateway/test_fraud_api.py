"""Anti-fraud on the send path, over the API, on both backends: refusals with reasons, limits with
Retry-After, challenges passed with a token, review and allow-lists, monitor mode."""

from __future__ import annotations

from tests.gateway.harness import Gw

PREMIUM = "+499001234567"


async def test_premium_rate_number_is_blocked_with_reasons(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin", fraud_mode="enforce")
    st, err, _ = await gw.call("POST", "/v1/otp", key, {"to": PREMIUM})
    assert st == 403 and err["error"]["code"] == "fraud_blocked"
    reason = err["error"]["reasons"][0]
    assert reason["code"] == "number_type_blocked" and reason["scope"] == "number"
    assert "9001234567" not in err["error"]["message"]  # masked, never the number
    reg = gw.ctx.instruments.registry
    assert (
        reg.get_sample_value(
            "smsgw_fraud_decisions_total",
            {"country": "DE", "decision": "block", "reason": "number_type_blocked"},
        )
        == 1
    )
    st, body, _ = await gw.call("GET", "/v1/fraud/decisions", key)
    assert st == 200 and body["decisions"][0]["decision"] == "block"
    assert body["decisions"][0]["number"].startswith("+49") and "9001234567" not in str(body)
    assert gw.sim.inbox.received == 0


async def test_sweep_through_a_block_is_challenged_and_a_token_passes(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify", fraud_mode="enforce")
    answers = []
    for n in range(12):  # neighbouring numbers of one 10k block, within a minute: a range sweep
        st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": f"+4915123450{n:03d}"})
        answers.append((st, body))
        gw.clock.advance(2)
    refused = [b for st, b in answers if st != 202]
    assert refused, "a sweep through one block must not go through unchallenged"
    first = refused[0]["error"]
    assert first["code"] in ("challenge_required", "fraud_blocked")
    assert all(r["code"] for r in first["reasons"]) and all(r["message"] for r in first["reasons"])
    if first["code"] == "challenge_required":
        st, body, _ = await gw.call(
            "POST", "/v1/otp", key, {"to": "+4915123450999", "challenge_token": "captcha-ok"}
        )
        assert st in (202, 403), body


async def test_allow_list_and_audit(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin", fraud_mode="enforce")
    assert (await gw.call("POST", "/v1/fraud/block", key, {"kind": "number", "value": "+4915123456789"}))[
        0
    ] == 200
    st, lists, _ = await gw.call("GET", "/v1/fraud/lists", key)
    assert st == 200 and any(entries for entries in lists.values())
    st, err, _ = await gw.call("POST", "/v1/otp", key, {"to": "+4915123456789"})
    assert st == 403 and err["error"]["reasons"][0]["code"] == "blocklisted"
    assert (await gw.call("POST", "/v1/fraud/unlist", key, {"kind": "number", "value": "+4915123456789"}))[
        0
    ] == 200
    assert (await gw.call("POST", "/v1/otp", key, {"to": "+4915123456789"}))[0] == 202
    st, lists, _ = await gw.call("GET", "/v1/fraud/lists", key)
    assert st == 200 and not any(entries for entries in lists.values())
    actions = [r.action for r in await gw.ctx.db.audit_records()]
    assert actions == ["fraud.block", "fraud.unlist"]
    assert "4915123456789" not in "".join(r.details for r in await gw.ctx.db.audit_records())
    st, err, _ = await gw.call("POST", "/v1/fraud/allow", key, {"kind": "galaxy", "value": "x"})
    assert st == 400


async def test_monitor_mode_decides_but_allows(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin", fraud_mode="enforce")
    assert (await gw.call("PUT", "/v1/fraud/mode", key, {"mode": "monitor"}))[0] == 200
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": PREMIUM})
    assert st == 202, body
    assert (await gw.call("PUT", "/v1/fraud/mode", key, {"mode": "enforce"}))[0] == 200
    assert (await gw.call("POST", "/v1/otp", key, {"to": "+499001234568"}))[0] == 403


async def test_fraud_admin_needs_admin(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify", fraud_mode="enforce")
    for path in ("/v1/fraud/decisions", "/v1/fraud/lists"):
        assert (await gw.call("GET", path, key))[0] == 403
    assert (await gw.call("PUT", "/v1/fraud/mode", key, {"mode": "monitor"}))[0] == 403


async def test_check_answers_what_a_send_would_get_and_counts_nothing(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin", countries="DE,FR", fraud_mode="enforce")
    num = "+4915123456700"
    for _ in range(10):  # far more than the number's 3 a minute: a check spends no limit
        st, body, _ = await gw.call("POST", "/v1/fraud/check", key, {"to": num, "client_ip": "203.0.113.9"})
        assert st == 200 and body["action"] == "allow" and body["counted"] is False, body
        assert body["mode"] == "enforce" and body["retry_after"] is None
    reg = gw.ctx.instruments.registry
    assert (
        reg.get_sample_value(
            "smsgw_fraud_decisions_total", {"country": "DE", "decision": "allow", "reason": "none"}
        )
        is None
    )
    # each check foretells the send that follows it, through allow, challenge and the number's limit
    status = {"allow": 202, "challenge": 428, "block": 403, "rate_limited": 429}
    seen, allowed = set(), 0
    for _ in range(6):
        st, body, _ = await gw.call("POST", "/v1/fraud/check", key, {"to": num})
        sent, err, _ = await gw.call("POST", "/v1/otp", key, {"to": num})
        assert sent == status[body["action"]], (body, err)
        if body["action"] == "rate_limited":
            assert body["retry_after"] > 0 and body["reasons"][0]["scope"] == "number", body
        seen.add(body["action"])
        allowed += sent == 202
        gw.clock.advance(31)  # past the resend cooldown, inside the minute's number limit
    assert "allow" in seen and seen != {"allow"}, seen
    # a block answers as a block with its reason; a country the tenant may not serve likewise
    st, body, _ = await gw.call("POST", "/v1/fraud/check", key, {"to": PREMIUM})
    assert body["action"] == "block" and body["reasons"][0]["code"] == "number_type_blocked", body
    st, body, _ = await gw.call("POST", "/v1/fraud/check", key, {"to": "+447400123456"})
    assert body["action"] == "block" and body["reasons"][0]["code"] == "country_not_permitted", body
    assert "7400123456" not in str(body)
    await gw.settle()
    assert gw.sim.inbox.received == allowed  # checks sent nothing


async def test_check_validates_like_the_send_path(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send", fraud_mode="monitor")
    st, err, _ = await gw.call("POST", "/v1/fraud/check", key, {"to": "12345"})
    assert st == 400 and err["error"]["code"] == "invalid_number"
    st, err, _ = await gw.call("POST", "/v1/fraud/check", key, {"number": "+4915123456700"})
    assert st == 400 and err["error"]["code"] == "invalid_request"
    st, body, _ = await gw.call("POST", "/v1/fraud/check", key, {"to": PREMIUM})
    assert st == 200 and body["action"] == "allow" and body["mode"] == "monitor", body
    assert body["reasons"][0]["code"] == "number_type_blocked"  # what it would have refused
    verify_only = await gw.tenant("other", scopes="verify")
    assert (await gw.call("POST", "/v1/fraud/check", verify_only, {"to": PREMIUM}))[0] == 403


async def test_list_entries_that_are_not_a_number_prefix_or_country_are_refused_clearly(gw: Gw) -> None:
    """Found by tests/e2e/test_api_fuzz.py: an empty prefix was a 500, a country took any string."""
    key = await gw.tenant("acme", scopes="send,verify,admin")
    for op in ("allow", "lift", "block", "unlist"):
        for kind, value, code in (
            ("prefix", "", "invalid_request"),
            ("prefix", "+49x", "invalid_request"),
            ("country", "Germany", "invalid_request"),
            ("country", "d1", "invalid_request"),
            ("number", "12", "invalid_number"),
        ):
            st, err, _ = await gw.call("POST", f"/v1/fraud/{op}", key, {"kind": kind, "value": value})
            assert (st, err["error"]["code"]) == (400, code), (op, kind, value, err)
    st, body, _ = await gw.call("POST", "/v1/fraud/block", key, {"kind": "country", "value": "uz"})
    assert st == 200 and body["result"] == "UZ"
    st, body, _ = await gw.call("GET", "/v1/fraud/lists", key)
    assert st == 200 and "UZ" in str(body) and "GERMANY" not in str(body)


async def test_the_review_list_takes_a_limit_within_bounds(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin", fraud_mode="enforce")
    for n in range(3):
        await gw.call("POST", "/v1/otp", key, {"to": f"+49900123456{n}"})  # premium rate: refused
    st, body, _ = await gw.call("GET", "/v1/fraud/decisions?limit=2", key)
    assert st == 200 and len(body["decisions"]) == 2
    for bad in ("abc", "0", "501", "-3", "1e3"):  # "abc" was a 500
        st, err, _ = await gw.call("GET", f"/v1/fraud/decisions?limit={bad}", key)
        assert st == 400 and err["error"]["code"] == "invalid_request" and err["error"]["field"] == "limit", (
            bad
        )


async def test_expected_countries_are_the_cold_start_prior_and_are_checked(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin", countries="*", fraud_mode="enforce")
    st, body, _ = await gw.call("GET", "/v1/fraud/expected-countries", key)
    assert st == 200 and body == {"countries": [], "in_use": [], "source": "none"}
    st, body, _ = await gw.call("PUT", "/v1/fraud/expected-countries", key, {"countries": ["de", "FR"]})
    assert st == 200 and body == {"countries": ["DE", "FR"], "in_use": ["DE", "FR"], "source": "expected"}
    assert (await gw.call("POST", "/v1/otp", key, {"to": "+4915123456789"}))[0] == 202
    tenant_id = (await gw.ctx.db.audit_records())[-1].tenant_id
    policy = gw.ctx.fraud.engine.policy(tenant_id)
    assert policy.declared == {"DE", "FR"} and policy.allowed_countries is None  # still sends everywhere
    assert [r.action for r in await gw.ctx.db.audit_records()] == ["fraud.expected_countries"]
    # cleared: nothing expected, and the engine hears it at once (no wait for the settings refresh)
    st, body, _ = await gw.call("PUT", "/v1/fraud/expected-countries", key, {"countries": []})
    assert st == 200 and body["source"] == "none"
    assert (await gw.call("POST", "/v1/otp", key, {"to": "+4915123456780"}))[0] == 202
    assert gw.ctx.fraud.engine.policy(tenant_id).declared == frozenset()
    for bad in ({"countries": ["DE", "XX"]}, {"countries": "DE"}, {"countries": ["DE"], "extra": 1}, {}):
        st, err, _ = await gw.call("PUT", "/v1/fraud/expected-countries", key, bad)
        assert st == 400 and err["error"]["code"] == "invalid_request", (bad, err)
    st, err, _ = await gw.call("PUT", "/v1/fraud/expected-countries", key, {"countries": ["DE", "XX"]})
    assert "XX" in err["error"]["message"]


async def test_expected_countries_stay_inside_the_allowed_ones(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin", countries="DE,FR", fraud_mode="enforce")
    st, body, _ = await gw.call("GET", "/v1/fraud/expected-countries", key)
    assert st == 200 and body == {"countries": [], "in_use": ["DE", "FR"], "source": "allowed"}
    st, err, _ = await gw.call("PUT", "/v1/fraud/expected-countries", key, {"countries": ["DE", "IT"]})
    assert st == 400 and "IT" in err["error"]["message"]
    st, body, _ = await gw.call("PUT", "/v1/fraud/expected-countries", key, {"countries": ["FR"]})
    assert st == 200 and body["in_use"] == ["FR"]
    plain = await gw.tenant("plain", scopes="send,verify", fraud_mode="enforce")
    assert (await gw.call("GET", "/v1/fraud/expected-countries", plain))[0] == 403
    assert (await gw.call("PUT", "/v1/fraud/expected-countries", plain, {"countries": ["DE"]}))[0] == 403
