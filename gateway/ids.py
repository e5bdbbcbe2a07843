"""Object ids: a kind prefix and 80 random bits, e.g. ``otp_5kq2m9x1c7d3f0a8b6e4``."""

from __future__ import annotations

import secrets


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(10)}"
