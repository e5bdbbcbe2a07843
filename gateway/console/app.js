// smsgw onboarding console: a few views over the /v1 sender-ID API. No framework, no build step.
// Page text is only ever set through textContent (never innerHTML), and the API key lives in
// sessionStorage for this tab alone: never in a URL, a cookie or localStorage.
"use strict";

const KEY_STORE = "smsgw.console.api_key";
const state = { key: null, who: null, countries: null, byIso: new Map(), vocab: null, picked: new Set() };

// ---------------------------------------------------------------- small helpers

function $(id) {
  return document.getElementById(id);
}

// h("p", {class: "x"}, "text", child) -> element; attributes set with setAttribute, text as text nodes
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

function td(label, ...children) {
  return h("td", { "data-label": label }, ...children);
}

function countryName(iso) {
  const c = state.byIso.get(iso);
  return c ? c.name : iso;
}

function capital(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function docLabel(code) {
  const labels = (state.vocab && state.vocab.documents) || {};
  return capital(labels[code] || code.replace(/_/g, " "));
}

function docShort(code) {
  const labels = (state.vocab && state.vocab.short) || {};
  return labels[code] || docLabel(code);
}

function fromRequest(code) {
  return Boolean(state.vocab && state.vocab.from_request.includes(code));
}

function stateLabel(s) {
  const labels = (state.vocab && state.vocab.states) || {};
  return labels[s] || s;
}

function badge(s) {
  return h("span", { class: `badge badge-${s}` }, stateLabel(s));
}

// facts come as true/false/null or "yes"/"no"/"limited"/"unknown"
function fact(v) {
  if (v === true) return "yes";
  if (v === false) return "no";
  if (v === null || v === undefined || v === "") return "unknown";
  return String(v).toLowerCase();
}

function factPill(v) {
  const f = fact(v);
  return h("span", { class: `pill pill-${f.replace(/[^a-z]/g, "")}` }, f.charAt(0).toUpperCase() + f.slice(1));
}

// lead time as text ("14-15 days", "none (immediate)"), a number, [min, max] or {min_days, max_days}
function leadTime(v) {
  if (v === null || v === undefined || v === "" || v === "unknown") return "Not known";
  if (Array.isArray(v)) return v[0] === v[1] ? `${v[0]} days` : `${v[0]}–${v[1]} days`;
  if (typeof v === "object") {
    const lo = v.min_days ?? v.min, hi = v.max_days ?? v.max;
    return lo === hi ? `${lo} days` : `${lo}–${hi} days`;
  }
  const text = String(v).replace(/(\d)-(\d)/, "$1–$2");
  return /^[\d–]+$/.test(text) ? `${text} days` : text.charAt(0).toUpperCase() + text.slice(1);
}

// timestamps come as epoch seconds or ISO text; shown as UTC, to the minute
function when(v) {
  if (v === null || v === undefined || v === "") return "";
  const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// a status line; carry=true keeps it through the next view change (the message of an action that navigates)
let carryFlash = false;
function flash(text, carry) {
  const el = $("flash");
  el.textContent = text;
  el.classList.toggle("on", Boolean(text));
  carryFlash = Boolean(carry);
}

// navigate; a hash equal to the current one fires no event, so route directly then
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// shows the API's own error: its message, its code, and any list of missing documents
function showError(err) {
  const el = clear($("error"));
  if (!err) {
    el.hidden = true;
    return;
  }
  const body = err.body || {};
  el.append(h("p", { class: "alert-title" }, body.message || err.message || "Something went wrong."));
  if (body.code) el.append(h("p", { class: "alert-code" }, `${err.status || ""} ${body.code}`.trim()));
  if (Array.isArray(body.missing) && body.missing.length) {
    el.append(h("p", {}, "Missing: " + body.missing.map(docLabel).join(", ")));
  }
  el.hidden = false;
  el.scrollIntoView({ block: "nearest" });
}

class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// requests in flight: <main aria-busy> and <body data-busy> say when the page is settled
let inflight = 0;
function busy(delta) {
  inflight += delta;
  $("main").setAttribute("aria-busy", String(inflight > 0));
  document.body.dataset.busy = String(inflight);
}

async function api(method, path, body) {
  busy(1);
  try {
    return await request(method, path, body);
  } finally {
    busy(-1);
  }
}

async function request(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiFailure(0, { code: "network_error", message: "The gateway cannot be reached." });
  }
  let data = null;
  const text = await resp.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (!resp.ok) {
    const error = (data && data.error) || { code: `http_${resp.status}`, message: `The gateway answered ${resp.status}.` };
    if (resp.status === 401 && path !== "/v1/whoami") signOut("Your API key was refused; sign in again.");
    throw new ApiFailure(resp.status, error);
  }
  return data;
}

// runs an action, shows its error if any; returns undefined on failure
async function attempt(fn) {
  showError(null);
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApiFailure) showError(err);
    else throw err;
    return undefined;
  }
}

