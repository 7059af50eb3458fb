// Lineside web HMI: plain JavaScript over the line controller's API (same origin, session cookie).
// The live line state comes as server-sent events; batches, rejects and the line's devices are read every few
// seconds. Every button is enabled by what the line allows now (status.commands) and what the user's role may do
// (the session's permissions); every refusal is shown in the API's own words.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 3000;
const COMMAND_PERMISSIONS = {
  start: "line.start", stop: "line.stop", hold: "line.hold", unhold: "line.unhold", suspend: "line.suspend",
  unsuspend: "line.suspend", reset: "line.reset", abort: "line.abort", clear: "line.clear",
  complete: "line.complete",
};
const ACTING = new Set(["Starting", "Stopping", "Holding", "Unholding", "Suspending", "Unsuspending", "Aborting",
  "Clearing", "Resetting", "Completing"]);

const state = {
  session: null, // {name, role, permissions, signed, idle_minutes}
  status: null, // the line control's status (SSE)
  events: null, // EventSource
  timer: null,
  idleTimer: null,
  busy: false,
  printed: null, // units the printers acknowledged (the line's status, polled); null: no printer feeds units
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

function may(permission) {
  return Boolean(state.session && state.session.permissions.includes(permission));
}

// -- talking to the API -------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `the line controller answered ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (err) {
    throw new ApiError(0, { error: `the line controller does not answer (${err.message}); check the network` });
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text.slice(0, 300) }; }
  if (!response.ok) {
    const failure = new ApiError(response.status, data);
    if (response.status === 401 && !failure.body.signature && path !== "/session") sessionEnded(failure.message);
    throw failure;
  }
  return data;
}

function showError(message) {
  $("error").textContent = message || "";
  if (message) $("message").textContent = "";
}

function showMessage(message) {
  $("message").textContent = message || "";
  if (message) $("error").textContent = "";
}

// -- login and logout ---------------------------------------------------------------------------

async function start() {
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => logout("Logged out."));
  for (const button of document.querySelectorAll(".cmd")) {
    button.addEventListener("click", () => command(button.dataset.command, button.textContent.trim()));
  }
  $("sign-cancel").addEventListener("click", () => $("sign-dialog").close());
  $("report-close").addEventListener("click", () => $("report-dialog").close());
  for (const kind of ["pointerdown", "keydown"]) document.addEventListener(kind, restartIdleTimer, { passive: true });
  try {
    state.session = await api("GET", "/session");
    enter();
  } catch {
    showLogin("");
  }
}

function showLogin(message) {
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("login-password").value = "";
  $("login-name").focus();
}

async function onLogin(event) {
  event.preventDefault();
  const name = $("login-name").value.trim();
  const password = $("login-password").value;
  if (!name || !password) {
    $("login-error").textContent = "Enter your user name and your password.";
    return;
  }
  $("login-error").textContent = "";
  try {
    state.session = await api("POST", "/session", { name, password, via: "hmi" });
  } catch (err) {
    $("login-error").textContent = `Login refused: ${err.message}`;
    $("login-password").value = "";
    return;
  }
  $("login-password").value = "";
  enter();
}

function enter() {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  const s = state.session;
  $("user-badge").textContent = `${s.name} (${s.role})`;
  showError("");
  showMessage("");
  connect();
  refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, REFRESH_MS);
  restartIdleTimer();
}

function leave() {
  clearInterval(state.timer);
  clearTimeout(state.idleTimer);
  state.timer = state.idleTimer = null;
  if (state.events) state.events.close();
  state.events = null;
  state.session = null;
  for (const dialog of document.querySelectorAll("dialog")) if (dialog.open) dialog.close();
}

async function logout(message) {
  try { await api("DELETE", "/session"); } catch { /* the session may have ended already */ }
  leave();
  showLogin(message);
}

function sessionEnded(message) {
  if (!state.session) return;
  leave();
  showLogin(`Your session has ended: ${message}. Log in again.`);
}

