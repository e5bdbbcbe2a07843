"""One error tree for the HTTP API, rendered in the contract's shape at the edge.

    ApiError(status, code, message, **details)
     ├── raised by handlers and services for anything the caller did wrong or must know
     └── rendered by ``error_middleware`` as {"error": {"code", "message", ...details}}

Anything else that escapes a handler is logged with its traceback and answered as
``500 internal_error`` without echoing the exception text (it may hold personal data).
The table below is the single list of machine codes; ``docs/errors.md`` is generated from it.
"""

from __future__ import annotations

from typing import Any

ERROR_CODES: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "The request body or parameters are malformed or have unknown fields."),
    "invalid_json": (400, "The request body is not valid JSON."),
    "invalid_number": (400, "The phone number is not a valid E.164 number."),
    "incorrect_code": (400, "The code does not match; attempts remain."),
    "unauthorized": (401, "Missing or unknown API key."),
    "forbidden": (403, "The API key lacks the scope this operation needs."),
    "country_not_permitted": (403, "The tenant may not send to this destination country."),
    "fraud_blocked": (403, "Anti-fraud refused the request; see reasons."),
    "no_consent": (403, "Marketing to this number needs an opt-in; it has none or opted out."),
    "not_found": (404, "No such object for this tenant."),
    "method_not_allowed": (405, "This path does not take that method."),
    "conflict": (409, "The object is not in a state that allows this operation."),
    "quiet_hours": (409, "Marketing is not allowed at this time in the destination's time zone."),
    "expired": (410, "The OTP has expired."),
    "payload_too_large": (413, "The request body is larger than allowed."),
    "request_timeout": (408, "The request body did not arrive in time."),
    "unsupported_media_type": (415, "Send application/json."),
    "sender_not_registered": (422, "The sender ID is not approved for the destination country."),
    "sender_not_allowed": (
        422,
        "The destination country accepts no sender of this kind (e.g. text senders).",
    ),
    "invalid_sender": (422, "The sender ID breaks the format rules (length, characters)."),
    "template_not_registered": (422, "The text matches no template registered for this sender and country."),
    "invalid_document": (400, "The uploaded document was refused (type, size or name); see reason."),
    "challenge_required": (428, "Prove a human (e.g. CAPTCHA) and retry with the challenge token."),
    "rate_limited": (429, "Too many requests for this scope; retry after the given time."),
    "too_many_attempts": (429, "Too many wrong codes for this OTP."),
    "internal_error": (500, "Unexpected error; it has been logged with the request id."),
    "no_route": (503, "No carrier route can take this message now."),
    "unavailable": (
        503,
        "A service the request needs cannot be reached now (the store; for a verify, the shared "
        "attempt counter): retry after Retry-After, when given.",
    ),
}


class ApiError(Exception):
    """An error the API answers with: HTTP status, machine code, human message, extra details."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        default_status, default_message = ERROR_CODES[code]
        self.code = code
        self.status = status or default_status
        self.message = message or default_message
        self.details = details
        self.headers = headers or {}
        super().__init__(f"{self.status} {code}: {self.message}")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}