// runs an action with its button disabled, so a double click files nothing twice
async function withButton(button, fn) {
  if (button.disabled) return undefined;
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

function isAdmin() {
  return Boolean(state.who && state.who.scopes.includes("admin"));
}

// ---------------------------------------------------------------- data loading

async function loadVocabulary() {
  if (state.vocab) return;
  const resp = await fetch("/console/vocabulary.json", { credentials: "omit" });
  state.vocab = resp.ok ? await resp.json() : { documents: {}, from_request: [], states: {} };
}

// countries without their own row in the rules carry their ISO code as name: ask the browser for one
const regionNames = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "region" }) : null;

function displayName(c) {
  if (c.name && c.name !== c.iso2) return c.name;
  try {
    return (regionNames && regionNames.of(c.iso2)) || c.iso2;
  } catch (e) {
    return c.iso2;
  }
}

async function loadCountries() {
  if (state.countries) return state.countries;
  const data = await api("GET", "/v1/senderid/countries");
  state.countries = data.countries
    .map((c) => ({ ...c, name: displayName(c) }))
    .sort((a, b) => a.name.localeCompare(b.name));
  state.byIso = new Map(state.countries.map((c) => [c.iso2, c]));
  return state.countries;
}

// ---------------------------------------------------------------- sign in / out

async function signIn(key) {
  state.key = key;
  const who = await api("GET", "/v1/whoami");
  state.who = who;
  sessionStorage.setItem(KEY_STORE, key);
  renderWho();
  return who;
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  Object.assign(state, { key: null, who: null, countries: null, byIso: new Map() });
  state.picked.clear();
  renderWho();
  flash(message || "Signed out.", true);
  go("#/signin");
}

function renderWho() {
  const on = Boolean(state.who);
  $("nav").hidden = !on;
  $("who").hidden = !on;
  $("nav-review").hidden = !isAdmin();
  if (on) {
    $("who-name").textContent = state.who.name;
    $("who-scopes").textContent = state.who.scopes.join(" · ");
  }
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  if (!key) {
    showError({ body: { message: "Enter an API key." } });
    input.focus();
    return;
  }
  const who = await attempt(() => signIn(key));
  if (!who) {
    state.key = null;
    input.focus();
    return;
  }
  input.value = "";
  const canOnboard = who.scopes.includes("onboarding") || who.scopes.includes("admin");
  flash(
    canOnboard
      ? `Signed in as ${who.name}.`
      : `Signed in as ${who.name}, but this key lacks the onboarding scope: requests will be refused.`,
    true,
  );
  go(isAdmin() ? "#/review" : "#/requests");
});

$("signout").addEventListener("click", () => signOut());

// ---------------------------------------------------------------- country rules