function restartIdleTimer() {
  if (!state.session) return;
  clearTimeout(state.idleTimer);
  // A panel left alone logs itself out, as the daemon's session would (21 CFR Part 11 §11.300).
  const minutes = state.session.idle_minutes || 15;
  state.idleTimer = setTimeout(() => logout(`Logged out after ${minutes} minutes without use.`), minutes * 60000);
}

// -- live line state ------------------------------------------------------------------------------

function connect() {
  if (state.events) state.events.close();
  const events = new EventSource(`${API}/control/events`);
  state.events = events;
  events.addEventListener("status", (event) => {
    $("link-state").textContent = "live";
    renderStatus(JSON.parse(event.data));
  });
  events.addEventListener("error", async () => {
    $("link-state").textContent = "reconnecting…";
    if (events.readyState === EventSource.CLOSED) {
      // Refused (no session, the line control not running): ask why, then try again.
      try {
        await api("GET", "/control");
        setTimeout(() => { if (state.events === events) connect(); }, REFRESH_MS);
      } catch (err) {
        if (state.session) showError(`Live line state unavailable: ${err.message}`);
        setTimeout(() => { if (state.events === events && state.session) connect(); }, REFRESH_MS);
      }
    }
  });
}

function renderStatus(status) {
  state.status = status;
  $("line-id").textContent = status.line;
  const badge = $("packml-state");
  badge.textContent = status.state;
  badge.className = `state-badge ${ACTING.has(status.state) ? "acting" : status.state.toLowerCase()}`;
  $("state-mode").textContent = `${status.mode} mode`;
  $("state-since").textContent = `since ${new Date(status.state_entered_at).toLocaleTimeString()}`;
  $("state-reason").textContent = status.reason ? `Why: ${status.reason}` : "";
  renderCommands();
  renderBatchCounters(status);
  renderAlarms(status.alarms);
  renderDevices(status.devices);
}

function renderCommands() {
  const possible = new Set(((state.status && state.status.commands) || []).map((c) => c.toLowerCase()));
  for (const button of document.querySelectorAll(".cmd")) {
    const name = button.dataset.command;
    const allowed = may(COMMAND_PERMISSIONS[name]);
    button.disabled = state.busy || !possible.has(name) || !allowed;
    button.title = !allowed ? `Your role (${state.session.role}) may not ${name} the line`
      : !possible.has(name) ? `${button.textContent.trim()} is not possible in ${state.status ? state.status.state : "this state"}`
        : `${button.textContent.trim()} the line`;
  }
}

async function command(name, label) {
  state.busy = true;
  renderCommands();
  showMessage(`${label}: working…`);
  try {
    const answer = await api("POST", `/control/commands/${name}`, {});
    renderStatus(answer.status);
    showMessage(`${label}: the line is ${answer.state}${answer.status.reason && answer.state !== "Execute" ? ` (${answer.status.reason})` : ""}.`);
  } catch (err) {
    showError(`${label} refused: ${err.message}`);
  } finally {
    state.busy = false;
    renderCommands();
  }
}

function renderBatchCounters(status) {
  const batch = status.batch;
  $("batch-line").textContent = batch
    ? `Work order ${batch.work_order}, lot ${batch.lot}: ${batch.state}`
    : "No batch on the line.";
  const counters = status.counters;
  const rejected = Object.values(counters.rejected || {}).reduce((a, b) => a + b, 0);
  // Printed comes from the printers' feeders (polled); without them the line's own count stands in for it.
  $("count-produced").textContent = (state.printed === null ? counters.produced : state.printed).toLocaleString();
  $("count-good").textContent = counters.good === null ? "–" : counters.good.toLocaleString();
  $("count-rejected").textContent = rejected.toLocaleString();
  $("count-rate").textContent = Math.round(counters.rate_per_minute).toLocaleString();
  const list = $("rejected-reasons");
  const reasons = Object.entries(counters.rejected || {}).sort((a, b) => b[1] - a[1]);
  list.replaceChildren(...(reasons.length
    ? reasons.map(([reason, n]) => el("li", { text: `${reason}: ${n.toLocaleString()}` }))
    : [el("li", { text: "none" })]));
}

