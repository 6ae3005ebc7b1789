"""The report's inline style sheet and script (vanilla JS: the file opens from disk, offline)."""

from __future__ import annotations

CSS = """
:root { --fg:#1d232b; --muted:#5d6773; --line:#dde2e8; --bg:#f6f8fa; --right:#2a8a4a; --wrong:#c23b22;
  --failed:#7a4bb0; --accent:#1f5fa8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0;
  background: #fff; }
header.top { background: var(--bg); border-bottom: 1px solid var(--line); padding: 16px 28px; }
header.top h1 { font-size: 20px; margin: 0 0 4px; }
main { padding: 8px 28px 40px; max-width: 1400px; }
h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
.muted { color: var(--muted); }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; }
.kv dt { color: var(--muted); } .kv dd { margin: 0; font-family: ui-monospace, monospace; font-size: 12.5px;
  word-break: break-all; }
details.cfg summary { cursor: pointer; color: var(--accent); margin-top: 6px; }
table.data { border-collapse: collapse; margin: 6px 0; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left; }
table.data th { background: var(--bg); font-weight: 600; }
table.data td.num { text-align: right; font-family: ui-monospace, monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; color: #fff; }
.badge.right { background: var(--right); } .badge.wrong { background: var(--wrong); }
.badge.failed { background: var(--failed); } .badge.unscored { background: var(--muted); } .badge.ok { background: var(--right); }
.badge.bad { background: var(--wrong); } .badge.info { background: var(--muted); }
.flip.worse { color: var(--wrong); font-weight: 600; } .flip.better { color: var(--right); font-weight: 600; }
svg.forest { max-width: 100%; height: auto; font-size: 11.5px; }
svg.forest .grid { stroke: #eceff3; } svg.forest .axis { stroke: #98a2ae; }
svg.forest .ref { stroke: #7d8590; stroke-dasharray: 4 3; }
svg.forest .tick { text-anchor: middle; fill: var(--muted); }
svg.forest .axislabel { text-anchor: middle; fill: var(--muted); }
svg.lines { max-width: 100%; height: auto; font-size: 11.5px; }
svg.lines .grid { stroke: #eceff3; } svg.lines .tick { text-anchor: middle; fill: var(--muted); }
svg.lines .ytick { text-anchor: end; fill: var(--muted); }
svg.forest .rlabel { text-anchor: end; fill: var(--fg); } svg.forest .rnote { fill: var(--muted); }
.legend span { margin-right: 14px; } .legend i { display: inline-block; width: 10px; height: 10px;
  border-radius: 5px; margin-right: 4px; }
.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; background: var(--bg);
  padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; }
.filters input[type=search] { width: 260px; padding: 3px 6px; }
#samples tr.srow { cursor: pointer; } #samples tr.srow:hover { background: #f0f4fa; }
#samples td.resp { max-width: 420px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  font-family: ui-monospace, monospace; font-size: 12.5px; }
tr.detail > td { background: #fbfcfd; padding: 10px 14px 16px; }
.sample pre { white-space: pre-wrap; word-break: break-word; background: var(--bg); border: 1px solid var(--line);
  padding: 6px 8px; border-radius: 4px; margin: 2px 0 8px; font-size: 12.5px; max-height: 320px; overflow: auto; }
.sample .label { color: var(--muted); font-size: 12px; margin-top: 6px; }
.media { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; margin: 4px 0 8px; }
.media img.thumb { min-width: 160px; max-width: 320px; border: 1px solid var(--line); }
.media .frames { display: flex; flex-wrap: wrap; gap: 3px; max-width: 900px; }
.media .frames img { height: 90px; border: 1px solid var(--line); }
.media .err { color: var(--wrong); font-size: 12px; }
button.more { margin: 10px 0; padding: 4px 14px; }
"""