function countryMatches(c, q, onlyRegistration) {
  if (onlyRegistration && fact(c.registration_required) !== "yes") return false;
  if (!q) return true;
  const hay = `${c.iso2} ${c.name} ${c.notes || ""} ${(c.documents_required || []).join(" ")}`.toLowerCase();
  return q.split(/\s+/).every((w) => hay.includes(w));
}

// uploads first, then what the request itself gives (sender, use case, templates) in a quieter style
function documentsCell(codes) {
  if (!codes || !codes.length) return h("span", { class: "muted" }, "None listed");
  const sorted = [...codes].sort((a, b) => fromRequest(a) - fromRequest(b) || docShort(a).localeCompare(docShort(b)));
  return h(
    "ul",
    { class: "tags" },
    sorted.map((c) =>
      h(
        "li",
        { class: fromRequest(c) ? "doc-tag doc-tag-request" : "doc-tag", title: docLabel(c) },
        docShort(c),
        fromRequest(c) ? h("span", { class: "sr-only" }, " (given by the request)") : null,
      ),
    ),
  );
}

// a long note shows its first sentence; the rest opens on demand
function noteCell(text) {
  if (!text) return h("span", { class: "muted" }, "—");
  const m = text.match(/^(.{20,160}?\.)\s/);
  if (!m || m[1].length >= text.length - 10) return h("p", { class: "note" }, text);
  return h("details", { class: "note" }, h("summary", {}, m[1]), h("p", {}, text.slice(m[0].length)));
}

function renderCountries() {
  const q = $("country-search").value.trim().toLowerCase();
  const only = $("only-registration").checked;
  const rows = state.countries.filter((c) => countryMatches(c, q, only));
  const body = clear($("countries-table").tBodies[0]);
  for (const c of rows) {
    body.append(
      h(
        "tr",
        {},
        h("th", { scope: "row", "data-label": "Country" }, h("span", { class: "country" }, h("span", { class: "iso" }, c.iso2), h("span", {}, c.name))),
        td("Alphanumeric", factPill(c.alphanumeric)),
        td("Registration", factPill(c.registration_required)),
        td("Numeric", factPill(c.numeric)),
        td("Templates", factPill(c.template_registration_required)),
        td("Documents required", documentsCell(c.documents_required)),
        td("Lead time", leadTime(c.lead_time_days)),
        c.notes ? td("Notes", noteCell(c.notes)) : h("td", { "data-label": "Notes", "data-empty": true }),
      ),
    );
  }
  $("countries-count").textContent = `${rows.length} of ${state.countries.length} countries`;
}

async function showCountries() {
  const countries = await attempt(loadCountries);
  if (countries) renderCountries();
}

$("country-search").addEventListener("input", renderCountries);
$("only-registration").addEventListener("change", renderCountries);
$("countries-filter").addEventListener("submit", (ev) => ev.preventDefault());

// ---------------------------------------------------------------- new request

function renderPickList() {
  const q = $("new-country-filter").value.trim().toLowerCase();
  const list = clear($("new-country-list"));
  for (const c of state.countries) {
    const shown = !q || c.iso2.toLowerCase() === q || `${c.iso2} ${c.name}`.toLowerCase().includes(q);
    const id = `pick-${c.iso2}`;
    const box = h("input", { type: "checkbox", id, value: c.iso2, checked: state.picked.has(c.iso2) });
    box.addEventListener("change", () => {
      if (box.checked) state.picked.add(c.iso2);
      else state.picked.delete(c.iso2);
      renderNeeds();
    });
    const reg = fact(c.registration_required) === "yes";
    list.append(
      h(
        "div",
        { class: q && c.iso2.toLowerCase() === q ? "pick pick-first" : "pick", hidden: !shown && !state.picked.has(c.iso2) },
        box,
        h(
          "label",
          { for: id },
          h("span", { class: "iso" }, c.iso2),
          h("span", { class: "pick-name" }, c.name),
          reg ? h("span", { class: "tag", title: "Registration required" }, "reg.") : null,
          reg ? h("span", { class: "sr-only" }, " (registration required)") : null,
        ),
      ),
    );
  }
}

