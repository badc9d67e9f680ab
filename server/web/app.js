// dia-serve's page: streams raw PCM from POST /v1/audio/speech (stream_format "audio") and
// plays it through the Web Audio API as it arrives; progress comes from the request's status
// endpoint (GET /v1/audio/requests/{id}); the whole take is kept as a WAV for download.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: "dia", busy: null, takes: 0 };

function apiHeaders(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function setStatus(el, text, error) {
  el.textContent = text;
  el.classList.toggle("error", !!error);
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return resp.status + " " + resp.statusText;
}

async function loadServerInfo() {
  try {
    const r = await fetch("health");
    if (!r.ok) return;
    const h = await r.json();
    state.model = h.model || state.model;
    $("server-info").textContent = `Model ${h.model} on ${h.provider}, ${h.sample_rate / 1000} kHz.`;
  } catch (_) { /* the generate button reports connection problems */ }
}

async function loadVoices(select) {
  const r = await fetch("v1/audio/voices", { headers: apiHeaders(false) });
  if (!r.ok) {
    setStatus($("voice-status"), "Could not list voices: " + (await errorText(r)), true);
    return;
  }
  const list = (await r.json()).data || [];
  const sel = $("voice");
  const keep = select || sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const v of list) {
    const o = new Option(v.name, v.name);
    o.title = v.transcript;
    sel.add(o);
  }
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

async function uploadVoice() {
  const status = $("voice-status");
  const name = $("voice-name").value.trim();
  const transcript = $("voice-transcript").value.trim();
  const file = $("voice-file").files[0];
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) return setStatus(status, "Give a name of letters, digits, _ and -.", true);
  if (!transcript) return setStatus(status, "Give the recording's transcript.", true);
  if (!file) return setStatus(status, "Choose a WAV file.", true);
  const form = new FormData();
  form.append("name", name);
  form.append("transcript", transcript);
  form.append("file", file, file.name);
  setStatus(status, "Uploading…");
  const r = await fetch("v1/audio/voices", { method: "POST", body: form, headers: apiHeaders(false) });
  if (!r.ok) return setStatus(status, "Upload failed: " + (await errorText(r)), true);
  setStatus(status, `Voice ${name} added.`);
  await loadVoices(name);
}

function numberField(id, integer) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v)) throw new Error(`${id.replace(/_/g, " ")} is not a number`);
  return integer ? Math.round(v) : v;
}

function requestBody() {
  const body = {
    model: state.model,
    input: $("script").value,
    response_format: "pcm",
    stream_format: "audio",
  };
  const voice = $("voice").value;
  if (voice) body.voice = voice;
  const fields = { seed: true, temperature: false, top_p: false, cfg_scale: false, cfg_filter_top_k: true, max_tokens: true };
  for (const [id, integer] of Object.entries(fields)) {
    const v = numberField(id, integer);
    if (v !== undefined) body[id] = v;
  }
  return body;
}

// A complete 16-bit mono WAV file of the PCM chunks.
function wavBlob(chunks, rate) {
  const bytes = chunks.reduce((n, c) => n + c.byteLength, 0);
  const h = new DataView(new ArrayBuffer(44));
  const tag = (o, s) => [...s].forEach((ch, i) => h.setUint8(o + i, ch.charCodeAt(0)));
  tag(0, "RIFF"); h.setUint32(4, 36 + bytes, true); tag(8, "WAVE");
  tag(12, "fmt "); h.setUint32(16, 16, true); h.setUint16(20, 1, true); h.setUint16(22, 1, true);
  h.setUint32(24, rate, true); h.setUint32(28, rate * 2, true); h.setUint16(32, 2, true); h.setUint16(34, 16, true);
  tag(36, "data"); h.setUint32(40, bytes, true);
  return new Blob([h.buffer, ...chunks], { type: "audio/wav" });
}

function fmt(v, digits, unit) {
  return v === null || v === undefined ? "–" : v.toFixed(digits) + (unit || "");
}

function showProgress(p) {
  if (p.estimated_frames > 0) {
    $("progress").max = p.estimated_frames;
    $("progress").value = Math.min(p.frames, p.estimated_frames);
  }
  $("stat-frames").textContent = p.estimated_frames ? `${p.frames} / ~${p.estimated_frames}` : String(p.frames);
  $("stat-audio").textContent = fmt(p.samples / p.sample_rate, 2, " s");
  $("stat-rtf").textContent = fmt(p.realtime_factor, 2, "×");
  $("stat-ttfa").textContent = fmt(p.first_audio_seconds, 3, " s");
  if (p.segments > 1) setStatus($("status"), `Generating segment ${p.segment + 1} of ${p.segments}…`);
}

async function pollProgress(id, run) {
  while (!run.finished) {
    try {
      const r = await fetch(`v1/audio/requests/${id}`, { headers: apiHeaders(false) });
      if (r.ok) {
        const p = await r.json();
        run.progress = p;
        showProgress(p);
        if (p.state !== "queued" && p.state !== "running") break;
      }
    } catch (_) { /* the stream itself reports failures */ }
    await new Promise((res) => setTimeout(res, 250));
  }
}