function renderAlarms(alarms) {
  $("alarms-empty").hidden = alarms.length > 0;
  $("alarms-table").hidden = alarms.length === 0;
  $("alarms-body").replaceChildren(...alarms.slice().reverse().map((alarm) => {
    const when = new Date(alarm.at).toLocaleTimeString();
    const acknowledged = alarm.acknowledged_by
      ? el("td", { text: `by ${alarm.acknowledged_by}` })
      : el("td", {}, el("button", {
        type: "button", text: "Acknowledge", "aria-label": `Acknowledge alarm ${alarm.id}`,
        disabled: !may("alarm.acknowledge"), onclick: () => acknowledge(alarm.id),
      }));
    return el("tr", { class: alarm.acknowledged_by ? "" : "unacknowledged" },
      el("td", { text: String(alarm.id) }), el("td", { text: when }), el("td", { text: alarm.device || "line" }),
      el("td", { text: `${alarm.kind}: ${alarm.text}` }), acknowledged);
  }));
}

async function acknowledge(id) {
  try {
    const answer = await api("POST", `/control/alarms/${id}/acknowledge`);
    showMessage(`Alarm ${id} acknowledged by ${answer.alarm.acknowledged_by}.`);
  } catch (err) {
    showError(`Alarm ${id} not acknowledged: ${err.message}`);
  }
}

function renderDevices(devices) {
  $("devices-list").replaceChildren(...devices.map((device) => el("li", {},
    el("span", { text: `${device.id}${device.needed ? "" : " (not needed to run)"}` }),
    el("span", { class: device.state, text: device.last_error && device.state !== "online"
      ? `${device.state}: ${device.last_error}` : device.state }))));
}

// -- what is read every few seconds ---------------------------------------------------------------

async function refresh() {
  if (!state.session) return;
  const results = await Promise.allSettled([api("GET", "/line"), api("GET", "/batches"), api("GET", "/rejects")]);
  if (!state.session) return;
  const [line, batches, rejects] = results;
  if (line.status === "fulfilled") renderLine(line.value);
  if (batches.status === "fulfilled") renderBatches(batches.value.batches);
  if (rejects.status === "fulfilled") renderRejects(rejects.value.rejects);
  const failed = results.find((r) => r.status === "rejected");
  if (failed && failed.reason.status !== 401) showError(failed.reason.message);
}

function renderLine(line) {
  $("line-id").textContent = line.line;
  const printers = Object.values(line.printers || {});
  state.printed = printers.length ? printers.reduce((sum, p) => sum + p.printed, 0) : null;
  if (state.printed !== null) $("count-produced").textContent = state.printed.toLocaleString();
  const banner = $("in-doubt-banner");
  const doubt = line.in_doubt_at_start || 0;
  banner.hidden = doubt === 0;
  banner.textContent = doubt === 0 ? "" : `${doubt.toLocaleString()} serial(s) were in flight when the line `
    + "controller restarted and are in doubt: set their units aside and re-inspect them, or have QA "
    + "decommission them; the batch cannot close until then.";
  renderAggregation(line.aggregation);
  if (!state.status && line.control) renderStatus(line.control);
}

function fill(label, box) {
  if (!box) return el("p", { text: `${label}: none open` });
  const id = `fill-${label.toLowerCase().replace(/\W+/g, "-")}`;
  return el("div", { class: "fill" },
    el("label", { for: id, text: `${label} ${box.sscc}: ${box.count} of ${box.capacity}` }),
    el("progress", { id, max: String(box.capacity), value: String(box.count) }));
}