function renderNeeds() {
  const picked = [...state.picked].sort();
  $("new-country-selected").textContent = picked.length
    ? `Selected: ${picked.map((iso) => `${countryName(iso)} (${iso})`).join(", ")}`
    : "No country selected.";
  const box = clear($("new-needs"));
  if (!picked.length) {
    box.append(h("p", { class: "muted" }, "Pick countries to see their documents and lead times."));
    return;
  }
  for (const iso of picked) {
    const c = state.byIso.get(iso);
    const uploads = (c.documents_required || []).filter((d) => !fromRequest(d));
    box.append(
      h(
        "section",
        { class: "need" },
        h("h3", {}, `${c.name} (${iso})`),
        h(
          "p",
          { class: "muted" },
          `Registration: ${fact(c.registration_required)} · Lead time: ${leadTime(c.lead_time_days)}`,
        ),
        uploads.length
          ? h("ul", { class: "doc-list" }, uploads.map((d) => h("li", {}, docLabel(d))))
          : h("p", { class: "muted" }, "No document to upload."),
      ),
    );
  }
}

async function showNew() {
  const countries = await attempt(loadCountries);
  if (!countries) return;
  renderPickList();
  renderNeeds();
}

$("new-country-filter").addEventListener("input", renderPickList);
$("new-country-filter").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") ev.preventDefault(); // Enter in the filter never files the request
});

$("new-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const missing = ["new-sender", "new-brand", "new-use-case"].filter((id) => !$(id).value.trim());
  if (missing.length || !state.picked.size) {
    const names = missing.map((id) => form.querySelector(`label[for="${id}"]`).textContent);
    if (!state.picked.size) names.push("at least one country");
    showError({ body: { message: `Fill in: ${names.join(", ")}.` } });
    (missing.length ? $(missing[0]) : $("new-country-filter")).focus();
    return;
  }
  const body = {
    sender: $("new-sender").value.trim(),
    brand: $("new-brand").value.trim(),
    use_case: $("new-use-case").value.trim(),
    countries: [...state.picked].sort(),
    templates: $("new-templates")
      .value.split("\n")
      .map((t) => t.trim())
      .filter(Boolean),
  };
  const button = form.querySelector("button[type=submit]");
  const reg = await withButton(button, () => attempt(() => api("POST", "/v1/sender-ids", body)));
  if (!reg) return;
  form.reset();
  state.picked.clear();
  flash(`Request for ${reg.sender} created as a draft. Upload its documents, then submit it.`, true);
  go(`#/requests/${encodeURIComponent(reg.id)}`);
});

// ---------------------------------------------------------------- request list

function stateChips(reg) {
  return h(
    "ul",
    { class: "chips" },
    reg.countries.map((t) =>
      h("li", {}, h("span", { class: "iso" }, t.country), t.route ? ` ${t.route}` : "", " ", badge(t.state)),
    ),
  );
}

async function showRequests() {
  await attempt(loadCountries);
  const data = await attempt(() => api("GET", "/v1/sender-ids"));
  if (!data) return;
  const regs = [...data.sender_ids].sort((a, b) => (b.updated_at > a.updated_at) - (b.updated_at < a.updated_at));
  const body = clear($("requests-table").tBodies[0]);
  for (const reg of regs) {
    body.append(
      h(
        "tr",
        {},
        h(
          "th",
          { scope: "row", "data-label": "Sender" },
          h("a", { href: `#/requests/${encodeURIComponent(reg.id)}` }, reg.sender),
        ),
        td("Brand", reg.brand),
        td("Countries", stateChips(reg)),
        td("Updated", when(reg.updated_at)),
      ),
    );
  }
  $("requests-table").hidden = !regs.length;
  $("requests-empty").hidden = Boolean(regs.length);
}

// ---------------------------------------------------------------- one request

let current = null; // the registration on screen