# The samples live in one JSON block; rows are built on demand (a page at a time) so a
# run of thousands of samples opens at once, and every text goes in through textContent.
JS = r"""
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("lmms-data").textContent);
  const PAGE = 200;
  const samples = DATA.samples;
  for (const s of samples) {
    s._hay = [s.task, s.doc, s.prompt || "", s.response || "", s.raw || "", String(s.target),
              s.extracted == null ? "" : String(s.extracted)].join("\n").toLowerCase();
  }
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  let shown = 0, matches = [];

  function wanted(s) {
    const task = $("f-task").value, status = $("f-status").value, flip = $("f-flip").value;
    const query = $("f-search").value.trim().toLowerCase();
    if (task && s.task !== task) return false;
    if (status && s.status !== status) return false;
    if (flip === "flipped" && !s.flip) return false;
    if ((flip === "worse" || flip === "better") && s.flip !== flip) return false;
    if ($("f-var").checked && !(s.variance > 0)) return false;
    if (query && s._hay.indexOf(query) < 0) return false;
    return true;
  }

  function apply() {
    matches = samples.filter(wanted);
    $("samples").replaceChildren();
    shown = 0;
    more();
  }

  function more() {
    const body = $("samples");
    const end = Math.min(matches.length, shown + PAGE);
    const frag = document.createDocumentFragment();
    for (let i = shown; i < end; i++) frag.appendChild(row(matches[i]));
    body.appendChild(frag);
    shown = end;
    $("sample-count").textContent = matches.length + " of " + samples.length + " samples" +
      (shown < matches.length ? " (first " + shown + " shown)" : "");
    $("more").hidden = shown >= matches.length;
  }

  function row(s) {
    const tr = el("tr", "srow");
    tr.dataset.key = s.key;
    tr.dataset.status = s.status;
    tr.appendChild(el("td", "", s.task));
    tr.appendChild(el("td", "", s.doc + (s.repeat ? " #r" + s.repeat : "")));
    const st = el("td"); st.appendChild(el("span", "badge " + s.status, s.status)); tr.appendChild(st);
    tr.appendChild(el("td", s.flip ? "flip " + s.flip : "", s.flip === "worse" ? "right \u2192 wrong" :
      s.flip === "better" ? "wrong \u2192 right" : ""));
    tr.appendChild(el("td", "num", s.score == null ? "" : s.score));
    tr.appendChild(el("td", "resp", s.status === "failed" ? s.reason : s.response));
    tr.appendChild(el("td", "resp", s.target == null ? "" : JSON.stringify(s.target)));
    tr.addEventListener("click", () => toggle(tr, s));
    return tr;
  }

  function toggle(tr, s) {
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("detail")) { next.remove(); return; }
    const d = el("tr", "detail"), td = el("td");
    td.colSpan = 7;
    td.appendChild(detail(s));
    d.appendChild(td);
    tr.after(d);
  }

  function block(parent, label, text) {
    if (text === undefined || text === null || text === "") return;
    parent.appendChild(el("div", "label", label));
    parent.appendChild(el("pre", "", typeof text === "string" ? text : JSON.stringify(text, null, 1)));
  }

  function mediaNode(id) {
    const item = DATA.media[id];
    const box = el("div");
    if (!item) return box;
    if (item.error) { box.appendChild(el("div", "err", item.kind + " " + (item.path || "") + ": " + item.error)); return box; }
    if (item.kind === "image") {
      const img = el("img", "thumb"); img.src = item.src[0]; img.alt = item.path || "image"; box.appendChild(img);
    } else if (item.kind === "video") {
      box.appendChild(el("div", "label", "video " + (item.path || "") + ": " + item.src.length + " sampled frames"));
      const frames = el("div", "frames");
      item.src.forEach((src, k) => { const img = el("img", "frame"); img.src = src; img.alt = "frame " + k; frames.appendChild(img); });
      box.appendChild(frames);
    } else if (item.kind === "audio") {
      const audio = el("audio"); audio.controls = true; audio.src = item.src[0]; box.appendChild(audio);
    }
    return box;
  }

  function detail(s) {
    const box = el("div", "sample");
    if (s.status === "failed") { block(box, "failure", s.reason); return box; }
    block(box, "prompt (as rendered)", s.prompt);
    if (s.choices) block(box, "choices", s.choices.join("\n"));
    if (s.media && s.media.length) {
      box.appendChild(el("div", "label", "media (as fed to the model)"));
      const m = el("div", "media");
      s.media.forEach((id) => m.appendChild(mediaNode(id)));
      box.appendChild(m);
    }
    if (s.prompt_note) box.appendChild(el("div", "muted", s.prompt_note));
    if (s.raw !== s.response) block(box, "raw response (before reasoning stripping)", s.raw);
    block(box, "response", s.response);
    if ("extracted" in s) block(box, "extracted answer", s.extracted === null ? "(nothing extracted)" : s.extracted);
    block(box, "target", s.target);
    block(box, "scores", Object.entries(s.scores || {}).map(([k, v]) => k + " = " + v).join("\n"));
    if (s.judge_calls) block(box, "judge calls", s.judge_calls + " call(s): " + (s.judge_prompts || []).join(", "));
    if (s.baseline) {
      block(box, "baseline response", s.baseline.response);
      block(box, "baseline scores", Object.entries(s.baseline.scores || {}).map(([k, v]) => k + " = " + v).join("\n"));
    }
    const t = [];
    if (s.latency_s != null) t.push("latency " + s.latency_s + " s");
    if (s.ttft_s != null) t.push("time to first token " + s.ttft_s + " s");
    if (s.cached) t.push("from cache");
    if (t.length) box.appendChild(el("div", "muted", t.join(" \u00b7 ")));
    return box;
  }

  let timer = null;
  $("f-search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(apply, 120); });
  for (const id of ["f-task", "f-status", "f-flip", "f-var"]) $(id).addEventListener("change", apply);
  $("more").addEventListener("click", more);
  apply();
  document.body.dataset.ready = "1";
})();
"""
