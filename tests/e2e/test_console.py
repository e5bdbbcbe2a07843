"""The onboarding console in a real headless Chromium against a real gateway and sim-carrier.

An onboarding key files a sender-ID request for AE, uploads one document, submits and is told what is
missing, uploads the rest and submits again; an admin key of the same tenant approves AE. Then, over
HTTP, an OTP with that sender to AE is accepted and one to Saudi Arabia (registration required, not
approved) is refused with ``422 sender_not_registered``. Every page is screenshotted on the way
(``scripts/screenshot_console.py`` runs the same walk and writes the pictures to ``docs/``).

The browser is Debian's ``/usr/bin/chromium`` driven by the Python ``playwright`` package; no browser
is ever downloaded (``scripts/test`` installs the chromium package when it is missing).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect, sync_playwright

from gateway.api.console import short_label, vocabulary
from senderid import DOCUMENT_LABELS, FROM_REQUEST, load_rules
from tests.conftest import free_port
from tests.e2e.procs import Procs, sim_config

RULES = load_rules({})
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SENDER = "ACMEOTP"
AE_NUMBER = "+971501234567"
SA_NUMBER = "+966501234567"  # Saudi Arabia: registration required, in the request, left in draft
QA_NUMBER = "+97433123456"  # Qatar: registration required, not in the request
# what AE asks to be uploaded (the sender ID itself comes with the request)
UPLOADS_AE = RULES.countries["AE"].required_documents - FROM_REQUEST
PAGES = ("signin", "countries", "new-request", "status", "review")


def tiny_pdf(text: str) -> bytes:
    """A small valid one-page PDF (correct cross-reference offsets) saying ``text``."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@dataclass
class Keys:
    tenant_id: str
    onboarding: str
    admin: str


def make_keys(procs: Procs) -> Keys:
    r = procs.smsgw("tenant", "create", "Acme Travel", "--scopes", "onboarding", "--countries", "ALL")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    r = procs.smsgw("tenant", "key", "add", out["tenant_id"], "--scopes", "admin,onboarding,send,verify")
    assert r.returncode == 0, r.stderr
    admin = json.loads(r.stdout.strip().splitlines()[-1])["api_key"]
    return Keys(out["tenant_id"], out["api_key"], admin)


