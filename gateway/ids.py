"""Object ids: a kind prefix and 80 random bits, e.g. ``otp_5kq2m9x1c7d3f0a8b6e4``."""

from __future__ import annotations

import secrets


def new_id(kind: str, region: str = "") -> str:
    """``otp_5kq2…`` in the control store; ``otp_ru_5kq2…`` for a record kept in region ``ru``."""
    return f"{kind}_{region}_{secrets.token_hex(10)}" if region else f"{kind}_{secrets.token_hex(10)}"
