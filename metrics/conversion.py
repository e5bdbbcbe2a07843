"""Conversion tracking for marketing SMS: tracked short links and the funnel click → signup → order → payment.

Pure logic, no I/O: the gateway stores the links, serves ``GET /l/{link_id}`` (count a ``click``, then
redirect) and takes ``POST /v1/events``.

A link id is random (``secrets.token_urlsafe``) and bound to the **message** that carried it, never to a
phone number: the id says nothing about who received it, and the mapping link → message → recipient stays
inside the gateway, where erasure of the subject can cut it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

FUNNEL: tuple[str, ...] = ("click", "signup", "order", "payment")
LINK_PATH = "/l/"
LINK_ID_BYTES = 9  # 12 URL-safe characters, 72 random bits: short in an SMS, not guessable
LINK_ID = re.compile(r"[A-Za-z0-9_-]{12}")

# http(s) URLs; a trailing sentence mark or an unmatched closing bracket is not part of the link.
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?'\""
_PAIRS = {")": "(", "]": "[", "}": "{"}

# Link-preview fetchers (messengers, social apps) open links nobody clicked.
PREVIEW_AGENTS = (
    "facebookexternalhit",
    "facebot",
    "whatsapp",
    "telegrambot",
    "twitterbot",
    "slackbot",
    "discordbot",
    "linkedinbot",
    "skypeuripreview",
    "googlebot",
    "bingbot",
    "applebot",
)


class ConversionError(ValueError):
    """A conversion request or link that cannot be accepted; ``code`` is the API error code."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class UrlSpan:
    start: int
    end: int
    url: str


@dataclass(frozen=True)
class TrackedLink:
    link_id: str
    message_id: str
    target_url: str


@dataclass(frozen=True)
class Rewritten:
    body: str
    links: tuple[TrackedLink, ...]


@dataclass(frozen=True)
class EventRequest:
    """A parsed ``POST /v1/events`` body: which message or OTP, and which funnel stage."""

    subject: Literal["message", "otp"]
    subject_id: str
    event: str


def new_link_id() -> str:
    return secrets.token_urlsafe(LINK_ID_BYTES)


def _trim(url: str) -> str:
    while url:
        last = url[-1]
        unmatched = last in _PAIRS and url.count(last) > url.count(_PAIRS[last])
        if last not in _TRAILING and not unmatched:
            break
        url = url[:-1]
    return url


def find_urls(body: str) -> list[UrlSpan]:
    spans = []
    for m in _URL.finditer(body):
        url = _trim(m.group(0))
        if "://" in url and url.split("://", 1)[1]:
            spans.append(UrlSpan(m.start(), m.start() + len(url), url))
    return spans


def rewrite_links(
    body: str, base_url: str, message_id: str, new_id: Callable[[], str] = new_link_id
) -> Rewritten:
    """Replace each URL in ``body`` by ``{base_url}/l/{link_id}``; one link per distinct URL.

    URLs already pointing at ``base_url`` are left alone, so rewriting twice changes nothing.
    """
    if not message_id:
        raise ConversionError("a tracked link needs the message id it belongs to")
    base = base_url.rstrip("/")
    if not re.match(r"https?://[^/\s]+", base):
        raise ConversionError(f"base_url must be an absolute http(s) URL: {base_url!r}")
    own_prefix = base + LINK_PATH
    by_url: dict[str, TrackedLink] = {}
    parts: list[str] = []
    pos = 0
    for span in find_urls(body):
        if span.url.startswith(own_prefix):
            continue
        link = by_url.get(span.url)
        if link is None:
            link_id = new_id()
            if not LINK_ID.fullmatch(link_id):
                raise ConversionError(f"link id generator gave a malformed id: {link_id!r}")
            link = by_url[span.url] = TrackedLink(link_id, message_id, span.url)
        parts += [body[pos : span.start], own_prefix + link.link_id]
        pos = span.end
    parts.append(body[pos:])
    return Rewritten("".join(parts), tuple(by_url.values()))


def parse_link_id(path_part: str) -> str:
    if not LINK_ID.fullmatch(path_part):
        raise ConversionError("not a link id", code="not_found")
    return path_part


def counts_as_click(method: str, user_agent: str | None) -> bool:
    """A GET from something that is not a link-preview fetcher; HEAD and previews still get redirected."""
    if method.upper() != "GET":
        return False
    agent = (user_agent or "").lower()
    return not any(bot in agent for bot in PREVIEW_AGENTS)


def parse_event(name: object) -> str:
    if not isinstance(name, str) or name not in FUNNEL:
        raise ConversionError(f"event must be one of {', '.join(FUNNEL)}")
    return name


def parse_event_request(payload: object) -> EventRequest:
    """Validate ``{"message_id"|"otp_id": str, "event": click|signup|order|payment}``: exactly one id."""
    if not isinstance(payload, Mapping):
        raise ConversionError("body must be a JSON object")
    ids = [(k, payload[k]) for k in ("message_id", "otp_id") if payload.get(k) is not None]
    if len(ids) != 1:
        raise ConversionError("give exactly one of message_id or otp_id")
    key, value = ids[0]
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ConversionError(f"{key} must be a non-empty string")
    subject: Literal["message", "otp"] = "message" if key == "message_id" else "otp"
    return EventRequest(subject, value, parse_event(payload.get("event")))


@dataclass(frozen=True)
class FunnelStep:
    event: str
    count: int
    of_previous: float | None  # share of the stage before (None for the first stage or when it is 0)
    of_first: float | None  # share of clicks


def funnel(counts: Mapping[str, int]) -> list[FunnelStep]:
    """Counts per stage, in funnel order, with the share kept from one stage to the next."""
    unknown = set(counts) - set(FUNNEL)
    if unknown:
        raise ConversionError(f"unknown funnel events: {sorted(unknown)}")
    steps: list[FunnelStep] = []
    first = counts.get(FUNNEL[0], 0)
    for i, event in enumerate(FUNNEL):
        n = counts.get(event, 0)
        prev = counts.get(FUNNEL[i - 1], 0) if i else 0
        steps.append(
            FunnelStep(event, n, n / prev if i and prev else None, n / first if i and first else None)
        )
    return steps


def count_events(events: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(FUNNEL, 0)
    for e in events:
        counts[parse_event(e)] += 1
    return counts
