"""The sans-IO session driven by a scripted SMSC and a hand-moved clock: no sockets, no sleeping."""

from __future__ import annotations

import random

import pytest

from carriers.smpp.codec import Framer, encode
from carriers.smpp.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitterResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    InvalidPdu,
    Pdu,
    RetryClass,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from carriers.smpp.session import (
    TRANSITIONS,
    Action,
    Backoff,
    BindFailed,
    BindMode,
    BindSucceeded,
    Close,
    DeliverReceived,
    Input,
    Notice,
    Session,
    SessionError,
    Stalled,
    State,
    SubmitDone,
    SubmitFailed,
    Throttled,
    TokenBucket,
    actions_of,
    state_diagram,
    transition,
)

MSG = SubmitSm(destination_addr="4915123456789", short_message=b"hello")


class Smsc:
    """The other end: decodes what the session sent, encodes what we answer."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.framer = Framer()

    def sent(self) -> list[Pdu | InvalidPdu]:
        return self.framer.feed(self.session.data_to_send())

    def answer(self, pdu: Pdu, now: float) -> list[Action]:
        return self.session.receive_data(encode(pdu), now)


def bound_session(**kw: object) -> tuple[Session, Smsc]:
    s = Session(system_id="smsgw", password="secret", now=0.0, **kw)  # type: ignore[arg-type]
    smsc = Smsc(s)
    s.bind(0.0)
    (bind,) = smsc.sent()
    assert isinstance(bind, BindTransceiver)
    actions = smsc.answer(BindTransceiverResp(sequence=bind.sequence, system_id="SMSC"), 0.0)
    assert actions == [BindSucceeded(State.BOUND_TRX, "SMSC")]
    return s, smsc


def test_bind_sends_credentials_and_binds() -> None:
    s = Session(system_id="smsgw", password="secret", system_type="OTP", bind_mode=BindMode.TRX)
    smsc = Smsc(s)
    assert s.state is State.OPEN
    s.bind(0.0)
    assert s.state is State.BINDING
    assert smsc.sent() == [
        BindTransceiver(sequence=1, system_id="smsgw", password="secret", system_type="OTP")
    ]
    assert smsc.answer(BindTransceiverResp(sequence=1, system_id="SMSC"), 0.1) == [
        BindSucceeded(State.BOUND_TRX, "SMSC")
    ]
    assert s.state is State.BOUND_TRX and s.can_submit


def test_bind_refused_closes_with_the_reason() -> None:
    s = Session(system_id="smsgw", password="wrong")
    s.bind(0.0)
    actions = s.receive_data(encode(BindTransceiverResp(sequence=1, status=0x0E)), 0.1)
    failed = actions_of(BindFailed, actions)
    assert failed[0].status is not None and failed[0].status.name == "ESME_RINVPASWD"
    assert "invalid password" in failed[0].reason
    assert actions_of(Close, actions)
    assert s.state is State.CLOSED


def test_bind_answered_with_the_wrong_response_type() -> None:
    s = Session(system_id="smsgw", password="secret")
    s.bind(0.0)
    actions = s.receive_data(encode(BindTransmitterResp(sequence=1)), 0.1)
    assert actions_of(Notice, actions) and actions_of(BindFailed, actions) and actions_of(Close, actions)
    assert s.state is State.CLOSED


def test_bind_without_answer_times_out() -> None:
    s = Session(system_id="smsgw", password="secret", response_timeout=5.0)
    s.bind(0.0)
    assert s.next_deadline() == 5.0
    assert s.tick(4.99) == []
    actions = s.tick(5.0)
    assert actions_of(BindFailed, actions)[0].status is None
    assert actions_of(Close, actions)
    assert s.state is State.CLOSED


def test_credentials_that_do_not_fit_leave_the_state_alone() -> None:
    s = Session(system_id="a-very-long-system-id", password="secret")
    with pytest.raises(ValueError):
        s.bind(0.0)
    assert s.state is State.OPEN and s.data_to_send() == b""


def test_window_limits_outstanding_submits() -> None:
    s, smsc = bound_session(window=3)
    seqs = [s.submit(MSG, 1.0) for _ in range(3)]
    assert seqs == [2, 3, 4]  # the bind took 1
    assert s.outstanding == 3 and s.free_slots == 0
    assert s.ready_at(1.0) is None
    with pytest.raises(SessionError):
        s.submit(MSG, 1.0)
    sent = smsc.sent()
    assert [p.sequence for p in sent] == seqs
    assert all(isinstance(p, SubmitSm) and p.short_message == b"hello" for p in sent)
    actions = smsc.answer(SubmitSmResp(sequence=3, message_id="m3"), 1.2)
    assert len(actions) == 1 and isinstance(actions[0], SubmitDone)
    assert (actions[0].sequence, actions[0].message_id, actions[0].status.code) == (3, "m3", 0)
    assert s.ready_at(1.2) == 1.2


def test_sequence_numbers_wrap_and_skip_outstanding() -> None:
    s, _ = bound_session(window=5)
    s._seq = 0x7FFFFFFE  # white-box: jump to the end of the range
    assert s.submit(MSG, 1.0) == 0x7FFFFFFF
    assert s.submit(MSG, 1.0) == 1
    s._seq = 0x7FFFFFFE
    assert s.submit(MSG, 1.0) == 2  # 0x7FFFFFFF and 1 are still outstanding


def test_response_timeout_fails_the_submit_and_a_late_answer_is_ignored() -> None:
    s, smsc = bound_session(response_timeout=10.0)
    seq = s.submit(MSG, 1.0)
    assert s.next_deadline() == 11.0
    assert s.tick(10.99) == []
    actions = s.tick(11.0)
    assert actions == [SubmitFailed(seq, "no submit_sm_resp within 10s")]
    assert s.outstanding == 0
    late = smsc.answer(SubmitSmResp(sequence=seq, message_id="late"), 12.0)
    assert actions_of(Notice, late) and not actions_of(SubmitDone, late)


def test_a_silent_peer_stalls_the_session_and_its_late_answer_still_settles_the_submit() -> None:
    s, smsc = bound_session(response_timeout=10.0, stall_grace=20.0, enquire_link_interval=100.0)
    first = s.submit(MSG, 1.0)
    second = s.submit(MSG, 2.0)
    smsc.sent()
    assert s.tick(11.0) == [Stalled(True, "no answer within 10s")]  # not failed: the peer may be frozen
    assert s.stalled and not s.can_submit and s.ready_at(11.0) is None and s.outstanding == 2
    assert s.tick(12.0) == []  # the second one is overdue too; one stall
    assert s.next_deadline() == 31.0
    # the peer comes back (SIGCONT) and answers both: their message ids arrive late, nothing is lost
    back = smsc.answer(SubmitSmResp(sequence=first, message_id="A1"), 20.0)
    assert actions_of(SubmitDone, back) == [SubmitDone(first, back[0].status, "A1")]  # type: ignore[union-attr]
    assert s.stalled
    back = smsc.answer(SubmitSmResp(sequence=second, message_id="A2"), 20.5)
    assert actions_of(Stalled, back) == [Stalled(False, "the peer answered again")]
    assert not s.stalled and s.can_submit and s.outstanding == 0


def test_a_peer_silent_past_the_stall_grace_fails_the_submit_and_the_connection() -> None:
    s, smsc = bound_session(response_timeout=10.0, stall_grace=20.0, enquire_link_interval=5.0)
    seq = s.submit(MSG, 1.0)
    smsc.sent()
    s.tick(6.0)  # idle past enquire_link_interval: an enquire_link goes too, and gets no answer either
    assert isinstance(smsc.sent()[0], EnquireLink)
    assert actions_of(Stalled, s.tick(11.0))
    assert actions_of(SubmitFailed, s.tick(16.0)) == []  # the enquire_link is overdue as well, not fatal yet
    assert s.state is State.BOUND_TRX
    assert s.tick(31.0) == [SubmitFailed(seq, "no submit_sm_resp within 30s")]
    assert s.tick(36.0) == [Close("no enquire_link_resp within 30s")]
    assert s.state is State.CLOSED


def test_enquire_link_when_idle_and_reset_when_unanswered() -> None:
    s, smsc = bound_session(enquire_link_interval=30.0, response_timeout=10.0)
    assert s.next_deadline() == 30.0
    assert s.tick(29.9) == []
    assert s.tick(30.0) == []
    (enq,) = smsc.sent()
    assert isinstance(enq, EnquireLink)
    assert s.next_deadline() == 40.0
    assert smsc.answer(EnquireLinkResp(sequence=enq.sequence), 31.0) == []
    assert s.next_deadline() == 61.0  # idle again from the last PDU received
    s.tick(61.0)
    (_enq2,) = smsc.sent()
    actions = s.tick(71.0)
    assert actions == [Close("no enquire_link_resp within 10s")]
    assert s.state is State.CLOSED


def test_traffic_postpones_enquire_link() -> None:
    s, smsc = bound_session(enquire_link_interval=30.0)
    seq = s.submit(MSG, 20.0)
    smsc.answer(SubmitSmResp(sequence=seq, message_id="x"), 25.0)
    assert s.tick(30.0) == []
    assert s.next_deadline() == 55.0


def test_throttled_answers_back_off_exponentially_and_reset_on_success() -> None:
    s, smsc = bound_session(throttle_backoff=(0.2, 1.0))
    seq = s.submit(MSG, 1.0)
    actions = smsc.answer(SubmitSmResp(sequence=seq, status=0x58), 1.0)
    throttled = actions_of(Throttled, actions)[0]
    assert throttled.until == pytest.approx(1.2)
    done = actions_of(SubmitDone, actions)[0]
    assert done.status.retry is RetryClass.THROTTLED
    assert s.ready_at(1.0) == pytest.approx(1.2)
    with pytest.raises(SessionError, match="not allowed before"):
        s.submit(MSG, 1.1)
    seq = s.submit(MSG, 1.2)
    smsc.answer(SubmitSmResp(sequence=seq, status=0x14), 1.2)  # ESME_RMSGQFUL: same class
    assert s.ready_at(1.2) == pytest.approx(1.6)  # 0.4 s: doubled
    t = 1.6
    for step in (0.8, 1.0, 1.0):  # 0.2 · 2³ = 1.6 is capped at 1.0
        seq = s.submit(MSG, t)
        smsc.answer(SubmitSmResp(sequence=seq, status=0x58), t)
        until = s.ready_at(t)
        assert until == pytest.approx(t + step)
        assert until is not None
        t = until
    seq = s.submit(MSG, t)
    smsc.answer(SubmitSmResp(sequence=seq, message_id="ok"), t)
    seq = s.submit(MSG, t)
    smsc.answer(SubmitSmResp(sequence=seq, status=0x58), t)
    assert s.ready_at(t) == pytest.approx(t + 0.2)  # back to the first step after a success


def test_tps_limit_spaces_submits() -> None:
    s, _ = bound_session(tps=10.0, window=100)
    s.submit(MSG, 1.0)
    assert s.ready_at(1.0) == pytest.approx(1.1)
    with pytest.raises(SessionError):
        s.submit(MSG, 1.05)
    s.submit(MSG, 1.1)
    sent_at = [1.1 + 0.1 * i for i in range(1, 11)]
    for t in sent_at:
        assert s.ready_at(t) == pytest.approx(t)
        s.submit(MSG, t)
    assert s.outstanding == 12


def test_deliver_sm_is_answered_and_surfaced() -> None:
    _s, smsc = bound_session()
    receipt = DeliverSm(sequence=77, esm_class=0x04, short_message=b"id:1 stat:DELIVRD")
    actions = smsc.answer(receipt, 1.0)
    assert actions == [DeliverReceived(receipt)]
    assert smsc.sent() == [DeliverSmResp(sequence=77)]


def test_deliver_sm_on_a_transmitter_is_refused() -> None:
    s = Session(system_id="smsgw", password="secret", bind_mode=BindMode.TX)
    smsc = Smsc(s)
    s.bind(0.0)
    smsc.sent()
    smsc.answer(BindTransmitterResp(sequence=1), 0.0)
    assert s.state is State.BOUND_TX
    actions = smsc.answer(DeliverSm(sequence=5), 1.0)
    assert actions_of(Notice, actions)
    assert smsc.sent() == [DeliverSmResp(sequence=5, status=0x04)]


def test_peer_enquire_link_and_unbind() -> None:
    s, smsc = bound_session()
    assert smsc.answer(EnquireLink(sequence=40), 1.0) == []
    assert smsc.sent() == [EnquireLinkResp(sequence=40)]
    actions = smsc.answer(Unbind(sequence=41), 2.0)
    assert actions == [Close("the SMSC unbound")]
    assert smsc.sent() == [UnbindResp(sequence=41)]
    assert s.state is State.UNBINDING
    assert s.connection_lost() == []
    assert s.state is State.CLOSED


def test_our_unbind_waits_for_unbind_resp() -> None:
    s, smsc = bound_session()
    assert s.unbind(1.0) == []
    (unbind,) = smsc.sent()
    assert isinstance(unbind, Unbind) and s.state is State.UNBINDING
    assert not s.can_submit
    assert smsc.answer(UnbindResp(sequence=unbind.sequence), 1.1) == [Close("unbound")]
    assert s.state is State.CLOSED


def test_unbind_before_bound_just_closes() -> None:
    s = Session(system_id="smsgw", password="secret")
    s.bind(0.0)
    assert s.unbind(0.1) == [Close("closed before bound")]
    assert s.state is State.CLOSED


def test_connection_lost_fails_every_outstanding_submit() -> None:
    s, _ = bound_session(window=10)
    seqs = [s.submit(MSG, 1.0) for _ in range(10)]
    actions = s.connection_lost()
    assert sorted(a.sequence for a in actions_of(SubmitFailed, actions)) == seqs
    assert s.outstanding == 0 and s.state is State.CLOSED
    assert s.connection_lost() == []


def test_garbage_from_the_peer_resets_the_connection() -> None:
    s, _ = bound_session()
    seq = s.submit(MSG, 1.0)
    actions = s.receive_data(b"\x00\x00\x00\x05garbage", 1.1)
    assert actions_of(SubmitFailed, actions)[0].sequence == seq
    close = actions_of(Close, actions)[0]
    assert "command_length 5" in close.reason
    assert s.state is State.CLOSED
    assert s.receive_data(b"more", 1.2) == []


def test_unknown_request_gets_generic_nack_and_the_session_goes_on() -> None:
    s, smsc = bound_session()
    unknown = bytes.fromhex("00000010 00000999 00000000 0000002a")
    actions = s.receive_data(unknown, 1.0)
    assert actions_of(Notice, actions)
    assert smsc.sent() == [GenericNack(sequence=42, status=0x03)]
    assert s.state is State.BOUND_TRX


def test_generic_nack_answers_a_submit() -> None:
    s, smsc = bound_session()
    seq = s.submit(MSG, 1.0)
    (done,) = smsc.answer(GenericNack(sequence=seq, status=0x03), 1.1)
    assert isinstance(done, SubmitDone) and done.status.name == "ESME_RINVCMDID" and done.message_id == ""
    assert s.outstanding == 0


def test_unreadable_submit_sm_resp_fails_the_submit() -> None:
    s, _ = bound_session()
    seq = s.submit(MSG, 1.0)
    bad = bytes.fromhex("00000014 80000004 00000000") + seq.to_bytes(4, "big") + b"ABCD"
    (failed,) = s.receive_data(bad, 1.1)
    assert isinstance(failed, SubmitFailed) and "unreadable response" in failed.reason


def test_submit_before_bind_is_a_driver_bug() -> None:
    s = Session(system_id="smsgw", password="secret")
    with pytest.raises(SessionError, match="OPEN"):
        s.submit(MSG, 0.0)
    assert s.ready_at(0.0) is None


def test_table_transitions() -> None:
    assert transition(State.OPEN, Input.SEND_BIND) is State.BINDING
    assert transition(State.BOUND_RX, Input.RECV_UNBIND) is State.UNBINDING
    assert transition(State.UNBINDING, Input.CONNECTION_LOST) is State.CLOSED
    with pytest.raises(SessionError, match="not allowed in state OPEN"):
        transition(State.OPEN, Input.RECV_UNBIND_RESP)
    with pytest.raises(SessionError):
        transition(State.CLOSED, Input.SEND_BIND)
    reachable = {State.OPEN} | set(TRANSITIONS.values())
    assert reachable == set(State)
    diagram = state_diagram()
    assert "OPEN --> BINDING: send bind_*" in diagram
    assert "BINDING --> BOUND_TRX: bind_transceiver_resp ok" in diagram


def test_token_bucket_and_backoff() -> None:
    b = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    b.take(0.0)
    b.take(0.0)
    assert b.ready_at(0.0) == pytest.approx(0.5)
    assert b.ready_at(0.25) == pytest.approx(0.5)
    assert b.ready_at(10.0) == 10.0 and b.tokens == 2.0  # never saves more than the burst
    back = Backoff(0.5, 4.0, rng=random.Random(1))
    delays = [back.next_delay() for _ in range(6)]
    for d, base in zip(delays, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0], strict=True):
        assert 0.8 * base <= d <= min(4.0, 1.2 * base)
    back.reset()
    assert back.next_delay() <= 0.6
