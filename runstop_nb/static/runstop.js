// runstop_nb's front end: run views, grids and run tables (one anywidget ESM for all three).
//
// The kernel syncs state only (status, times, counters, the bounded tail, cards...); this
// module presents it. Clocks tick here, from the start time and the kernel's clock (sent
// with each pulse beat), so a run where nothing happens costs no message. Every view
// watches the kernel's pulse model: no beat for GONE_AFTER ms, or the comm going down,
// means the kernel is gone, and the view says so in place with its buttons disabled.

const GONE_AFTER = 4000; // ms without a beat (the kernel beats every 1.5 s): at most 4.5 s to notice
const G = (globalThis.__runstop_nb = globalThis.__runstop_nb || { timers: new Map() });

// One timer per period per page for every view, whatever the number of views.
function every(ms, fn) {
  let t = G.timers.get(ms);
  if (!t) {
    t = { fns: new Set(), id: null };
    G.timers.set(ms, t);
  }
  t.fns.add(fn);
  if (t.id === null) {
    t.id = setInterval(() => {
      for (const f of t.fns) {
        try { f(); } catch (e) { console.error("runstop_nb:", e); }
      }
    }, ms);
  }
  return () => t.fns.delete(fn);
}
const everySecond = (fn) => every(1000, fn);

function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined && text !== null) el.textContent = text;
  return el;
}

function button(cls, text, title, onclick) {
  const b = h("button", "runstop-btn " + cls, text);
  b.type = "button";
  if (title) b.title = title;
  b.addEventListener("click", (ev) => { ev.stopPropagation(); onclick(ev); });
  return b;
}

function show(el, on) { el.hidden = !on; }

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0"), ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${String(Math.floor(s / 60)).padStart(2, "0")}:${ss}`;
}