function renderAggregation(aggregation) {
  const body = $("aggregation-body");
  if (!aggregation) {
    body.replaceChildren(el("p", { text: "No aggregation on this line." }));
    return;
  }
  const parts = [];
  const station = aggregation.cases && aggregation.cases.station;
  if (station && "case" in station) parts.push(fill("Case", station.case));
  else if (station) {
    parts.push(el("p", { text: `Case scan: ${station.packed} packed, ${station.awaiting_rework} waiting for rework` }));
    if (station.last) parts.push(el("p", { text: `Last case: ${station.last.message || station.last.outcome || ""}` }));
  }
  const pallets = aggregation.pallets && aggregation.pallets.station;
  parts.push(pallets ? fill("Pallet", pallets.pallet) : el("p", { text: "No pallet station." }));
  const labels = aggregation.cases && aggregation.cases.labels;
  if (labels && labels.attention && labels.attention.length) {
    parts.push(el("p", { class: "bad", text: `${labels.attention.length} case label(s) need an operator` }));
  }
  body.replaceChildren(...parts);
}

function renderRejects(rejects) {
  $("rejects-empty").hidden = rejects.length > 0;
  const list = $("rejects-list");
  const shown = Array.from(list.children).map((li) => li.dataset.name).join(",");
  if (shown === rejects.map((r) => r.name).join(",")) return; // unchanged: no flicker, no reload
  list.replaceChildren(...rejects.map((reject) => {
    const when = new Date(`${reject.at}Z`).toLocaleTimeString();
    const text = `Pack ${reject.product}: ${reject.reason}, ${when}`;
    const item = el("li", {}, el("figure", {},
      el("img", { src: `${API}/${reject.url}`, alt: `Reject image of pack ${reject.product} (${reject.reason})`,
        loading: "lazy" }),
      el("figcaption", { text })));
    item.dataset.name = reject.name;
    return item;
  }));
}

function renderBatches(batches) {
  const body = $("batches-body");
  if (!batches.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "6", text: "No batches yet." })));
    return;
  }
  body.replaceChildren(...batches.map((batch) => {
    const wo = batch.work_order;
    const counts = Object.entries(batch.counts).filter(([, n]) => n).map(([s, n]) => `${s} ${n}`).join(", ");
    const actions = el("td", { class: "actions" });
    if (batch.state === "created") {
      actions.append(el("button", {
        type: "button", text: "Release", "aria-label": `Release batch ${wo}`, disabled: !may("batch.release"),
        onclick: () => signBatch(batch, "release"),
      }));
    }
    if ((batch.counts.in_doubt || 0) > 0 && batch.state !== "running") {
      actions.append(el("button", {
        type: "button", text: "Decommission in-doubt", "aria-label": `Decommission in-doubt serials of batch ${wo}`,
        disabled: !may("serial.decommission"), onclick: () => signBatch(batch, "decommission-in-doubt"),
      }));
    }
    if (batch.state === "completing") {
      actions.append(el("button", {
        type: "button", text: "Close", "aria-label": `Close batch ${wo}`, disabled: !may("batch.close"),
        onclick: () => signBatch(batch, "close"),
      }));
    }
    actions.append(el("button", {
      type: "button", text: "Report", "aria-label": `Reconciliation report of batch ${wo}`,
      onclick: () => showReport(batch),
    }));
    return el("tr", {}, el("td", { text: wo }), el("td", { text: batch.product }), el("td", { text: batch.lot }),
      el("td", { text: batch.state }), el("td", { text: counts || "none" }), actions);
  }));
}

// -- reports and e-signatures ---------------------------------------------------------------------