function requiredDocs(reg) {
  // code -> countries (still to be decided) that require it
  const need = new Map();
  for (const t of reg.countries) {
    if (t.state === "approved") continue;
    const c = state.byIso.get(t.country);
    for (const code of (c && c.documents_required) || []) {
      if (!need.has(code)) need.set(code, new Set());
      need.get(code).add(t.country);
    }
  }
  return need;
}

function renderRequest(reg) {
  current = reg;
  $("h-request").textContent = `Sender ${reg.sender}`;
  $("request-sub").textContent = `${reg.brand} · ${reg.countries.length} ${reg.countries.length === 1 ? "country" : "countries"}`;
  document.title = `${reg.sender} · Onboarding console · smsgw`;

  const facts = clear($("request-facts"));
  const templates = reg.templates.length
    ? h("ul", { class: "plain" }, reg.templates.map((t) => h("li", {}, h("code", {}, t.text))))
    : h("span", { class: "muted" }, "None");
  for (const [k, v] of [
    ["Brand", reg.brand],
    ["Use case", reg.use_case],
    ["Templates", templates],
    ["Created", when(reg.created_at)],
    ["Request id", h("code", {}, reg.id)],
  ]) {
    facts.append(h("div", {}, h("dt", {}, k), h("dd", {}, v)));
  }

  const status = clear($("status-table").tBodies[0]);
  for (const t of reg.countries) {
    status.append(
      h(
        "tr",
        {},
        h("th", { scope: "row", "data-label": "Country" }, h("span", { class: "iso" }, t.country), " ", countryName(t.country)),
        td("Route", t.route || h("span", { class: "muted" }, "All routes")),
        td(
          "State",
          badge(t.state),
          t.state === "submitted" && isAdmin() ? h("a", { href: "#/review", class: "inline-link" }, "Review") : null,
        ),
        t.reason ? td("Reason", t.reason) : h("td", { "data-label": "Reason", "data-empty": true }),
        td("Updated", when(t.updated_at)),
      ),
    );
  }

  const uploaded = new Map();
  for (const d of reg.documents) uploaded.set(d.code, d);
  const need = requiredDocs(reg);
  const list = clear($("doc-checklist"));
  const select = clear($("upload-code"));
  const missingCodes = [];
  // what is missing first, then what is uploaded, then what the request itself gives
  const rank = (code) => (uploaded.has(code) ? 1 : fromRequest(code) ? 2 : 0);
  const order = [...need.entries()].sort((a, b) => rank(a[0]) - rank(b[0]) || docLabel(a[0]).localeCompare(docLabel(b[0])));
  for (const [code, where] of order) {
    const doc = uploaded.get(code);
    const auto = fromRequest(code);
    const status = doc ? "done" : auto ? "auto" : "missing";
    if (status === "missing") missingCodes.push(code);
    list.append(
      h(
        "li",
        { class: `check-${status}` },
        h("span", { class: "check-mark", "aria-hidden": "true" }, status === "missing" ? "○" : "✓"),
        h(
          "span",
          { class: "check-body" },
          h("span", { class: "check-label" }, docLabel(code)),
          h(
            "span",
            { class: "check-meta" },
            doc
              ? `${doc.filename} · ${bytes(doc.size)} · uploaded ${when(doc.uploaded_at)}`
              : auto
                ? "Given by the request itself"
                : `Missing · needed for ${[...where].sort().join(", ")}`,
          ),
        ),
      ),
    );
  }
  for (const d of reg.documents) {
    if (!need.has(d.code)) {
      list.append(
        h(
          "li",
          { class: "check-done" },
          h("span", { class: "check-mark", "aria-hidden": "true" }, "✓"),
          h("span", { class: "check-body" }, h("span", { class: "check-label" }, docLabel(d.code)), h("span", { class: "check-meta" }, `${d.filename} · ${bytes(d.size)} · extra`)),
        ),
      );
    }
  }
  if (!list.children.length) list.append(h("li", { class: "muted" }, "No document is required."));
  // missing documents first, then every other code one may upload
  const others = Object.keys((state.vocab && state.vocab.documents) || {})
    .filter((c) => !missingCodes.includes(c) && !fromRequest(c))
    .sort((a, b) => docLabel(a).localeCompare(docLabel(b)));
  if (missingCodes.length) {
    select.append(h("optgroup", { label: "Missing" }, missingCodes.map((c) => h("option", { value: c }, docLabel(c)))));
  }
  select.append(h("optgroup", { label: "Other documents" }, others.map((c) => h("option", { value: c }, docLabel(c)))));

  const drafts = reg.countries.filter((t) => t.state === "draft");
  $("submit-btn").disabled = !drafts.length;
  $("submit-btn").textContent = drafts.length
    ? `Submit ${drafts.map((t) => t.country).join(", ")}`
    : "Nothing in draft";
}