export function ago(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

function count(n) {
  if (n === null || n === undefined) return "";
  return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? Math.round(n / 1e3) + "k" : n >= 1e3 ? (n / 1e3).toFixed(1) + "k" : String(n);
}

function plural(n, word, many) { return `${Number(n).toLocaleString("en-US")} ${n === 1 ? word : many || word + "s"}`; }

// -- ANSI SGR colours to HTML (the kernel has already removed every other escape code) ------

const ESC = /\x1b\[([0-9;]*)m/g;
const esc = (s) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function rgb256(n) {
  if (n < 16) return null;
  if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
  n -= 16;
  const c = (x) => (x ? 55 + x * 40 : 0);
  return `rgb(${c(Math.floor(n / 36))},${c(Math.floor(n / 6) % 6)},${c(n % 6)})`;
}

function sgr(st, params) {
  const p = params === "" ? [0] : params.split(";").map((x) => parseInt(x || "0", 10));
  for (let i = 0; i < p.length; i++) {
    const n = p[i];
    if (n === 0) Object.assign(st, { fg: null, bg: null, b: 0, d: 0, i: 0, u: 0 });
    else if (n === 1) st.b = 1;
    else if (n === 2) st.d = 1;
    else if (n === 3) st.i = 1;
    else if (n === 4) st.u = 1;
    else if (n === 22) st.b = st.d = 0;
    else if (n === 23) st.i = 0;
    else if (n === 24) st.u = 0;
    else if (n >= 30 && n <= 37) st.fg = "c" + (n - 30);
    else if (n >= 90 && n <= 97) st.fg = "c" + (n - 82);
    else if (n >= 40 && n <= 47) st.bg = "c" + (n - 40);
    else if (n >= 100 && n <= 107) st.bg = "c" + (n - 92);
    else if (n === 39) st.fg = null;
    else if (n === 49) st.bg = null;
    else if ((n === 38 || n === 48) && p[i + 1] === 5) {
      const v = p[i + 2];
      const c = v < 16 ? "c" + v : rgb256(v);
      if (n === 38) st.fg = c; else st.bg = c;
      i += 2;
    } else if ((n === 38 || n === 48) && p[i + 1] === 2) {
      const c = `rgb(${p[i + 2] | 0},${p[i + 3] | 0},${p[i + 4] | 0})`;
      if (n === 38) st.fg = c; else st.bg = c;
      i += 4;
    }
  }
}

function span(text, st) {
  if (!text) return "";
  const cls = [], css = [];
  for (const [k, v] of [["fg", st.fg], ["bg", st.bg]]) {
    if (!v) continue;
    if (v[0] === "c") cls.push(`rs-${k}${v.slice(1)}`); else css.push(`${k === "fg" ? "color" : "background"}:${v}`);
  }
  if (st.b) cls.push("rs-b");
  if (st.d) cls.push("rs-d");
  if (st.i) cls.push("rs-i");
  if (st.u) cls.push("rs-u");
  if (!cls.length && !css.length) return esc(text);
  return `<span class="${cls.join(" ")}"${css.length ? ` style="${css.join(";")}"` : ""}>${esc(text)}</span>`;
}

export function ansiHtml(text) {
  const st = { fg: null, bg: null, b: 0, d: 0, i: 0, u: 0 };
  let out = "", last = 0, m;
  ESC.lastIndex = 0;
  while ((m = ESC.exec(text))) {
    out += span(text.slice(last, m.index), st);
    last = ESC.lastIndex;
    sgr(st, m[1]);
  }
  return out + span(text.slice(last), st);
}

// -- the kernel: pulse, clock skew, requests ------------------------------------------------

// Watch the kernel's pulse; onGone(bool) when that changes. Returns {skew(), dispose()}.
async function watchKernel(model, onGone) {
  let pm = null, last = performance.now(), gone = false, skew = 0;
  const set = (g) => { if (g !== gone) { gone = g; onGone(g); } };
  try {
    const id = model.get("pulse");
    pm = id && model.widget_manager ? await model.widget_manager.get_model(id) : null;
  } catch (e) {
    pm = null;
  }
  const fromBeat = (initial) => {
    const beat = pm && pm.get("beat");
    if (!beat || !beat[1]) return;
    const s = beat[1] - Date.now();
    if (!initial || Math.abs(s) > 5000) skew = s; // a restored beat is up to 1.5 s old
  };
  const onBeat = () => { last = performance.now(); fromBeat(false); if (!pm || pm.comm_live !== false) set(false); };
  const onLive = () => { if (!pm || pm.comm_live === false) set(true); };
  const onShow = () => { if (!document.hidden) last = performance.now(); };
  if (pm) {
    fromBeat(true);
    pm.on("change:beat", onBeat);
    pm.on("comm_live_update", onLive);
    if (pm.comm_live === false) set(true);
  }
  model.on("comm_live_update", onLive);
  document.addEventListener("visibilitychange", onShow);
  const stop = every(500, () => { if (pm && !document.hidden && performance.now() - last > GONE_AFTER) set(true); });
  return {
    skew: () => skew,
    gone: () => gone,
    dispose() {
      stop();
      document.removeEventListener("visibilitychange", onShow);
      if (pm) { pm.off("change:beat", onBeat); pm.off("comm_live_update", onLive); }
    },
  };
}

let REQ = 0;
function request(model, content, ms = 30000) {
  const req = `${Date.now()}-${++REQ}`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { model.off("msg:custom", on); reject(new Error("the kernel did not answer")); }, ms);
    function on(msg) {
      if (!msg || msg.reply !== req) return;
      clearTimeout(timer);
      model.off("msg:custom", on);
      resolve(msg);
    }
    model.on("msg:custom", on);
    model.send({ ...content, req });
  });
}

// A child view (a run view inside a grid or a table), through anywidget's host when it has
// one, else through the widget manager.
async function renderChild(model, host, id, el, signal) {
  if (host && host.getWidget) {
    const w = await host.getWidget("anywidget:" + id);
    await w.render({ el, signal });
    return;
  }
  const wm = model.widget_manager;
  const child = await wm.get_model(id);
  const view = await wm.create_view(child);
  el.appendChild(view.el);
  signal.addEventListener("abort", () => view.remove());
}

function notify(title, body) {
  try {
    if (localStorage.getItem("runstop_nb.notify") !== "1" || typeof Notification === "undefined") return;
    if (Notification.permission === "granted") new Notification(title, { body });
  } catch (e) { /* notifications are optional */ }
}

// -- the run view ---------------------------------------------------------------------------

const AGENTS = new Set(["claude", "codex", "gemini"]);
const KINDS = { text: "says", thinking: "thinks", tool: "tool", file: "file", todo: "todo", result: "result",
  error: "error", system: "system", raw: "raw" };

