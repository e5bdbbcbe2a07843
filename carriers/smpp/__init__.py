"""SMPP 3.4 for smsgw: a sans-IO core and a thin asyncio driver.

* :mod:`.pdu` — command ids, the command_status table (with retry classes), TLVs, PDU dataclasses;
* :mod:`.codec` — :func:`encode`, :func:`decode` and the stream :class:`Framer`;
* :mod:`.session` — the ESME session state machine (window, timeouts, enquire_link, throttling);
* :mod:`.receipts` — delivery receipts from deliver_sm (TLV and text forms);
* :mod:`.client` — :class:`SmppCarrier`, the :class:`carriers.base.Carrier` over TCP.

Errors::

    CarrierError (carriers.base)
     └── SmppError
          ├── FramingError   the byte stream cannot be framed: the connection is reset
          └── SessionError   a call the session's state does not allow (a driver bug)

Submit outcomes are never raised: :meth:`SmppCarrier.submit` returns a SubmitResult.
"""

from carriers.smpp.client import SmppCarrier
from carriers.smpp.codec import Framer, FramingError, SmppError, decode, encode
from carriers.smpp.pdu import STATUSES, RetryClass, StatusInfo, status_info
from carriers.smpp.receipts import parse_receipt
from carriers.smpp.session import Session, SessionError, State

__all__ = [
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
]
