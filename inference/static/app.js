// The article page: paste or drop an article, POST it to /v1/analyze, show every sentence by label.
//
// Everything the server or the user gives is put into the page as text (textContent, append of
// strings, createElement), never parsed as HTML; the page's Content-Security-Policy forbids
// inline script as a second wall. No request leaves this origin.
"use strict";

(() => {
  const LABELS = ["claim", "denial", "official_statement", "other"];
  const NAMES = { claim: "Claim", denial: "Denial", official_statement: "Official statement", other: "Other" };
  const ONLY = {
    claim: "Only claims",
    denial: "Only denials",
    official_statement: "Only official statements",
    other: "Only other",
  };
  const SPEAKER_TYPES = { official: "official", non_official: "non-official" };
  const KEY_STORE = "claimlens.apiKey";
  const MIN_SHARE = 0.1; // explanation words below this share of the sentence's strongest are not marked
  // Far above any article; a bigger file is a mistake, and reading it would only freeze the tab.
  const MAX_FILE_BYTES = 10 * 1024 * 1024;
  const CSV_COLUMNS = [
    "index", "start", "end", "label", "score", ...LABELS.map((l) => `score_${l}`),
    "truncated", "speaker", "speaker_type", "speaker_in_previous", "antecedent", "cue", "sentence",
  ];

  const $ = (id) => document.getElementById(id);
  const state = { result: null, filter: "all", busy: false, urls: [] };

  // ------------------------------------------------------------ DOM, as text only

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function showMessage(kind, title, detail) {
    const box = $("message");
    box.replaceChildren(el("strong", null, title), detail ? el("span", "detail", ` ${detail}`) : null);
    box.className = `message ${kind}`;
    box.hidden = false;
  }

  function clearMessage() {
    const box = $("message");
    box.hidden = true;
    box.replaceChildren();
  }

  // ------------------------------------------------------------ the API key

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch {
      return ""; // storage disabled: the key lives in the field only
    }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key);
      else sessionStorage.removeItem(KEY_STORE);
    } catch {
      // storage disabled: nothing to keep
    }
    $("key-state").textContent = key ? "set" : "none";
  }

  // ------------------------------------------------------------ calling the server

  async function errorText(response) {
    const raw = await response.text().catch(() => "");
    try {
      const body = JSON.parse(raw);
      if (body && typeof body.error === "string") {
        return body.request_id ? `${body.error} (request id ${body.request_id})` : body.error;
      }
    } catch {
      // not JSON: a proxy's page, say; its text is shown, shortened
    }
    return raw.slice(0, 300);
  }

  async function explainFailure(response, sentKey, explain) {
    const message = await errorText(response);
    const status = response.status;
    if (status === 401) {
      $("key-box").open = true;
      $("api-key").focus();
      const title = sentKey ? "The API key was refused (401)." : "This server needs an API key (401).";
      return ["error", title, "Enter a valid key under “API key” and analyze again."];
    }
    if (status === 413) return ["error", "The article is too large for the server (413).", message];
    if (status === 422 && explain && /explain/i.test(message)) {
      return ["error", "This server cannot explain its labels (422).", `${message}. Untick “Explain” to analyze.`];
    }
    if (status === 422) return ["error", "The server refused this text (422).", message];
    if (status === 503) {
      const retry = response.headers.get("Retry-After");
      const when = retry ? ` Try again in ${retry} s.` : " Try again shortly.";
      return ["error", "The server is busy or still loading the model (503).", `${message}.${when}`];
    }
    return ["error", `The server answered ${status}.`, message];
  }

  async function analyze() {
    if (state.busy) return;
    const text = $("text").value;
    if (!text.trim()) {
      showMessage("error", "Nothing to analyze.", "Paste an article or open a .txt file first.");
      return;
    }
    const explain = $("explain").checked;
    const key = $("api-key").value.trim();
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (key) headers.Authorization = `Bearer ${key}`;
    const body = explain ? { text, explain: true } : { text };
    setBusy(true);
    clearMessage();
    try {
      let response;
      try {
        response = await fetch("v1/analyze", {
          method: "POST", headers, body: JSON.stringify(body), cache: "no-store", credentials: "omit",
        });
      } catch {
        showMessage("error", "Cannot reach the server.", "Is claimlens serve still running?");
        return;
      }
      if (!response.ok) {
        showMessage(...(await explainFailure(response, Boolean(key), explain)));
        return;
      }
      const result = await response.json().catch(() => null);
      if (!result || !Array.isArray(result.sentences)) {
        showMessage("error", "The server's answer was not an analysis.", "Is this a claimlens server?");
        return;
      }
      render(result);
    } finally {
      setBusy(false);
    }
  }

  function setBusy(busy) {
    state.busy = busy;
    const button = $("analyze");
    button.disabled = busy;
    button.textContent = busy ? "Analyzing…" : "Analyze";
    $("results").setAttribute("aria-busy", String(busy));
  }

  // ------------------------------------------------------------ spans inside a sentence

  function spanText(span) {
    if (typeof span === "string") return span;
    if (span && typeof span === "object" && typeof span.text === "string") return span.text;
    return "";
  }

  // [a, b) in the sentence's code points (the API counts code points, as Python does; JS strings
  // count UTF-16 units, so an emoji before a span would shift it). Offsets are the article's, as
  // the sentence's own start/end are; offsets into the sentence are tried second unless
  // `articleOnly` (a speaker or cue: one in the previous sentence must not be marked in this one).
  // With `strict`, the span's text must match what it points at.
  function locate(span, sentence, chars, strict, articleOnly = false) {
    if (!span || typeof span !== "object") return null;
    const { start, end } = span;
    if (!Number.isInteger(start) || !Number.isInteger(end) || end <= start) return null;
    const text = typeof span.text === "string" ? span.text : null;
    const origin = Number.isInteger(sentence.start) ? sentence.start : 0;
    const fits = (articleOnly ? [origin] : [origin, 0])
      .map((shift) => [start - shift, end - shift])
      .filter(([a, b]) => a >= 0 && b <= chars.length);
    const exact = fits.find(([a, b]) => text !== null && chars.slice(a, b).join("") === text);
    if (exact || strict) return exact || null;
    return fits[0] || null;
  }

  function explanationTokens(explanation) {
    let list = [];
    if (Array.isArray(explanation)) list = explanation;
    else if (explanation && Array.isArray(explanation.tokens)) list = explanation.tokens;
    else if (explanation && Array.isArray(explanation.spans)) list = explanation.spans;
    return list.filter((t) => t && typeof t === "object");
  }

  // Explanation words are the sentence's own unless they say they come from its context (the
  // previous sentence, which the model read with it): those are listed, not marked.
  const inContext = (token) => token.segment === "context" || token.segment === 1;

  function weightOf(token) {
    for (const name of ["weight", "score", "attribution", "importance", "value"]) {
      if (typeof token[name] === "number" && Number.isFinite(token[name])) return token[name];
    }
    return 1;
  }

  function marksOf(s, chars) {
    const marks = [];
    const speaker = s.speaker_in_previous ? null : locate(s.speaker, s, chars, true, true);
    if (speaker) marks.push({ at: speaker, cls: "mark-speaker", title: "speaker" });
    const cue = locate(s.cue, s, chars, true, true);
    if (cue) marks.push({ at: cue, cls: "mark-cue", title: "cue" });
    const tokens = explanationTokens(s.explanation);
    const top = Math.max(0, ...tokens.map((t) => Math.abs(weightOf(t))));
    for (const token of tokens) {
      const w = weightOf(token);
      // Every word the model read has a weight; the faintest tenth would only be noise.
      if (top === 0 || Math.abs(w) < MIN_SHARE * top) continue;
      const at = inContext(token) ? null : locate(token, s, chars, false);
      if (!at) continue;
      const level = Math.min(4, Math.max(1, Math.ceil((4 * Math.abs(w)) / top)));
      const cls = w < 0 ? "mark-xp xp-neg" : `mark-xp xp-${level}`;
      marks.push({ at, cls, title: `explanation weight ${w.toFixed(3)}` });
    }
    return marks;
  }

  // The sentence as text nodes, each run of characters under the same marks in one <span>.
  function sentenceNode(s) {
    const chars = Array.from(String(s.sentence ?? ""));
    const marks = marksOf(s, chars);
    const cuts = new Set([0, chars.length]);
    for (const m of marks) cuts.add(m.at[0]).add(m.at[1]);
    const points = [...cuts].sort((x, y) => x - y);
    const node = el("span", "text");
    for (let i = 0; i + 1 < points.length; i += 1) {
      const [a, b] = [points[i], points[i + 1]];
      const piece = chars.slice(a, b).join("");
      const on = marks.filter((m) => m.at[0] <= a && b <= m.at[1]);
      if (!on.length) {
        node.append(piece);
        continue;
      }
      const span = el("span", on.map((m) => m.cls).join(" "), piece);
      span.title = on.map((m) => m.title).join("; ");
      node.append(span);
    }
    return node;
  }

  // ------------------------------------------------------------ one sentence's row

  function formatScore(score) {
    return typeof score === "number" && Number.isFinite(score) ? score.toFixed(2) : "–";
  }

  function scoresTitle(scores) {
    if (!scores || typeof scores !== "object") return "";
    return LABELS.filter((l) => typeof scores[l] === "number")
      .map((l) => `${NAMES[l]}: ${scores[l].toFixed(3)}`)
      .join("\n");
  }

  // The words that raised the label's score most, the context's among them.
  function whyNode(explanation) {
    const tokens = explanationTokens(explanation);
    if (!tokens.length) return null;
    const top = tokens
      .filter((t) => weightOf(t) > 0 && /[\p{L}\p{N}]/u.test(spanText(t))) // words, not punctuation
      .sort((a, b) => weightOf(b) - weightOf(a))
      .slice(0, 3)
      .map((t) => (inContext(t) ? `${spanText(t)} (previous sentence)` : spanText(t)));
    const item = el("li", "meta-why", el("span", "meta-key", "Why"), top.join(", ") || "no word raised the score");
    const share = explanation && explanation.context_share;
    if (typeof share === "number" && share > 0) item.append(el("span", "tag", `context ${Math.round(share * 100)}%`));
    return item;
  }

  function metaNode(s) {
    const items = [];
    const who = spanText(s.speaker);
    if (who) {
      const item = el("li", "meta-speaker", el("span", "meta-key", "Speaker"), who);
      const antecedent = spanText(s.antecedent);
      if (antecedent) item.append(` → ${antecedent}`);
      if (s.speaker_type) item.append(el("span", "tag", SPEAKER_TYPES[s.speaker_type] || String(s.speaker_type)));
      if (s.speaker_in_previous) item.append(el("span", "tag", "in the previous sentence"));
      items.push(item);
    }
    const cue = spanText(s.cue);
    if (cue) items.push(el("li", "meta-cue", el("span", "meta-key", "Cue"), cue));
    const why = whyNode(s.explanation);
    if (why) items.push(why);
    return items.length ? el("ul", "meta", ...items) : null;
  }

  function truncatedNode(s) {
    if (!s.truncated) return null;
    const tag = el("span", "tag tag-warn", "truncated");
    tag.title = "The sentence is longer than the model reads: only its beginning was classified.";
    return tag;
  }

  function rowNode(s, index) {
    const known = LABELS.includes(s.label);
    const label = known ? s.label : "unknown";
    const row = el("li", `row label-${label}`);
    row.dataset.label = String(s.label);
    const score = el("span", "score", formatScore(s.score));
    score.title = scoresTitle(s.scores);
    row.append(
      el("span", "num", String(index + 1)),
      el("span", `badge label-${label}`, known ? NAMES[label] : String(s.label)),
      score,
      el("div", "body", sentenceNode(s), truncatedNode(s), metaNode(s)),
    );
    return row;
  }

  // ------------------------------------------------------------ the result

  function countLabels(sentences) {
    const counts = Object.fromEntries(LABELS.map((l) => [l, 0]));
    for (const s of sentences) if (s.label in counts) counts[s.label] += 1;
    return counts;
  }

  function renderLegend(counts) {
    $("legend").replaceChildren(
      ...LABELS.map((l) =>
        el("li", `legend-item label-${l}`, el("span", `swatch label-${l}`), NAMES[l], el("span", "legend-count", String(counts[l]))),
      ),
    );
  }

  function renderFilters(counts, total) {
    const options = [["all", `All (${total})`], ...LABELS.map((l) => [l, `${ONLY[l]} (${counts[l]})`])];
    if (state.filter !== "all" && !counts[state.filter]) state.filter = "all";
    const box = $("filters");
    box.replaceChildren(el("legend", "visually-hidden", "Show"));
    for (const [value, text] of options) {
      const input = el("input");
      input.type = "radio";
      input.name = "filter";
      input.value = value;
      input.checked = value === state.filter;
      input.disabled = value !== "all" && counts[value] === 0;
      input.addEventListener("change", () => {
        state.filter = value;
        applyFilter();
      });
      box.append(el("label", `filter filter-${value}`, input, text));
    }
  }

  function renderMarksLegend(sentences) {
    const has = (test) => sentences.some(test);
    const items = [];
    if (has((s) => spanText(s.speaker))) items.push(el("li", null, el("span", "mark-speaker", "speaker"), " who asserts it"));
    if (has((s) => spanText(s.cue))) items.push(el("li", null, el("span", "mark-cue", "cue"), " the words that report it"));
    if (has((s) => explanationTokens(s.explanation).length)) {
      items.push(el("li", null, el("span", "mark-xp xp-4", "explanation"), " the words behind the label (darker: more; dashed: against it)"));
    }
    $("marks-legend").replaceChildren(...items);
    $("marks-legend").hidden = !items.length;
  }

  function applyFilter() {
    const rows = [...$("sentences").children];
    let shown = 0;
    for (const row of rows) {
      const show = state.filter === "all" || row.dataset.label === state.filter;
      row.hidden = !show;
      if (show) shown += 1;
    }
    $("showing").textContent = state.filter === "all" ? "" : `${ONLY[state.filter]}: ${shown} of ${rows.length} sentences.`;
  }

  function render(result) {
    state.result = result;
    const sentences = result.sentences;
    const counts = countLabels(sentences);
    const model = $("model-name");
    model.textContent = result.model ? `model ${result.model}` : "";
    model.hidden = !result.model;
    $("total").textContent = String(sentences.length);
    renderLegend(counts);
    renderFilters(counts, sentences.length);
    renderMarksLegend(sentences);
    $("sentences").replaceChildren(...sentences.map(rowNode));
    $("results").hidden = false;
    applyFilter();
  }

  // ------------------------------------------------------------ downloads, built here

  function csvField(value) {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  const flag = (value) => (typeof value === "boolean" ? String(value) : "");

  function toCsv(sentences) {
    const rows = [CSV_COLUMNS];
    sentences.forEach((s, i) => {
      const scores = s.scores && typeof s.scores === "object" ? s.scores : {};
      rows.push([
        i + 1, s.start, s.end, s.label, s.score, ...LABELS.map((l) => scores[l]),
        s.truncated ? "true" : "false", spanText(s.speaker), s.speaker_type, flag(s.speaker_in_previous),
        spanText(s.antecedent), spanText(s.cue), s.sentence,
      ]);
    });
    return rows.map((r) => r.map(csvField).join(",")).join("\r\n") + "\r\n";
  }

  function download(name, type, content) {
    // The previous downloads' URLs are freed here rather than on a timer: by now they are done.
    for (const old of state.urls.splice(0)) URL.revokeObjectURL(old);
    const url = URL.createObjectURL(new Blob([content], { type }));
    state.urls.push(url);
    const link = el("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
  }

  // ------------------------------------------------------------ files

  async function loadFile(file) {
    if (!file) return;
    const textual = /\.txt$/i.test(file.name) || (file.type || "").startsWith("text/");
    if (!textual) {
      showMessage("error", "Not a text file.", `${file.name}: open or drop a .txt file.`);
      return;
    }
    if (file.size > MAX_FILE_BYTES) {
      showMessage("error", "The file is too large.", `${file.name} is over ${MAX_FILE_BYTES / 1048576} MB.`);
      return;
    }
    try {
      const bytes = await file.arrayBuffer();
      $("text").value = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      showMessage("error", "Cannot read the file as UTF-8 text.", file.name);
      return;
    }
    $("file-name").textContent = file.name;
    clearMessage();
  }

  const hasFiles = (event) => Boolean(event.dataTransfer) && [...event.dataTransfer.types].includes("Files");

  function wireDrop() {
    const zone = $("dropzone");
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (event) => {
        if (!hasFiles(event)) return; // dragged text: the textarea takes it as usual
        event.preventDefault();
        zone.classList.add("dragging");
      });
    }
    zone.addEventListener("dragleave", (event) => {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
    });
    zone.addEventListener("drop", (event) => {
      zone.classList.remove("dragging");
      if (!hasFiles(event)) return;
      event.preventDefault();
      loadFile(event.dataTransfer.files[0]);
    });
    // A file dropped beside the box must not make the browser navigate away from the page.
    for (const type of ["dragover", "drop"]) {
      window.addEventListener(type, (event) => {
        if (hasFiles(event)) event.preventDefault();
      });
    }
  }

  // ------------------------------------------------------------ wiring

  function clearAll() {
    $("text").value = "";
    $("file").value = "";
    $("file-name").textContent = "";
    $("results").hidden = true;
    $("sentences").replaceChildren();
    state.result = null;
    clearMessage();
    $("text").focus();
  }

  function stamp() {
    return new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  }

  function init() {
    const keyInput = $("api-key");
    keyInput.value = storedKey();
    storeKey(keyInput.value);
    keyInput.addEventListener("input", () => storeKey(keyInput.value.trim()));
    $("forget-key").addEventListener("click", () => {
      keyInput.value = "";
      storeKey("");
    });
    $("analyze").addEventListener("click", analyze);
    $("clear").addEventListener("click", clearAll);
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) analyze();
    });
    $("file").addEventListener("change", (event) => loadFile(event.target.files[0]));
    $("download-json").addEventListener("click", () => {
      if (state.result) download(`claimlens-${stamp()}.json`, "application/json", `${JSON.stringify(state.result, null, 2)}\n`);
    });
    $("download-csv").addEventListener("click", () => {
      if (state.result) download(`claimlens-${stamp()}.csv`, "text/csv;charset=utf-8", toCsv(state.result.sentences));
    });
    wireDrop();
    document.documentElement.dataset.ready = "true"; // for tests: the handlers are in place
  }

  init();
})();