function renderRun({ model, el }) {
  const S = () => model.get("state") || {};
  const I = () => model.get("info") || {};
  const root = h("div", "runstop-run");
  const head = h("div", "runstop-head");
  const name = h("span", "runstop-name");
  const badge = h("span", "runstop-status runstop-badge");
  const idle = h("span", "runstop-idle runstop-badge");
  const waiting = h("span", "runstop-waiting runstop-badge", "waiting");
  const elapsed = h("span", "runstop-elapsed");
  const pid = h("span", "runstop-pid rs-dim");
  const exit = h("span", "runstop-exit");
  const totals = h("span", "runstop-agent rs-dim");
  const stop = button("runstop-stop rs-danger", "Stop", "Stop the whole process tree", onStop);
  const rerun = button("runstop-rerun", "Rerun", "Start the same command as a new run", () => model.send({ do: "rerun" }));
  const resume = button("runstop-resume", "Resume", "Continue this agent's session with a new prompt",
    () => { show(resumeBox, resumeBox.hidden); prompt.focus(); });
  const bell = button("runstop-bell", "", "", toggleBell);
  const more = button("runstop-more rs-icon", "⋯", "Details: folder, log, id, notifications", () => show(details, details.hidden));
  const tall = button("runstop-tall", "Taller output", "Let the output area grow taller", () => {
    root.classList.toggle("rs-tall");
    tall.textContent = root.classList.contains("rs-tall") ? "Shorter output" : "Taller output";
  });
  const fold = button("runstop-fold rs-icon", "▾", "Collapse or expand the output", () => {
    root.classList.toggle("rs-folded");
    fold.textContent = root.classList.contains("rs-folded") ? "▸" : "▾";
  });
  head.append(name, badge, idle, waiting, elapsed, pid, exit, totals, h("span", "rs-spacer"), stop, rerun, resume, more, fold);
  const toolbar = h("span", "rs-toolbar");
  toolbar.append(bell, tall);
  const cmd = h("div", "runstop-command");
  const details = h("div", "runstop-details");
  details.hidden = true;
  const stats = h("div", "runstop-stats rs-dim");
  const stopinfo = h("div", "runstop-stopinfo");
  const notice = h("div", "runstop-error");
  const gone = h("div", "runstop-gone");
  const waitline = h("div", "runstop-waitline");
  const resumeBox = h("div", "runstop-resumebox");
  resumeBox.hidden = true;
  const prompt = h("textarea", "rs-prompt");
  prompt.rows = 2;
  prompt.placeholder = "Prompt for the resumed session (Ctrl+Enter sends)";
  const sendPrompt = button("rs-send", "Resume", "Start the agent again, in the same session, with this prompt", doResume);
  prompt.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) doResume(); });
  resumeBox.append(prompt, sendPrompt);
  const tabs = h("div", "runstop-tabs");
  const tabCards = button("rs-tab", "Cards", "The agent's messages, tool calls and files", () => setTab("cards"));
  const tabRaw = button("rs-tab", "Raw output", "The raw stream, as the agent wrote it", () => setTab("raw"));
  tabs.append(tabCards, tabRaw);
  const cards = h("div", "runstop-cards");
  const out = h("pre", "runstop-output");
  const input = h("div", "runstop-input");
  const line = h("input", "rs-line");
  line.type = "text";
  line.placeholder = "Send a line to the agent's stdin (Enter)";
  line.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" || kernelGone) return;
    model.send({ do: "send", text: line.value });
    line.value = "";
  });
  const ctrlc = button("runstop-interrupt", "Ctrl+C", "Send SIGINT to the agent", () => model.send({ do: "interrupt" }));
  input.append(line, ctrlc);
  const files = h("div", "runstop-files");
  root.append(head, cmd, details, stats, stopinfo, notice, gone, waitline, resumeBox, tabs, cards, out, input, files);
  el.append(root);

  let kernel = null, kernelGone = false, goneAt = null, tab = "cards", lastStatus = null, wasIdle = false;
  let runId = null, fullCards = new Map(), openCards = new Set(), diffShown = false;
  const now = () => Date.now() + (kernel ? kernel.skew() : 0);
  const live = () => { const s = S(), i = I(); return !!i.live && !i.readonly && !s.done && s.status !== "starting"; };

  function onStop() {
    if (kernelGone) return;
    stop.textContent = "Stopping…"; // at once; the kernel confirms with state.busy
    stop.disabled = true;
    model.send({ do: "stop" });
  }

  function doResume() {
    const text = prompt.value.trim();
    if (!text || kernelGone) return;
    model.send({ do: "resume", prompt: text });
    prompt.value = "";
    resumeBox.hidden = true;
  }

  function toggleBell() {
    const on = localStorage.getItem("runstop_nb.notify") === "1";
    localStorage.setItem("runstop_nb.notify", on ? "0" : "1");
    if (!on && typeof Notification !== "undefined" && Notification.permission === "default") Notification.requestPermission();
    paintBell();
  }

  function paintBell() {
    const on = localStorage.getItem("runstop_nb.notify") === "1";
    bell.textContent = on ? "Notifications: on" : "Notifications: off";
    bell.title = on ? "Browser notifications are on (when a run ends or goes idle); click to turn them off"
      : "Notify me in the browser when a run ends or goes idle";
  }

  function setTab(which) { tab = which; paintBody(); }

  function paintHead() {
    const s = S(), i = I();
    if (i.id !== runId) { runId = i.id; fullCards = new Map(); openCards = new Set(); diffShown = false; lastStatus = null; }
    name.textContent = i.name || "";
    name.title = i.id ? `run ${i.id}` : "";
    const status = kernelGone && !s.done ? "lost" : s.status || "starting";
    badge.textContent = kernelGone && !s.done ? "kernel gone" : s.word || s.status || "starting";
    root.dataset.status = status;
    badge.dataset.status = status;
    pid.textContent = i.pid ? `pid ${i.pid}` : "";
    exit.textContent = s.exit || "";
    exit.className = "runstop-exit" + (s.returncode ? " rs-bad" : "");
    const canStop = live() && !kernelGone;
    show(stop, live());
    stop.disabled = !canStop || !!s.busy;
    stop.textContent = s.busy ? "Stopping…" : "Stop";
    show(rerun, !!s.done && !!i.live);
    rerun.disabled = kernelGone;
    show(resume, !!s.can_resume);
    resume.disabled = kernelGone;
    sendPrompt.disabled = kernelGone;
    const cmdText = i.command || "";
    cmd.textContent = cmdText ? "$ " + cmdText : "";
    cmd.title = cmdText ? `${cmdText}\nin ${i.cwd || "?"}` : "";
    details.replaceChildren(h("span", "rs-key", "view"), toolbar);
    for (const [k, v] of [["folder", i.cwd], ["log", i.log], ["id", i.id], ["grace", i.grace != null ? `${i.grace} s` : null],
      ["timeout", i.timeout != null ? `${i.timeout} s` : null],
      ["worktree", i.worktree ? `${i.worktree.path} (branch ${i.worktree.branch})` : null],
      ["ray", i.ray ? `job ${i.ray.job_id} on node ${i.ray.node || "?"} (${i.ray.address})` : null]]) {
      if (v) details.append(h("span", "rs-key", k), h("span", "rs-val", String(v)));
    }
    const stop_ = s.stop;
    stopinfo.replaceChildren();
    if (stop_ && (s.done || s.status === "stopping")) {
      stopinfo.append(h("b", null, stop_.headline), document.createTextNode(stop_.facts.length ? " · " + stop_.facts.join(" · ") : ""));
      if (stop_.note) stopinfo.append(h("div", "rs-note", stop_.note));
      stopinfo.classList.toggle("rs-budget", stop_.cause === "budget");
    }
    show(stopinfo, !!stopinfo.childNodes.length);
    const err = [model.get("notice"), s.error].filter(Boolean);
    notice.textContent = err.length ? "⚠ " + err.join(" · ") : "";
    show(notice, err.length > 0);
    show(gone, kernelGone);
    gone.textContent = kernelGone ? (s.done ? "kernel gone: this view no longer updates"
      : "kernel gone: this run was stopped with its kernel") : "";
    show(waiting, !!s.waiting && !s.done);
    waiting.title = s.waiting || "";
    waitline.textContent = s.waiting && !s.done ? "waiting: " + s.waiting : "";
    show(waitline, !!s.waiting && !s.done);
    show(input, !!s.stdin);
    line.disabled = ctrlc.disabled = kernelGone;
    const a = model.get("agent");
    if (a) {
      const parts = [plural(a.turns, "turn"), plural(a.tool_calls, "tool")];
      if (a.input_tokens || a.output_tokens) parts.push(`${count(a.input_tokens)} in / ${count(a.output_tokens)} out`);
      if (a.cost_usd !== null && a.cost_usd !== undefined) parts.push(`$${a.cost_usd.toFixed(a.cost_usd < 1 ? 3 : 2)}`);
      totals.textContent = parts.join(" · ");
      totals.title = [a.model && `model ${a.model}`, a.session_id && `session ${a.session_id}`,
        a.cached_input_tokens ? `${a.cached_input_tokens} input tokens from cache` : null].filter(Boolean).join("\n");
    } else totals.textContent = "";
    if (lastStatus && !["completed", "failed", "cancelled", "timed_out"].includes(lastStatus) && s.done)
      notify(`${i.name}: ${s.word}`, s.exit || (s.stop && s.stop.headline) || "");
    lastStatus = s.status;
    paintStats();
    tick();
  }

  function paintStats() {
    const s = S();
    if (s.status === "starting") { stats.textContent = ""; return; }
    const parts = [];
    if (!s.done && model.get("stats") && !kernelGone) parts.push(model.get("stats"));
    if (s.done) parts.push(s.lines_text ? `${s.lines_text} · ${s.bytes_text} logged` : `${s.bytes_text} logged`);
    else if (s.bytes_text) parts.push(`${s.bytes_text} written`);
    stats.textContent = parts.join(" · ");
  }

  function tick() {
    const s = S(), i = I();
    if (s.done && s.elapsed !== null && s.elapsed !== undefined) elapsed.textContent = clock(s.elapsed);
    else if (i.started && s.status !== "starting") elapsed.textContent = clock(((goneAt || now()) - i.started) / 1000);
    else elapsed.textContent = "";
    const active = model.get("active");
    const idleFor = active && !s.done && !kernelGone ? (now() - active * 1000) / 1000 : 0;
    const isIdle = idleFor >= (i.idle_after || 120);
    show(idle, isIdle);
    idle.textContent = isIdle ? `idle ${ago(idleFor)}` : "";
    if (isIdle && !wasIdle) notify(`${i.name} is idle`, `no output for ${ago(idleFor)}`);
    wasIdle = isIdle;
  }

  function paintTail() {
    const pinned = out.scrollHeight - out.scrollTop - out.clientHeight < 8;
    // What was sent to the agent (stdin) is marked: without it, a typed line reads as the agent's own.
    const parts = (model.get("tail") || []).map((o) =>
      o.name === "stderr" || o.name === "stdin" ? `<span class="rs-${o.name}">${ansiHtml(o.text)}</span>` : ansiHtml(o.text));
    out.innerHTML = parts.join("");
    show(out, (tab === "raw" || !AGENTS.has(I().format)) && parts.length > 0);
    if (pinned) out.scrollTop = out.scrollHeight;
  }

  function paintBody() {
    const agentic = AGENTS.has(I().format);
    show(tabs, agentic);
    tabCards.classList.toggle("rs-on", tab === "cards");
    tabRaw.classList.toggle("rs-on", tab === "raw");
    show(cards, agentic && tab === "cards");
    show(out, (!agentic || tab === "raw") && (model.get("tail") || []).length > 0);
    if (agentic && tab === "cards") paintCards();
  }

  function paintCards() {
    const pinned = cards.scrollHeight - cards.scrollTop - cards.clientHeight < 8;
    cards.replaceChildren();
    for (const c of model.get("cards") || []) cards.append(cardEl(c));
    if (!cards.childNodes.length) cards.append(h("div", "rs-dim", "No messages yet."));
    if (pinned) cards.scrollTop = cards.scrollHeight;
  }

  function cardEl(c) {
    const card = h("div", `rs-card rs-kind-${c.kind} rs-st-${c.status}`);
    const top = h("div", "rs-card-head");
    top.append(h("span", "rs-card-kind", c.status === "error" && c.kind !== "error" ? `${KINDS[c.kind] || c.kind} ✗` : KINDS[c.kind] || c.kind));
    if (c.title) top.append(h("span", "rs-card-title", c.title));
    if (c.summary && c.summary !== c.title) top.append(h("span", "rs-card-summary", c.summary));
    card.append(top);
    const full = fullCards.get(c.id);
    const body = full !== undefined ? full : c.body;
    if (body) card.append(h("div", "rs-card-body", body));
    if (c.detail && full === undefined) {
      const d = h("details", "rs-card-detail");
      d.open = openCards.has(c.id);
      d.addEventListener("toggle", () => (d.open ? openCards.add(c.id) : openCards.delete(c.id)));
      d.append(h("summary", null, c.kind === "tool" ? (c.status === "error" ? "error" : "result") : "more"), h("pre", null, c.detail));
      card.append(d);
    }
    if (c.cut && full === undefined) {
      card.append(button("rs-showall", `show all (${plural(c.full, "character")})`, "Fetch this card's whole text from the kernel",
        async (ev) => {
          ev.target.disabled = true;
          try {
            const msg = await request(model, { do: "card", id: c.id });
            fullCards.set(c.id, msg.text);
          } catch (e) {
            fullCards.set(c.id, `(${e.message})`);
          }
          paintCards();
        }));
    }
    return card;
  }

  function paintFiles() {
    const rows = model.get("files");
    files.replaceChildren();
    if (!rows) { files.hidden = true; return; }
    files.hidden = false;
    const added = rows.reduce((n, r) => n + (r.added || 0), 0), removed = rows.reduce((n, r) => n + (r.removed || 0), 0);
    const bar = h("div", "rs-files-bar");
    bar.append(h("b", null, `${plural(rows.length, "file")} changed`), h("span", "rs-add", ` +${added}`), h("span", "rs-del", ` −${removed}`),
      h("span", "rs-spacer"),
      button("runstop-diff-btn", diffShown ? "Hide diff" : "Show diff", "The whole diff of the worktree (fetched now)", toggleDiff),
      button("rs-icon", "↻", "Read the changes again", () => model.send({ do: "files" })));
    files.append(bar);
    const list = h("div", "rs-file-list");
    for (const r of rows) {
      const row = h("div", "rs-file");
      row.append(h("span", "rs-add", r.added === null ? "bin" : `+${r.added}`), h("span", "rs-del", r.removed === null ? "" : `−${r.removed}`),
        h("span", "rs-path", r.old_path ? `${r.old_path} → ${r.path}` : r.path), h("span", "rs-dim", r.status));
      list.append(row);
    }
    files.append(list);
    if (diffShown) files.append(diffEl);
  }

  const diffEl = h("pre", "runstop-diff");
  async function toggleDiff() {
    diffShown = !diffShown;
    if (diffShown) {
      diffEl.textContent = "reading the diff…";
      paintFiles();
      try {
        const msg = await request(model, { do: "diff" }, 60000);
        diffEl.innerHTML = msg.text.split("\n").map((l) => {
          const cls = l.startsWith("+++") || l.startsWith("---") ? "rs-dim" : l[0] === "+" ? "rs-add" : l[0] === "-" ? "rs-del" : l.startsWith("@@") ? "rs-hunk" : "";
          return cls ? `<span class="${cls}">${esc(l)}</span>` : esc(l);
        }).join("\n");
      } catch (e) {
        diffEl.textContent = `the diff could not be read: ${e.message}`;
      }
    }
    paintFiles();
  }

  function paintAll() { paintHead(); paintTail(); paintBody(); paintFiles(); }

  model.on("change:state", paintHead);
  model.on("change:info", () => { paintHead(); paintBody(); paintFiles(); });
  model.on("change:notice", paintHead);
  model.on("change:agent", paintHead);
  model.on("change:stats", paintStats);
  model.on("change:tail", paintTail);
  model.on("change:cards", () => { if (AGENTS.has(I().format) && tab === "cards") paintCards(); });
  model.on("change:active", tick);
  model.on("change:files", paintFiles);
  paintBell();
  paintAll();
  const stopTick = everySecond(() => { if (!S().done || kernelGone) tick(); });
  watchKernel(model, (g) => {
    kernelGone = g;
    goneAt = g ? now() : null;
    root.classList.toggle("rs-gone", g);
    paintHead();
  }).then((k) => { kernel = k; tick(); });
  return () => { stopTick(); if (kernel) kernel.dispose(); };
}