function addTake(text, blob, info) {
  state.takes += 1;
  const url = URL.createObjectURL(blob);
  const li = document.createElement("li");
  const title = document.createElement("span");
  title.className = "text";
  title.textContent = text;
  title.title = text;
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.src = url;
  audio.setAttribute("aria-label", `Take ${state.takes}`);
  const link = document.createElement("a");
  link.href = url;
  link.download = `dia-${state.takes}.wav`;
  link.className = "download";
  link.textContent = `Download WAV (${info})`;
  li.append(title, audio, " ", link);
  $("history").prepend(li);
  $("history-empty").hidden = true;
  return url;
}

async function generate(ev) {
  if (ev) ev.preventDefault();
  if (state.busy) return;
  const status = $("status");
  let body;
  try {
    body = requestBody();
  } catch (e) {
    return setStatus(status, e.message, true);
  }
  if (!body.input.trim()) return setStatus(status, "Write a script first.", true);
  const run = { finished: false, progress: null, abort: new AbortController() };
  state.busy = run;
  document.body.dataset.state = "generating";
  $("generate").disabled = true;
  $("stop").disabled = false;
  $("progress").value = 0;
  for (const id of ["stat-frames", "stat-audio", "stat-rtf", "stat-ttfa", "stat-ttfa-client"]) $(id).textContent = "–";
  setStatus(status, "Waiting for the server…");
  const t0 = performance.now();
  let ctx = null;
  const chunks = [];
  let samples = 0;
  let rate = 44100;
  try {
    ctx = new (window.AudioContext || window.webkitAudioContext)();
    const resp = await fetch("v1/audio/speech", {
      method: "POST", headers: apiHeaders(true), body: JSON.stringify(body), signal: run.abort.signal,
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    const id = resp.headers.get("x-dia-request-id");
    rate = Number(resp.headers.get("x-dia-sample-rate")) || rate;
    setStatus(status, "Generating…");
    const polling = id ? pollProgress(id, run) : Promise.resolve();
    const reader = resp.body.getReader();
    let carry = null; // an odd byte left from the last read
    let playAt = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let bytes = value;
      if (carry !== null) {
        bytes = new Uint8Array(value.length + 1);
        bytes[0] = carry;
        bytes.set(value, 1);
        carry = null;
      }
      if (bytes.length % 2 === 1) {
        carry = bytes[bytes.length - 1];
        bytes = bytes.subarray(0, bytes.length - 1);
      }
      if (bytes.length === 0) continue;
      const pcm = new Int16Array(bytes.slice().buffer);
      chunks.push(pcm);
      if (samples === 0) $("stat-ttfa-client").textContent = fmt((performance.now() - t0) / 1000, 3, " s");
      samples += pcm.length;
      const buf = ctx.createBuffer(1, pcm.length, rate);
      const ch = buf.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
      const src = ctx.createBufferSource();
      src.buffer = buf;
      src.connect(ctx.destination);
      playAt = Math.max(playAt, ctx.currentTime + 0.05);
      src.start(playAt);
      playAt += buf.duration;
    }
    run.finished = true;
    await polling;
    const final = id ? await fetch(`v1/audio/requests/${id}`, { headers: apiHeaders(false) }) : null;
    if (final && final.ok) showProgress(await final.json());
    if (samples === 0) throw new Error("the server sent no audio");
    const seconds = samples / rate;
    const url = addTake(body.input, wavBlob(chunks, rate), `${seconds.toFixed(2)} s`);
    window.diaLastTake = { url, samples, rate, requestId: id };
    setStatus(status, `Done: ${seconds.toFixed(2)} s of audio in ${((performance.now() - t0) / 1000).toFixed(2)} s.`);
    document.body.dataset.state = "done";
  } catch (e) {
    run.finished = true;
    const stopped = e.name === "AbortError";
    if (stopped && samples > 0) {
      addTake(body.input, wavBlob(chunks, rate), `stopped, ${(samples / rate).toFixed(2)} s`);
    }
    setStatus(status, stopped ? "Stopped." : "Failed: " + e.message, !stopped);
    document.body.dataset.state = stopped ? "stopped" : "error";
  } finally {
    state.busy = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

function stop() {
  if (state.busy) state.busy.abort.abort();
}

function init() {
  $("api-key").value = localStorage.getItem("dia-api-key") || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem("dia-api-key", $("api-key").value.trim());
    loadVoices();
  });
  $("speech-form").addEventListener("submit", generate);
  $("stop").addEventListener("click", stop);
  $("voice-upload").addEventListener("click", () => uploadVoice().catch((e) => setStatus($("voice-status"), e.message, true)));
  $("example").addEventListener("change", (e) => {
    if (e.target.value) $("script").value = e.target.value;
  });
  $("script").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(e);
  });
  loadServerInfo();
  loadVoices().catch((e) => setStatus($("voice-status"), "Could not list voices: " + e.message, true));
  document.body.dataset.state = "ready";
}

init();
