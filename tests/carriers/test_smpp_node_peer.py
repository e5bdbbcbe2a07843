"""SmppCarrier against an SMSC nobody here wrote: tests/peers/smsc.js on the npm `smpp` package."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from carriers.base import ReceiptStatus, Submission, SubmitOutcome
from carriers.smpp.client import SmppCarrier
from tests.carriers.smpp_peers import NodeSmsc, Receipts

OTP = Submission(ref="m1", sender="BrandX", to="+4915123456789", text="Your code is 123456")
StartPeer = Callable[..., NodeSmsc]


def carrier(peer: NodeSmsc, **kw: object) -> SmppCarrier:
    opts: dict[str, object] = {"reconnect_backoff": (0.05, 0.5), "response_timeout": 3.0}
    opts.update(kw)
    return SmppCarrier("node", "127.0.0.1", peer.port, "smsgw", str(opts.pop("password", "secret")), **opts)  # type: ignore[arg-type]


async def test_bind_submit_and_tlv_receipt(node_smsc: StartPeer, receipts: Receipts) -> None:
    peer = node_smsc("normal", "tlv")
    c = carrier(peer)
    await c.start(receipts)
    try:
        assert c.is_up()
        (bind,) = await peer.wait_for("bind")
        assert (bind["as"], bind["system_id"], bind["status"]) == ("trx", "smsgw", 0)
        result = await c.submit(OTP)
        assert result.outcome is SubmitOutcome.ACCEPTED and result.segments == 1
        (seen,) = await peer.wait_for("submit")
        assert seen["id"] == result.carrier_message_id
        assert (seen["source"], seen["source_ton"], seen["dest"], seen["dest_ton"]) == (
            "BrandX",
            5,
            "4915123456789",
            1,
        )
        assert (seen["text"], seen["data_coding"], seen["registered_delivery"]) == (OTP.text, 0, 1)
        (r,) = await receipts.wait(1)
        assert (r.carrier_message_id, r.status, r.error_code) == (
            result.carrier_message_id,
            ReceiptStatus.DELIVERED,
            None,
        )
        assert r.raw["issued_here"] == "1"
        (resp,) = await peer.wait_for("deliver_sm_resp")
        assert resp["status"] == 0
        assert receipts.got[0][0] == "node"
    finally:
        await c.close()
    await peer.wait_for("unbind")  # close() unbinds


async def test_text_receipt_with_the_id_in_decimal(node_smsc: StartPeer, receipts: Receipts) -> None:
    peer = node_smsc("normal", "text", "--receipt-id-decimal")
    c = carrier(peer)
    await c.start(receipts)
    try:
        result = await c.submit(OTP)
        assert result.outcome is SubmitOutcome.ACCEPTED
        (sent,) = await peer.wait_for("receipt_sent")
        assert sent["id"] == str(int(result.carrier_message_id or "", 16))  # the SMSC wrote decimal
        (r,) = await receipts.wait(1)
        assert r.carrier_message_id == result.carrier_message_id  # matched back to the hex id
        assert r.status is ReceiptStatus.DELIVERED and r.raw["stat"] == "DELIVRD"
    finally:
        await c.close()


@pytest.mark.parametrize(
    ("text", "data_coding", "parts"),
    [
        ("Привет! " * 12, 8, 2),  # 96 UCS-2 units
        ("Price: 10€ {promo} " * 12, 0, 2),  # extension characters, 264 septets
    ],
    ids=["ucs2", "gsm-extension"],
)
async def test_long_message_goes_as_udh_segments(
    node_smsc: StartPeer, receipts: Receipts, text: str, data_coding: int, parts: int
) -> None:
    peer = node_smsc("normal", "none")
    c = carrier(peer)
    await c.start(receipts)
    try:
        result = await c.submit(Submission("m2", "BrandX", "+4915123456789", text))
        assert result.outcome is SubmitOutcome.ACCEPTED and result.segments == parts
        seen = await peer.wait_for("submit", parts)
        assert [s["esm_class"] & 0x40 for s in seen] == [0x40] * parts
        assert {s["data_coding"] for s in seen} == {data_coding}
        refs = {s["udh"][0][4:6] for s in seen}  # node-smpp gives each IE as hex: 00 03 ref total seq
        assert len(refs) == 1
        assert [s["udh"][0][8:10] for s in seen] == [f"{i:02x}" for i in range(1, parts + 1)]
        assert "".join(s["text"] for s in seen) == text  # node-smpp decoded what we encoded
        assert result.carrier_message_id == seen[0]["id"]
    finally:
        await c.close()


async def test_connection_dropped_with_a_full_window(node_smsc: StartPeer, receipts: Receipts) -> None:
    peer = node_smsc("drop", "tlv", "--drop-after", "10")
    c = carrier(peer, window=10)
    await c.start(receipts)
    try:
        subs = [Submission(f"m{i}", "BrandX", "+4915123456789", f"code {i}") for i in range(10)]
        results = await asyncio.gather(*(c.submit(s) for s in subs))
        await peer.wait_for("drop")
        assert len(results) == 10  # every caller got an answer: none left waiting, none lost
        assert all(r.outcome is SubmitOutcome.TEMPORARY and r.maybe_accepted for r in results)
        assert all("connection lost" in r.reason for r in results)
        await peer.wait_for("bind", 2)  # reconnected and bound again by itself
        async with asyncio.timeout(5):
            await c.wait_up()
        again = await c.submit(subs[0])
        assert again.outcome is SubmitOutcome.ACCEPTED
        (seen,) = await peer.wait_for("submit")
        assert seen["connection"] == 2
    finally:
        await c.close()


async def test_throttled_answers(node_smsc: StartPeer, receipts: Receipts) -> None:
    peer = node_smsc("throttle", "none")
    c = carrier(peer, throttle_backoff=(0.05, 0.2))
    await c.start(receipts)
    try:
        results = [await c.submit(OTP) for _ in range(4)]
        assert [r.outcome for r in results] == [SubmitOutcome.THROTTLED] * 3 + [SubmitOutcome.ACCEPTED]
        assert [r.error_code for r in results[:3]] == ["ESME_RTHROTTLED", "ESME_RTHROTTLED", "ESME_RMSGQFUL"]
        assert not any(r.maybe_accepted for r in results[:3])
        assert c.throttle_events == 3
        assert c.is_up()  # throttling slows a bind down; it does not take it down
    finally:
        await c.close()


@pytest.mark.parametrize(("mode", "password"), [("normal", "wrong"), ("badpass", "secret")])
async def test_bind_refused_is_logged_and_the_carrier_is_down(
    node_smsc: StartPeer, receipts: Receipts, caplog: pytest.LogCaptureFixture, mode: str, password: str
) -> None:
    caplog.set_level(logging.INFO, logger="smsgw.carriers.smpp")
    peer = node_smsc(mode, "tlv")
    c = carrier(peer, password=password)
    await c.start(receipts)
    try:
        assert not c.is_up()
        refused = [
            r for r in caplog.records if r.levelno == logging.ERROR and "bind refused" in r.getMessage()
        ]
        assert refused, caplog.text
        assert "ESME_RINVPASWD" in refused[0].getMessage() and "invalid password" in refused[0].getMessage()
        assert password not in refused[0].getMessage().replace("password", "")
        assert c.status()["binds"][0]["last_error"].startswith("bind refused: ESME_RINVPASWD")
        result = await c.submit(OTP)
        assert (result.outcome, result.error_code) == (SubmitOutcome.TEMPORARY, "not_bound")
        await peer.wait_for("bind", 2)  # it keeps trying, with backoff
    finally:
        await c.close()


async def test_malformed_pdus_reset_the_connection_and_it_rebinds(
    node_smsc: StartPeer, receipts: Receipts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smsgw.carriers.smpp")
    peer = node_smsc("malformed", "tlv")
    c = carrier(peer)
    await c.start(receipts)
    try:
        first = await c.submit(OTP)
        assert first.outcome is SubmitOutcome.TEMPORARY and first.maybe_accepted
        (nack,) = await peer.wait_for("generic_nack")
        assert (nack["seq"], nack["status"]) == (4242, 3)  # unknown command → generic_nack, ESME_RINVCMDID
        assert any("connection reset" in r.getMessage() for r in caplog.records)
        await peer.wait_for("bind", 2)
        async with asyncio.timeout(5):
            await c.wait_up()
        second = await c.submit(OTP)
        assert second.outcome is SubmitOutcome.ACCEPTED
        await receipts.wait(1)
    finally:
        await c.close()


async def test_receipt_for_an_unknown_id(
    node_smsc: StartPeer, receipts: Receipts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smsgw.carriers.smpp")
    peer = node_smsc("normal", "tlv")
    c = carrier(peer)
    await c.start(receipts)
    try:
        peer.command(cmd="receipt", id="FFFF9999", stat="UNDELIV", form="text")
        (r,) = await receipts.wait(1)
        assert (r.carrier_message_id, r.status, r.raw["issued_here"]) == (
            "FFFF9999",
            ReceiptStatus.FAILED,
            "0",
        )
        (resp,) = await peer.wait_for("deliver_sm_resp")
        assert resp["status"] == 0  # always answered
        assert any("did not submit" in rec.getMessage() for rec in caplog.records)
        assert c.receipts_unmatched == 1
        assert c.is_up()
    finally:
        await c.close()


async def test_enquire_link_keepalive_and_smsc_unbind(node_smsc: StartPeer, receipts: Receipts) -> None:
    peer = node_smsc("normal", "tlv")
    c = carrier(peer, enquire_link_interval=0.1)
    await c.start(receipts)
    try:
        await peer.wait_for("enquire_link", 2)
        assert c.is_up()
        peer.command(cmd="unbind")
        await peer.wait_for("unbind_resp")  # we answered the SMSC's unbind
        await peer.wait_for("bind", 2)  # and bound again
        async with asyncio.timeout(5):
            await c.wait_up()
        assert (await c.submit(OTP)).outcome is SubmitOutcome.ACCEPTED
    finally:
        await c.close()


async def test_several_transmitter_binds_and_a_receiver(node_smsc: StartPeer, receipts: Receipts) -> None:
    peer = node_smsc("normal", "tlv")
    c = carrier(peer, bind_mode="tx", binds=3, window=2)
    await c.start(receipts)
    try:
        binds = await peer.wait_for("bind", 4)
        assert sorted(b["as"] for b in binds) == ["rx", "tx", "tx", "tx"]
        results = await asyncio.gather(
            *(c.submit(Submission(f"m{i}", "BrandX", "+4915123456789", f"code {i}")) for i in range(12))
        )
        assert all(r.outcome is SubmitOutcome.ACCEPTED for r in results)
        seen = await peer.wait_for("submit", 12)
        assert len({s["connection"] for s in seen}) == 3  # spread over the three transmitters
        got = await receipts.wait(12)  # receipts came through the receiver bind
        assert {r.carrier_message_id for r in got} == {r.carrier_message_id for r in results}
    finally:
        await c.close()


async def test_unanswered_submits_time_out_and_free_the_window(
    node_smsc: StartPeer, receipts: Receipts
) -> None:
    peer = node_smsc("drop", "tlv", "--drop-after", "1000")  # holds every submit_sm, never answers
    c = carrier(peer, window=1, response_timeout=0.3)
    await c.start(receipts)
    try:
        first, second = await asyncio.gather(c.submit(OTP), c.submit(OTP))
        for r in (first, second):
            assert (r.outcome, r.error_code, r.maybe_accepted) == (
                SubmitOutcome.TEMPORARY,
                "no_response",
                True,
            )
            assert r.reason == "no submit_sm_resp within 0.3s"
        held = await peer.wait_for("submit_held", 2)
        assert len(held) == 2  # the second waited for the first one's slot, then went
        assert c.is_up()
    finally:
        await c.close()