function renderSubmitResult(out) {
  const box = clear($("submit-result"));
  const submitted = out.registration.countries.filter((t) => t.state === "submitted").map((t) => t.country);
  if (submitted.length) {
    box.append(h("p", { class: "ok" }, `Submitted for review: ${submitted.map((c) => `${countryName(c)} (${c})`).join(", ")}.`));
  }
  for (const r of out.refused || []) {
    box.append(
      h(
        "div",
        { class: "refused" },
        h("p", {}, h("strong", {}, `${countryName(r.country)} (${r.country}) stays in draft.`), " Missing documents:"),
        h("ul", { class: "doc-list" }, r.missing.map((m) => h("li", {}, docLabel(m)))),
      ),
    );
  }
}

// "tenant:tn_x:admin" reads "Admin key"; the raw actor stays in the title
function actorText(actor) {
  const m = /^tenant:[^:]+:(\w+)$/.exec(actor || "");
  return m ? `${capital(m[1])} key` : actor;
}

function actionText(action) {
  return capital(String(action).replace(/^sender_id\./, "").replace(/_/g, " "));
}

// details as "key: value" lines; the registration id is the page's own and left out
function detailsCell(details) {
  const items = Object.entries(details || {}).filter(([k]) => k !== "registration");
  if (!items.length) return "";
  return h(
    "ul",
    { class: "kv" },
    items.map(([k, v]) => {
      let text = Array.isArray(v) ? v.join(", ") : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
      if (k === "codes" || k === "missing") text = text.split(",").map((c) => docShort(c.trim())).join(", ");
      const key = { codes: "documents", targets: "countries", target: "country" }[k] || k.replace(/_/g, " ");
      return h("li", {}, h("span", { class: "k" }, key), " ", text);
    }),
  );
}

function renderAudit(entries) {
  const body = clear($("audit-table").tBodies[0]);
  for (const e of [...entries].reverse()) {
    body.append(
      h(
        "tr",
        {},
        td("When", when(e.at)),
        td("Who", h("span", { title: e.actor }, actorText(e.actor))),
        td("What", h("span", { title: e.action }, actionText(e.action))),
        td("Details", detailsCell(e.details)),
      ),
    );
  }
  if (!entries.length) body.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No entry yet.")));
}

async function refreshAudit(id) {
  const audit = await attempt(() => api("GET", `/v1/sender-ids/${encodeURIComponent(id)}/audit`));
  if (audit) renderAudit(audit.entries);
}

async function showRequest(id) {
  clear($("submit-result"));
  await attempt(loadCountries);
  const reg = await attempt(() => api("GET", `/v1/sender-ids/${encodeURIComponent(id)}`));
  if (!reg) return;
  renderRequest(reg);
  await refreshAudit(id);
}

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) {
    showError({ body: { message: "Choose a file to upload." } });
    $("upload-file").focus();
    return;
  }
  const code = $("upload-code").value;
  const form = new FormData();
  form.append("code", code);
  form.append("file", file, file.name);
  const button = ev.target.querySelector("button[type=submit]");
  const path = `/v1/sender-ids/${encodeURIComponent(current.id)}/documents`;
  const reg = await withButton(button, () => attempt(() => api("POST", path, form)));
  if (!reg) return;
  $("upload-file").value = "";
  renderRequest(reg);
  flash(`Uploaded ${file.name} as ${docLabel(code)}.`);
  await refreshAudit(reg.id);
});

