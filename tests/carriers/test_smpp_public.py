"""The public surface of carriers.smpp and carriers.encoding, pinned: changing it is a decision."""

from __future__ import annotations

import carriers.encoding
import carriers.smpp
from carriers.base import Carrier
from carriers.smpp import SmppCarrier


def test_smpp_exports() -> None:
    assert set(carriers.smpp.__all__) == {
        "STATUSES",
        "Framer",
        "FramingError",
        "RetryClass",
        "Session",
        "SessionError",
        "SmppCarrier",
        "SmppError",
        "State",
        "StatusInfo",
        "decode",
        "encode",
        "parse_receipt",
        "status_info",
    }
    for name in carriers.smpp.__all__:
        assert getattr(carriers.smpp, name) is not None


def test_encoding_api_and_the_carrier_protocol() -> None:
    for name in ("count_segments", "split_message", "is_gsm7", "decode_payload", "parse_concat_udh"):
        assert callable(getattr(carriers.encoding, name))
    assert isinstance(SmppCarrier("x", "127.0.0.1", 1, "id", "pw"), Carrier)