function reportView(report) {
  const parts = [
    el("p", { text: `Batch ${report.batch.id}, work order ${report.batch.work_order}, lot ${report.batch.lot}, `
      + `${report.batch.state}` }),
    el("p", { text: report.equation }),
    el("p", { class: report.balanced ? "ok" : "bad",
      text: report.balanced ? "Balanced: every serial allocated is accounted for."
        : report.blocking.length ? "Not balanced yet." : "Balances once the never-printed serials are returned "
          + "at close." }),
  ];
  if (report.blocking.length) parts.push(el("ul", {}, ...report.blocking.map((b) => el("li", { text: b }))));
  const counts = Object.entries(report.counts).filter(([, n]) => n);
  if (counts.length) parts.push(el("p", { text: `Serials: ${counts.map(([s, n]) => `${s} ${n}`).join(", ")}` }));
  if (report.closed_at) parts.push(el("p", { text: `Closed ${report.closed_at} by ${report.closed_by}` }));
  for (const signature of report.signatures || []) parts.push(el("p", { class: "signed", text: signature.manifest }));
  return parts;
}

async function showReport(batch) {
  try {
    const report = await api("GET", `/batches/${batch.id}/report`);
    $("report-body").replaceChildren(...reportView(report));
    $("report-print").href = `${API}/batches/${batch.id}/report.html`;
    $("report-dialog").showModal();
  } catch (err) {
    showError(`The report of ${batch.work_order} cannot be shown: ${err.message}`);
  }
}

const SIGNED_ACTIONS = {
  release: { permission: "batch.release", words: "Release batch" },
  close: { permission: "batch.close", words: "Close batch" },
  "decommission-in-doubt": { permission: "serial.decommission", words: "Decommission the in-doubt serials of batch" },
};

async function signBatch(batch, action) {
  const spec = SIGNED_ACTIONS[action];
  const dialog = $("sign-dialog");
  const form = $("sign-form");
  $("sign-action").textContent = `${spec.words} ${batch.work_order} (lot ${batch.lot})`;
  $("sign-meaning").textContent = state.session.signed[spec.permission] || "";
  $("sign-user").textContent = `${state.session.name} (${state.session.role})`;
  $("sign-error").textContent = "";
  $("sign-result").textContent = "";
  $("sign-password").value = "";
  $("sign-reason").value = "";
  $("sign-reason-row").hidden = action !== "decommission-in-doubt";
  $("sign-password").disabled = false;
  $("sign-submit").hidden = false;
  $("sign-cancel").textContent = "Cancel";
  const record = $("sign-record");
  record.replaceChildren(el("p", { text: "Reading the batch…" }));
  dialog.showModal();
  try {
    record.replaceChildren(...reportView(await api("GET", `/batches/${batch.id}/report`)));
  } catch (err) {
    record.replaceChildren(el("p", { class: "bad", text: `The batch cannot be read: ${err.message}` }));
  }
  form.onsubmit = async (event) => {
    event.preventDefault();
    const password = $("sign-password").value;
    const reason = $("sign-reason").value.trim();
    if (!password) {
      $("sign-error").textContent = "Enter your password: it is your signature.";
      return;
    }
    if (action === "decommission-in-doubt" && !reason) {
      $("sign-error").textContent = "Say what happened to the units of these serials (the reason).";
      return;
    }
    $("sign-error").textContent = "";
    $("sign-submit").disabled = true;
    try {
      const body = action === "decommission-in-doubt" ? { password, reason } : { password };
      const answer = await api("POST", `/batches/${batch.id}/${action}`, body);
      $("sign-password").value = "";
      $("sign-password").disabled = true;
      $("sign-submit").hidden = true;
      $("sign-cancel").textContent = "Done";
      record.replaceChildren(...reportView({ ...answer, signatures: [] }));
      $("sign-result").textContent = `Signed. ${answer.signature.manifest}`;
      showMessage(`${spec.words} ${batch.work_order}: done. ${answer.signature.manifest}`);
      refresh();
    } catch (err) {
      $("sign-password").value = "";
      $("sign-error").textContent = err.body.signature ? `Not signed: ${err.message}` : `Refused: ${err.message}`;
    } finally {
      $("sign-submit").disabled = false;
    }
  };
  $("sign-password").focus();
}

document.addEventListener("DOMContentLoaded", start);