$("submit-btn").addEventListener("click", async (ev) => {
  const path = `/v1/sender-ids/${encodeURIComponent(current.id)}/submit`;
  const out = await withButton(ev.currentTarget, () => attempt(() => api("POST", path, {})));
  if (!out) return;
  renderRequest(out.registration);
  renderSubmitResult(out);
  $("submit-result").focus(); // the button may now be disabled: keep the keyboard where the answer is
  flash(out.refused && out.refused.length ? "Submitted in part: see what is missing." : "Submitted for review.");
  await refreshAudit(current.id);
});

// ---------------------------------------------------------------- admin review

function docChecklist(docs) {
  if (!docs.length) return h("p", { class: "muted" }, "No document uploaded.");
  return h(
    "ul",
    { class: "checklist checklist-compact" },
    docs.map((d) =>
      h(
        "li",
        { class: "check-done" },
        h("span", { class: "check-mark", "aria-hidden": "true" }, "✓"),
        h(
          "span",
          { class: "check-body" },
          h("span", { class: "check-label" }, docShort(d.code)),
          h("span", { class: "check-meta" }, `${d.filename} · ${bytes(d.size)}`),
        ),
      ),
    ),
  );
}

function reviewCard(reg, t) {
  const base = `rv-${reg.id}-${t.country}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const c = state.byIso.get(t.country);
  const required = ((c && c.documents_required) || []).filter((d) => !fromRequest(d));
  const have = new Set(reg.documents.map((d) => d.code));
  const lacking = required.filter((d) => !have.has(d));
  const route = h("input", { id: `${base}-route`, autocomplete: "off", placeholder: t.route || "All routes" });
  const reason = h("textarea", { id: `${base}-reason`, rows: 2, "aria-describedby": `${base}-reason-hint` });
  const decide = (action, button) => withButton(button, () => decideNow(action));
  const decideNow = async (action) => {
    const body = { country: t.country };
    if (route.value.trim() || t.route) body.route = route.value.trim() || t.route;
    if (action === "reject") {
      if (!reason.value.trim()) {
        showError({ body: { message: "A rejection needs a reason." } });
        reason.focus();
        return;
      }
      body.reason = reason.value.trim();
    }
    const out = await attempt(() => api("POST", `/v1/sender-ids/${encodeURIComponent(reg.id)}/${action}`, body));
    if (!out) return;
    await showReview();
    flash(`${reg.sender} ${action === "approve" ? "approved" : "rejected"} for ${countryName(t.country)} (${t.country}).`);
    $("h-review").focus(); // the card is gone: back to the top of the queue
  };
  const templates = reg.templates.length
    ? h("ul", { class: "plain" }, reg.templates.map((x) => h("li", {}, h("code", {}, x.text))))
    : h("span", { class: "muted" }, "None");
  return h(
    "article",
    { class: "card review", "aria-labelledby": `${base}-h` },
    h(
      "div",
      { class: "review-head" },
      h(
        "h2",
        { id: `${base}-h` },
        reg.sender,
        h("span", { class: "arrow", "aria-hidden": "true" }, " → "),
        h("span", { class: "sr-only" }, " for "),
        `${countryName(t.country)} (${t.country})`,
      ),
      badge(t.state),
    ),
    h(
      "div",
      { class: "review-body" },
      h(
        "div",
        {},
        h(
          "dl",
          { class: "facts facts-compact" },
          h("div", {}, h("dt", {}, "Brand"), h("dd", {}, reg.brand)),
          h("div", {}, h("dt", {}, "Submitted"), h("dd", {}, when(t.updated_at))),
          h("div", { class: "wide" }, h("dt", {}, "Use case"), h("dd", {}, reg.use_case)),
          h("div", { class: "wide" }, h("dt", {}, "Templates"), h("dd", {}, templates)),
        ),
        h("h3", {}, `Documents (${reg.documents.length})`),
        docChecklist(reg.documents),
        lacking.length
          ? h("p", { class: "warn" }, `Not uploaded although ${t.country} lists them: ${lacking.map(docShort).join(", ")}.`)
          : null,
        h("p", { class: "crumbs" }, h("a", { href: `#/requests/${encodeURIComponent(reg.id)}` }, "Open the request and its history")),
      ),
      h(
        "form",
        {
          class: "decide",
          novalidate: true,
          onsubmit: (ev) => {
            ev.preventDefault();
            decide("approve", ev.target.querySelector("button[type=submit]"));
          },
        },
        h("h3", {}, "Decision"),
        h("div", { class: "field" }, h("label", { for: route.id }, "Carrier route (optional)"), route),
        h(
          "div",
          { class: "field" },
          h("label", { for: reason.id }, "Reason (needed to reject)"),
          reason,
          h("p", { id: `${base}-reason-hint`, class: "hint" }, "Shown to the requester and kept in the history."),
        ),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "submit", class: "btn btn-approve" }, `Approve ${t.country}`),
          h("button", { type: "button", class: "btn btn-reject", onclick: (ev) => decide("reject", ev.currentTarget) }, `Reject ${t.country}`),
        ),
      ),
    ),
  );
}