// -- "Stop all" with a confirmation, and the kernel-gone note of grids and tables -------------

function stopAllControl(onConfirm, what) {
  const box = h("span", "runstop-stopall");
  const ask = button("runstop-stop-all rs-danger", "Stop all", `Stop every live run of this ${what}`, () => {
    show(ask, false);
    show(confirm, true);
  });
  const confirm = h("span", "runstop-confirm");
  confirm.hidden = true;
  const yes = button("runstop-confirm-yes rs-danger", "Stop", "", () => { onConfirm(); reset(); });
  const no = button("runstop-confirm-no", "Cancel", "Keep them running", () => reset());
  confirm.append(h("span", "rs-question"), yes, no);
  box.append(ask, confirm);
  function reset() { show(ask, true); show(confirm, false); }
  return {
    el: box,
    update(live, gone) {
      ask.disabled = gone || live === 0;
      yes.disabled = gone;
      confirm.firstChild.textContent = `Stop ${plural(live, "live run")}? `;
      yes.textContent = `Stop ${live}`;
      if (live === 0 || gone) reset();
    },
  };
}

// -- the grid ----------------------------------------------------------------------------------

function renderGrid({ model, el, host, signal }) {
  const ctl = new AbortController();
  const sig = signal ? AbortSignal.any([signal, ctl.signal]) : ctl.signal;
  const root = h("div", "runstop-grid");
  const bar = h("div", "runstop-gridbar");
  const summary = h("span", "runstop-summary rs-dim");
  const goneNote = h("span", "runstop-gone-note", "kernel gone");
  goneNote.hidden = true;
  const stopAll = stopAllControl(() => model.send({ do: "stop_all" }), "grid");
  bar.append(summary, goneNote, h("span", "rs-spacer"), stopAll.el);
  const cells = h("div", "runstop-cells");
  const cols = model.get("cols");
  cells.style.gridTemplateColumns = cols ? `repeat(${cols}, minmax(0, 1fr))`
    : `repeat(auto-fill, minmax(min(${model.get("min_column") || 420}px, 100%), 1fr))`;
  root.append(bar, cells);
  el.append(root);
  const states = new Map();
  let gone = false;
  function recount() {
    const all = [...states.values()];
    const live = all.filter((s) => s && !s.done && s.status !== "starting" && s.status !== "failed").length;
    summary.textContent = `${plural(model.get("items").length, "run")} · ${live} live`;
    stopAll.update(live, gone);
  }
  for (const id of model.get("items") || []) {
    const cell = h("div", "runstop-cell");
    cells.append(cell);
    renderChild(model, host, id, cell, sig).catch((e) => { cell.textContent = `runstop_nb: ${e.message}`; });
    if (model.widget_manager) {
      model.widget_manager.get_model(id).then((m) => {
        const on = () => { states.set(id, m.get("state")); recount(); };
        m.on("change:state", on);
        sig.addEventListener("abort", () => m.off("change:state", on));
        on();
      }).catch(() => {});
    }
  }
  recount();
  let kernel = null;
  watchKernel(model, (g) => { gone = g; goneNote.hidden = !g; recount(); }).then((k) => { kernel = k; });
  return () => { ctl.abort(); if (kernel) kernel.dispose(); };
}