def fetch(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects: status, headers (lower-case names), body."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(base + path, headers=headers or {}), timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def check_console_files(base: str) -> None:
    """The console's files: served with their types and a strict CSP, cached by ETag, nothing else
    under /console/ (no path tricks), listed in /openapi.json, no reference to another origin."""
    status, headers, page = fetch(base, "/console/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    for path, ctype in (("/console/app.js", "text/javascript"), ("/console/style.css", "text/css")):
        status, headers, body = fetch(base, path)
        assert status == 200 and headers["content-type"].startswith(ctype) and b"://" not in body, path
        assert fetch(base, path, {"If-None-Match": headers["etag"]})[0] == 304
    assert b"://" not in page and b"/console/app.js" in page and b"/console/style.css" in page
    for bad in ("/console/nope.js", "/console/%2e%2e%2fsmsgw.db", "/console/__init__.py"):
        status, _, body = fetch(base, bad)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found", bad
    status, headers, _ = fetch(base, "/console")
    assert status == 302 and headers["location"] == "/console/"
    status, _, body = fetch(base, "/console/vocabulary.json")
    vocab = json.loads(body)
    assert vocab["short"]["company_registration"] == "Company registration certificate"
    assert "sender_id" in vocab["from_request"] and vocab["states"]["approved"] == "Approved"
    assert {"/console/", "/console/{file}"} <= set(json.loads(fetch(base, "/openapi.json")[2])["paths"])


def http(base: str, method: str, path: str, body: Any, key: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@dataclass
class Watch:
    """What the page did that it must not: errors in its script (a CSP violation included), requests
    to another origin, a console file or an API call answering a status the walk did not ask for."""

    base: str
    expected: set[tuple[int, str]] = field(default_factory=lambda: {(401, "/v1/whoami")})
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", self.on_console)
        page.on("request", lambda r: None if r.url.startswith(self.base) else self.foreign.append(r.url))
        page.on("response", self.on_response)

    def on_console(self, msg: ConsoleMessage) -> None:
        # failed loads are judged by their response below, with the path the message lacks
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(msg.text)

    def on_response(self, resp: Response) -> None:
        path = resp.url.removeprefix(self.base).split("?")[0]
        if resp.status >= 400 and (resp.status, path) not in self.expected:
            self.errors.append(f"{resp.status} {path}")


def settled(page: Page, view: str) -> None:
    """Wait until the console shows ``view`` with its data loaded and no request in flight."""
    page.wait_for_function(
        "v => document.body.dataset.view === v && document.body.dataset.busy === '0'", arg=view
    )


def unlabelled_controls(page: Page) -> list[str]:
    """Visible form controls that have neither a <label> nor an aria-label."""
    result: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.offsetParent !== null && el.type !== 'hidden')
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.id || el.name || el.outerHTML.slice(0, 80))"""
    )
    return result


def shoot(page: Page, path: Path, *, full_page: bool = False, down_to: str | None = None) -> None:
    """A screenshot from the top, without a focus ring on whatever was typed into last; with
    ``down_to``, the full page cut 300 px below that element (a long history stays out)."""
    page.evaluate("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    if down_to is None:
        page.screenshot(path=path, full_page=full_page)
        return
    box = page.locator(down_to).bounding_box()
    assert box is not None
    width = page.viewport_size["width"] if page.viewport_size else 1280
    page.screenshot(
        path=path, full_page=True, clip={"x": 0, "y": 0, "width": width, "height": box["y"] + 300}
    )


def sign_in(page: Page, key: str, landing: str) -> None:
    """Keyboard only: the key typed into the focused field, Enter to send."""
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    page.get_by_label("API key").focus()
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    settled(page, landing)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    settled(page, "signin")


def upload(page: Page, code: str, name: str) -> None:
    page.get_by_label("Document", exact=True).select_option(code)
    page.get_by_label("File", exact=True).set_input_files(
        {"name": name, "mimeType": "application/pdf", "buffer": tiny_pdf(f"{code} for {SENDER}")}
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#flash")).to_contain_text(f"Uploaded {name}")
    settled(page, "request")


def walk(page: Page, base: str, keys: Keys, shots: Path) -> str:
    """The whole console flow; returns the registration id. Screenshots go to ``shots``."""
    shots.mkdir(parents=True, exist_ok=True)
    page.goto(base + "/console/")
    settled(page, "signin")
    assert unlabelled_controls(page) == []
    shoot(page, shots / "console-signin.png")

    # a wrong key: the API's own message is shown and the page stays on sign-in
    sign_in(page, "sk_live_wrong", "signin")
    expect(page.get_by_role("alert")).to_contain_text("Unknown or revoked API key")
    page.get_by_label("API key").fill("")
    sign_in(page, keys.onboarding, "requests")
    expect(page.get_by_text("No request yet")).to_be_visible()

    # country requirements: searchable
    nav = page.get_by_role("navigation", name="Console")
    nav.get_by_role("link", name="Country rules").click()
    settled(page, "countries")
    table = page.locator("#countries-table tbody tr")
    total = table.count()
    assert total >= 63
    page.get_by_label("Search countries").fill("united arab")
    expect(table).to_have_count(1)
    expect(table.first).to_contain_text("Letter of authorization (LOA)")
    page.get_by_label("Search countries").fill("")
    page.get_by_label("Registration required only").check()
    assert 20 < table.count() < total
    assert unlabelled_controls(page) == []
    shoot(page, shots / "console-countries.png")

    # file the request
    nav.get_by_role("link", name="New request").click()
    settled(page, "new")
    page.get_by_label("Sender ID").fill(SENDER)
    page.get_by_label("Brand").fill("Acme Travel")
    page.get_by_label("Use case").fill("Sign-in codes for the Acme Travel app")
    page.get_by_label("Filter the list").fill("United Arab")
    page.get_by_label("United Arab Emirates").check()
    page.get_by_label("Filter the list").fill("SA")  # an ISO code finds its country too
    page.get_by_label("Saudi Arabia").check()
    expect(page.locator("#new-country-selected")).to_contain_text("Saudi Arabia (SA)")
    page.get_by_label("Sample templates").fill("Your Acme Travel code is {#numeric#}")
    expect(page.locator("#new-needs")).to_contain_text("No-objection certificate (NOC)")
    assert unlabelled_controls(page) == []
    shoot(page, shots / "console-new-request.png", full_page=True)
    page.get_by_role("button", name="Create request").click()
    settled(page, "request")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Sender {SENDER}")
    reg_id = page.url.rsplit("/", 1)[1]

    # one document, submit: both countries refused, with what is missing
    upload(page, "company_registration", "acme-registration.pdf")
    submit = page.locator("#submit-btn")
    expect(submit).to_have_text("Submit AE, SA")
    submit.click()
    result = page.locator("#submit-result")
    expect(result).to_contain_text("United Arab Emirates (AE) stays in draft")
    expect(result).to_contain_text("Saudi Arabia (SA) stays in draft")
    expect(result).to_contain_text("Letter of authorization (LOA)")
    expect(result).not_to_contain_text("Company registration")
    expect(page.locator("#status-table tbody")).not_to_contain_text("Submitted")

    # the rest of what AE needs (SA still lacks its signatory's ID and website), then submit again
    for code in sorted(UPLOADS_AE - {"company_registration"}):
        upload(page, code, f"acme-{code.replace('_', '-')}.pdf")
    submit.click()
    expect(result).to_contain_text("Submitted for review: United Arab Emirates (AE).")
    refused = result.locator(".refused")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("Saudi Arabia (SA) stays in draft")
    expect(refused).to_contain_text("Identity document of the authorised signatory")
    expect(refused).to_contain_text("Company website")
    expect(submit).to_have_text("Submit SA")
    expect(page.locator("#status-table tbody tr").filter(has_text="United Arab Emirates")).to_contain_text(
        "Submitted"
    )
    expect(page.locator("#status-table tbody tr").filter(has_text="Saudi Arabia")).to_contain_text("Draft")
    expect(page.locator("#audit-table tbody")).to_contain_text("Submit refused")
    assert unlabelled_controls(page) == []
    shoot(page, shots / "console-status.png", down_to="#h-history")

    # an onboarding key has no review queue
    assert nav.get_by_role("link", name="Review").count() == 0
    sign_out(page)

    # the admin of the same tenant approves AE
    sign_in(page, keys.admin, "review")
    card = page.get_by_role("article").filter(has_text=SENDER)
    expect(card).to_have_count(1)
    expect(card).to_contain_text("United Arab Emirates (AE)")
    assert unlabelled_controls(page) == []
    shoot(page, shots / "console-review.png")
    card.get_by_role("button", name="Reject AE").click()
    expect(page.get_by_role("alert")).to_contain_text("A rejection needs a reason")
    card.get_by_role("button", name="Approve AE").click()
    expect(page.locator("#flash")).to_contain_text(f"{SENDER} approved for United Arab Emirates (AE)")
    expect(page.get_by_text("Nothing waits for review")).to_be_visible()

    nav.get_by_role("link", name="Requests", exact=True).click()
    settled(page, "requests")
    expect(page.locator("#requests-table tbody")).to_contain_text("Approved")
    return reg_id


def phone_layout_fits(page: Page, base: str) -> dict[str, int]:
    """At a phone's width, the views that have no table wider than the screen: scroll width per view."""
    page.set_viewport_size({"width": 390, "height": 844})
    widths = {}
    for view in ("countries", "new", "requests", "review"):
        page.goto(f"{base}/console/#/{view}")
        settled(page, view)
        widths[view] = int(page.evaluate("document.documentElement.scrollWidth"))
    return widths


def test_short_labels_drop_examples_and_asides_but_keep_abbreviations() -> None:
    assert short_label("letter of authorization (LOA)") == "Letter of authorization (LOA)"
    assert short_label("proof of brand ownership (e.g. trademark)") == "Proof of brand ownership"
    assert short_label("company registration certificate (business licence)") == (
        "Company registration certificate"
    )
    assert short_label("(only an aside here)") == "(only an aside here)"
    short = vocabulary()["short"]
    assert isinstance(short, dict) and set(short) == set(DOCUMENT_LABELS)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_console_registers_a_sender_that_then_sends_only_where_approved(
    procs: Procs, browser: Browser, tmp_path: Path
) -> None:
    sim_port = procs.sim_carrier()
    port = free_port()
    keys = make_keys(procs)
    procs.gateway(port, sim_config(port, sim_port))
    base = f"http://127.0.0.1:{port}"
    check_console_files(base)

    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(8000)
    watch = Watch(base)
    watch.attach(page)
    shots = tmp_path / "shots"
    reg_id = walk(page, base, keys, shots)

    # the key never left the tab's session storage: not in a URL, a cookie or local storage
    assert keys.admin not in page.url
    assert page.context.cookies() == []
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.getItem('smsgw.console.api_key')") == keys.admin
    widths = phone_layout_fits(page, base)
    assert all(w <= 390 for w in widths.values()), widths
    assert watch.errors == [] and watch.foreign == []
    for name in PAGES:
        png = (shots / f"console-{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name

    status, reg = http(base, "GET", f"/v1/sender-ids/{reg_id}", None, keys.onboarding)
    assert status == 200
    assert {c["country"]: c["state"] for c in reg["countries"]} == {"AE": "approved", "SA": "draft"}
    assert {d["code"] for d in reg["documents"]} == UPLOADS_AE

    status, body = http(base, "POST", "/v1/otp", {"to": AE_NUMBER, "sender_id": SENDER}, keys.admin)
    assert status == 202, body
    for elsewhere in (SA_NUMBER, QA_NUMBER):
        status, body = http(base, "POST", "/v1/otp", {"to": elsewhere, "sender_id": SENDER}, keys.admin)
        assert status == 422 and body["error"]["code"] == "sender_not_registered", (elsewhere, body)