async function showReview() {
  await attempt(loadCountries);
  const data = await attempt(() => api("GET", "/v1/sender-ids"));
  if (!data) return;
  const list = clear($("review-list"));
  let n = 0;
  for (const reg of data.sender_ids) {
    for (const t of reg.countries) {
      if (t.state !== "submitted") continue;
      list.append(reviewCard(reg, t));
      n += 1;
    }
  }
  $("review-empty").hidden = n > 0;
  $("review-count").textContent = String(n);
  $("review-count").hidden = n === 0;
}

// ---------------------------------------------------------------- routing

const VIEWS = {
  signin: { section: "view-signin", title: "Sign in", open: true },
  countries: { section: "view-countries", title: "Country requirements", show: showCountries },
  new: { section: "view-new", title: "New request", show: showNew },
  requests: { section: "view-requests", title: "Requests", show: showRequests },
  request: { section: "view-request", title: "Request", nav: "requests", show: showRequest },
  review: { section: "view-review", title: "Review queue", admin: true, show: showReview },
};

let routeSeq = 0;

async function route() {
  const seq = ++routeSeq;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let name = parts[0] === "requests" && parts[1] ? "request" : parts[0];
  if (!VIEWS[name]) name = state.who ? "requests" : "signin";
  if (!state.who && !VIEWS[name].open) name = "signin";
  if (VIEWS[name].admin && !isAdmin()) name = "requests";
  const view = VIEWS[name];
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== view.section;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === (view.nav || name)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${view.title} · Onboarding console · smsgw`;
  showError(null);
  if (!carryFlash) flash("");
  carryFlash = false;
  const heading = document.querySelector(`#${view.section} h1`);
  if (view.show) await view.show(parts[1]);
  if (seq !== routeSeq) return; // another view was asked for meanwhile (a refused key signs out)
  document.body.dataset.view = name; // set once the view has its data: tests and screenshots wait on it
  if (routed) heading.focus({ preventScroll: false });
  routed = true;
}
let routed = false;

window.addEventListener("hashchange", () => {
  route();
});

async function start() {
  await loadVocabulary();
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) {
    const who = await attempt(() => signIn(saved));
    if (!who) sessionStorage.removeItem(KEY_STORE);
  }
  await route();
}

start();