// -- the table of runs (dashboard, %agent_ls) ---------------------------------------------------

const FILTERS = [["all", "all"], ["live", "live"], ["running", "running"], ["stopping", "stopping"], ["completed", "completed"],
  ["failed", "failed"], ["cancelled", "cancelled"], ["timed_out", "timed out"]];

function renderBoard({ model, el, host, signal }) {
  const ctl = new AbortController();
  const sig = signal ? AbortSignal.any([signal, ctl.signal]) : ctl.signal;
  const root = h("div", "runstop-board");
  const bar = h("div", "runstop-boardbar");
  const summary = h("span", "runstop-summary rs-dim");
  const goneNote = h("span", "runstop-gone-note", "kernel gone");
  goneNote.hidden = true;
  const filter = h("select", "runstop-filter");
  filter.title = "Show runs in this status";
  for (const [v, label] of FILTERS) { const o = h("option", null, label); o.value = v; filter.append(o); }
  filter.addEventListener("change", paint);
  const stopAll = stopAllControl(() => model.send({ do: "stop_all" }), "table");
  bar.append(summary, goneNote, h("span", "rs-spacer"), filter, stopAll.el);
  const table = h("table", "runstop-table");
  const headRow = h("tr");
  for (const c of ["name", "status", "elapsed", "lines", "exit", "command", ""]) headRow.append(h("th", null, c));
  const thead = h("thead");
  thead.append(headRow);
  const tbody = h("tbody");
  table.append(thead, tbody);
  const detail = h("div", "runstop-detail");
  root.append(bar, table, detail);
  el.append(root);
  let gone = false, kernel = null, detailCtl = null;
  const clocks = [];
  const now = () => Date.now() + (kernel ? kernel.skew() : 0);

  function paint() {
    const rows = [...(model.get("rows") || [])].sort((a, b) => (a.started || 0) - (b.started || 0));
    const f = filter.value;
    const shown = rows.filter((r) => f === "all" || (f === "live" ? !r.done : r.status === f));
    const live = rows.filter((r) => !r.done && r.live).length;
    const hidden = model.get("hidden");
    summary.textContent = `${plural(rows.length, "run")} · ${live} live` + (hidden ? ` · ${hidden} older ended not shown` : "");
    stopAll.update(live, gone);
    tbody.replaceChildren();
    clocks.length = 0;
    const open = model.get("detail");
    for (const r of shown) {
      const tr = h("tr", "runstop-row");
      tr.dataset.status = gone && !r.done ? "lost" : r.status;
      tr.dataset.id = r.id;
      const nameCell = h("td", "rs-name");
      const link = button("runstop-open rs-link", r.name, "Show this run's view below the table", () =>
        model.send({ do: "open", id: tr.classList.contains("rs-open") ? null : r.id }));
      nameCell.append(link);
      const st = h("td");
      const b = h("span", "runstop-status runstop-badge", gone && !r.done ? "kernel gone" : r.word);
      b.dataset.status = gone && !r.done ? "lost" : r.status;
      st.append(b);
      const el_ = h("td", "runstop-elapsed rs-num");
      clocks.push([el_, r]);
      const lines = h("td", "rs-num", r.lines !== null && r.lines !== undefined ? r.lines.toLocaleString("en-US") : r.bytes || "");
      const ex = h("td", "runstop-exit", r.exit || "");
      const cmd = h("td", "rs-cmd", r.command);
      cmd.title = `${r.command}\nin ${r.cwd}\nlog ${r.log}`;
      const act = h("td", "rs-act");
      if (!r.done && r.live) {
        const s = button("runstop-stop rs-danger rs-small", r.busy ? "Stopping…" : "Stop", "Stop this run's whole process tree", () => {
          s.textContent = "Stopping…";
          s.disabled = true;
          model.send({ do: "stop", id: r.id });
        });
        s.disabled = gone || r.busy;
        act.append(s);
      }
      tr.append(nameCell, st, el_, lines, ex, cmd, act);
      if (open && r.id === openId) tr.classList.add("rs-open");
      tbody.append(tr);
    }
    if (!shown.length) {
      const tr = h("tr");
      const td = h("td", "rs-dim", rows.length ? "no run in this status" : "no runs in this kernel yet");
      td.colSpan = 7;
      tr.append(td);
      tbody.append(tr);
    }
    tick();
  }

  function tick() {
    for (const [cell, r] of clocks) {
      cell.textContent = r.done ? clock(r.elapsed) : gone ? cell.textContent : clock((now() - r.started) / 1000);
    }
  }

  let openId = null;
  async function paintDetail() {
    if (detailCtl) detailCtl.abort();
    detail.replaceChildren();
    const id = model.get("detail");
    openId = null;
    if (!id) { paint(); return; }
    detailCtl = new AbortController();
    const s = AbortSignal.any([sig, detailCtl.signal]);
    try {
      const m = await model.widget_manager.get_model(id);
      openId = (m.get("info") || {}).id || null;
    } catch (e) { openId = null; }
    paint();
    renderChild(model, host, id, detail, s).catch((e) => { detail.textContent = `runstop_nb: ${e.message}`; });
  }

  model.on("change:rows", paint);
  model.on("change:hidden", paint);
  model.on("change:detail", paintDetail);
  paintDetail();
  const stopTick = everySecond(tick);
  watchKernel(model, (g) => { gone = g; goneNote.hidden = !g; paint(); }).then((k) => { kernel = k; tick(); });
  return () => { ctl.abort(); stopTick(); if (kernel) kernel.dispose(); };
}

export default {
  render(ctx) {
    const kind = ctx.model.get("kind");
    if (kind === "grid") return renderGrid(ctx);
    if (kind === "board") return renderBoard(ctx);
    return renderRun(ctx);
  },
};
