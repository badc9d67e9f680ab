#!/usr/bin/env python3
"""Checks of a running dia-serve, from outside, on loopback only. Every check is bounded in
requests and time, stops by itself and exits non-zero on any failure.

  server_check.py openai  --url URL   the official `openai` package against the server
  server_check.py bad     --url URL   a corpus of bad requests: each a 4xx with a clear message
  server_check.py load    --url URL [--clients 16 --requests 10]   concurrent streamed requests
  server_check.py soak    --url URL --pid PID [--requests 500]    resident memory stays flat
  server_check.py browser --url URL [--screenshot PNG]   the web page in headless Chromium

`openai` and `browser` need the packages of scripts/requirements-serve.txt (a venv); the
others only the standard library. Prints one JSON summary line per check on stdout.
"""

import argparse
import base64
import http.client
import io
import json
import math
import os
import struct
import sys
import threading
import time
import urllib.parse
import wave

MODEL = "dia"
# Short enough that the tiny test bundle says it in one generation.
TEXT = "[S1] Hello there. [S2] Hi!"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Client:
    """A tiny HTTP client on the standard library (loopback only)."""

    def __init__(self, url, key=None, timeout=120):
        u = urllib.parse.urlparse(url)
        check(u.hostname in ("127.0.0.1", "localhost", "::1"), f"{url}: only loopback is tested")
        self.host, self.port, self.key, self.timeout = u.hostname, u.port or 80, key, timeout

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, path, body=None, headers=None, json_body=None):
        h = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        if self.key:
            h.setdefault("Authorization", f"Bearer {self.key}")
        c = self.conn()
        try:
            try:
                c.request(method, path, body=body, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                # The server answered (e.g. 413) before taking the whole body: read that.
                pass
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            c.close()

    def json(self, path):
        status, _, data = self.request("GET", path)
        check(status == 200, f"GET {path}: {status} {data[:200]!r}")
        return json.loads(data)


def sine_wav(seconds=1.0, rate=22050):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(b"".join(struct.pack("<h", int(9000 * math.sin(i * 0.06))) for i in range(n)))
    return buf.getvalue()


def add_voice(client, name):
    status, _, data = client.request(
        "POST",
        "/v1/audio/voices",
        json_body={"name": name, "transcript": "[S1] A test voice.", "audio": base64.b64encode(sine_wav()).decode()},
    )
    check(status == 201, f"adding voice {name}: {status} {data[:300]!r}")


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# --- openai ---------------------------------------------------------------------------------


def run_openai(args):
    from openai import OpenAI

    c = Client(args.url, args.key)
    add_voice(c, "openai-test")
    client = OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=args.key or "not-needed", max_retries=0)
    results = {}

    # Whole file: the WAV's sample count is the server's.
    r = client.audio.speech.create(model=MODEL, voice="openai-test", input=TEXT, response_format="wav", extra_body={"seed": 1})
    data = r.content
    with wave.open(io.BytesIO(data)) as w:
        n = w.getnframes()
        check(w.getframerate() == 44100 and w.getnchannels() == 1 and w.getsampwidth() == 2, "WAV format")
    told = int(r.response.headers["x-dia-samples"])
    check(n == told > 0, f"create(): WAV holds {n} samples, the server says {told}")
    results["create_wav_samples"] = n

    # Streamed, WAV and PCM: the bytes as they come; the server's status says what it sent.
    for fmt in ("wav", "pcm"):
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="openai-test", input=TEXT, response_format=fmt, stream_format="audio", extra_body={"seed": 1}
        ) as resp:
            check(resp.status_code == 200, f"stream {fmt}: {resp.status_code}")
            rid = resp.headers["x-dia-request-id"]
            chunks = [b for b in resp.iter_bytes() if b]
        body = b"".join(chunks)
        if fmt == "wav":
            check(body[:4] == b"RIFF" and body[4:8] == b"\xff\xff\xff\xff", "streamed WAV header has unknown sizes")
            check(body[40:44] == b"\xff\xff\xff\xff", "streamed WAV data size is unknown")
            body = body[44:]
        samples = len(body) // 2
        st = c.json(f"/v1/audio/requests/{rid}")
        check(st["state"] == "done", f"stream {fmt}: state {st['state']}")
        check(samples == st["samples"] > 0, f"stream {fmt}: got {samples} samples, the server sent {st['samples']}")
        # The same seed: the same audio as the whole file.
        check(samples == n, f"stream {fmt}: {samples} samples, the whole file had {n}")
        results[f"stream_{fmt}_samples"] = samples
        results[f"stream_{fmt}_chunks"] = len(chunks)

    # An error the SDK raises as it should.
    import openai

    try:
        client.audio.speech.create(model=MODEL, voice="no-such-voice", input=TEXT, response_format="wav")
        fail("an unknown voice was accepted")
    except openai.BadRequestError as e:
        check("unknown voice" in str(e), f"unknown voice error: {e}")
    print(json.dumps({"check": "openai", "ok": True, **results}))


# --- bad requests ---------------------------------------------------------------------------


def multipart(fields, boundary="XyZbOuNdArY"):
    out = b""
    for name, value, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def bad_corpus(max_voice_bytes):
    ok = {"model": MODEL, "input": "[S1] Hi."}

    def speech(**kw):
        b = dict(ok)
        b.update(kw)
        return ("POST", "/v1/audio/speech", json.dumps(b).encode(), {"Content-Type": "application/json"})

    def raw(body, path="/v1/audio/speech", ctype="application/json", method="POST"):
        return (method, path, body, {"Content-Type": ctype} if ctype else {})

    def voice(name="x", transcript="[S1] x", audio=None):
        a = base64.b64encode(audio if audio is not None else sine_wav(0.5)).decode()
        return raw(json.dumps({"name": name, "transcript": transcript, "audio": a}).encode(), "/v1/audio/voices")

    wav = sine_wav(0.5)
    big_wav = sine_wav(max_voice_bytes / 44100 + 1)
    mp_ok, mp_headers = multipart([("name", b"x", None), ("transcript", b"[S1] x", None), ("file", b"not a wav at all", "x.wav")])
    mp_missing, _ = multipart([("name", b"x", None), ("file", wav, "x.wav")])
    mp_traversal, _ = multipart([("name", b"../../etc/x", None), ("transcript", b"[S1] x", None), ("file", wav, "x.wav")])
    return [
        ("truncated JSON", raw(b'{"model": "dia", "input": "[S1] Hi'), 400),
        ("empty body", raw(b""), 400),
        ("not an object", raw(b"[1, 2, 3]"), 400),
        ("not JSON at all", raw(b"model=dia&input=hi", ctype="application/x-www-form-urlencoded"), 400),
        ("deeply nested", raw(b'{"model": ' + b"[" * 5000 + b"]" * 5000 + b"}"), 400),
        ("input a number", speech(input=5), 400),
        ("model null", speech(model=None), 400),
        ("missing input", raw(b'{"model": "dia"}'), 400),
        ("temperature a string", speech(temperature="hot"), 400),
        ("seed negative", speech(seed=-1), 400),
        ("seed fractional", speech(seed=1.5), 400),
        ("NaN", raw(b'{"model": "dia", "input": "[S1] Hi.", "temperature": NaN}'), 400),
        ("Infinity", raw(b'{"model": "dia", "input": "[S1] Hi.", "top_p": Infinity}'), 400),
        ("huge temperature", raw(b'{"model": "dia", "input": "[S1] Hi.", "temperature": 1e39}'), 400),
        ("huge cfg_scale", raw(b'{"model": "dia", "input": "[S1] Hi.", "cfg_scale": 1e300}'), 400),
        ("huge max_tokens", raw(b'{"model": "dia", "input": "[S1] Hi.", "max_tokens": 1e30}'), 400),
        ("max_tokens past u64", raw(b'{"model": "dia", "input": "[S1] Hi.", "max_tokens": 18446744073709551616}'), 400),
        ("max_tokens past the model", speech(max_tokens=10**9), 400),
        ("max_tokens zero", speech(max_tokens=0), 400),
        ("cfg_filter_top_k zero", speech(cfg_filter_top_k=0), 400),
        ("top_p zero", speech(top_p=0), 400),
        ("negative temperature", speech(temperature=-1), 400),
        ("invalid UTF-8", raw(b'{"model": "dia", "input": "[S1] \xff\xfe\xc3"}'), 400),
        ("lone surrogate escape", raw(b'{"model": "dia", "input": "[S1] \\ud800"}'), 400),
        ("10 MB input", raw(json.dumps({"model": MODEL, "input": "a" * (10 << 20)}).encode()), 413),
        ("input past max chars", speech(input="[S1] " + "a" * 60_000), 400),
        ("empty input", speech(input="  "), 400),
        ("only tags", speech(input="[S1] [S2]"), 400),
        ("unknown field", speech(colour="red"), 400),
        ("unknown model", speech(model="gpt-5"), 400),
        ("mp3", speech(response_format="mp3"), 400),
        ("opus", speech(response_format="opus"), 400),
        ("speed 2", speech(speed=2.0), 400),
        ("speed 100", speech(speed=100), 400),
        ("stream_format bad", speech(stream_format="video"), 400),
        ("instructions", speech(instructions="happy"), 400),
        ("voice ../", speech(voice="../../etc/passwd"), 400),
        ("voice unknown", speech(voice="alloy"), 400),
        ("voice a number", speech(voice=3), 400),
        ("upload name ../", voice(name="../evil"), 400),
        ("upload name with /", voice(name="a/b"), 400),
        ("upload name too long", voice(name="a" * 65), 400),
        ("upload name empty", voice(name=""), 400),
        ("upload not a WAV", voice(audio=b"GIF89a" + b"\0" * 100), 400),
        ("upload truncated WAV", voice(audio=wav[:300]), 400),
        ("upload empty transcript", voice(transcript=" "), 400),
        ("upload bad base64", raw(b'{"name": "x", "transcript": "[S1] x", "audio": "%%%"}', "/v1/audio/voices"), 400),
        ("upload oversized", voice(audio=big_wav), 413),
        ("multipart not a WAV", ("POST", "/v1/audio/voices", mp_ok, mp_headers), 400),
        ("multipart missing transcript", ("POST", "/v1/audio/voices", mp_missing, mp_headers), 400),
        ("multipart name ../", ("POST", "/v1/audio/voices", mp_traversal, mp_headers), 400),
        ("multipart bad boundary", raw(b"garbage", "/v1/audio/voices", "multipart/form-data"), 400),
        ("unknown path", raw(b"", "/v1/nope", None, "GET"), 404),
        ("wrong method", raw(b"", "/v1/audio/speech", None, "GET"), 405),
        ("unknown request id", raw(b"", "/v1/audio/requests/999999999", None, "GET"), 404),
    ]


def run_bad(args):
    c = Client(args.url, args.key)
    health = c.json("/health")
    corpus = bad_corpus(args.max_voice_bytes)
    rows = []
    failures = []
    before = c.json("/v1/audio/voices")["data"]
    for name, (method, path, body, headers), want in corpus:
        status, h, data = c.request(method, path, body=body, headers=headers)
        try:
            err = json.loads(data)["error"]
            msg = err["message"]
            shape = isinstance(msg, str) and msg and "type" in err and "param" in err and "code" in err
        except (ValueError, KeyError, TypeError):
            msg, shape = data[:120], False
        good = 400 <= status < 500 and shape and (want is None or status == want)
        rows.append((name, status, msg if isinstance(msg, str) else repr(msg)))
        if not good:
            failures.append(f"{name}: {status} (wanted {want or '4xx'}) {msg!r}")
    after = c.json("/v1/audio/voices")["data"]
    if after != before:
        failures.append(f"bad uploads changed the voices: {before} -> {after}")
    h2 = c.json("/health")
    if h2["status"] != "ok":
        failures.append(f"unhealthy after the corpus: {h2}")
    status, h, data = c.request("POST", "/v1/audio/speech", json_body={"model": MODEL, "input": TEXT, "seed": 1})
    if status != 200 or int(h.get("x-dia-samples", 0)) <= 0:
        failures.append(f"a good request after the corpus: {status} {data[:200]!r}")
    if args.verbose:
        for name, status, msg in rows:
            print(f"{status}  {name:30s} {msg[:110]}", file=sys.stderr)
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    print(json.dumps({"check": "bad", "ok": not failures, "requests": len(corpus), "failures": len(failures), "provider": health["provider"]}))
    if failures:
        sys.exit(1)


# --- load -----------------------------------------------------------------------------------


def streamed(client, body):
    """One streamed request: (status, seconds to first audio byte, total seconds, samples)."""
    t0 = time.perf_counter()
    c = client.conn()
    try:
        h = {"Content-Type": "application/json"}
        if client.key:
            h["Authorization"] = f"Bearer {client.key}"
        c.request("POST", "/v1/audio/speech", body=json.dumps(body).encode(), headers=h)
        r = c.getresponse()
        if r.status != 200:
            r.read()
            return r.status, None, time.perf_counter() - t0, 0
        first, n = None, 0
        while True:
            b = r.read1(65536)
            if not b:
                break
            if first is None:
                first = time.perf_counter() - t0
            n += len(b)
        return 200, first, time.perf_counter() - t0, n // 2
    finally:
        c.close()


def run_load(args):
    c = Client(args.url, args.key, timeout=args.timeout)
    health = c.json("/health")
    body = {"model": MODEL, "input": TEXT, "response_format": "pcm", "stream_format": "audio", "seed": 7}
    if args.max_tokens:
        body["max_tokens"] = args.max_tokens
    results, lock = [], threading.Lock()
    errors = []

    def worker(k):
        for i in range(args.requests):
            try:
                res = streamed(c, body)
            except Exception as e:  # a transport failure is a failure of the server
                res = (0, None, 0.0, 0)
                with lock:
                    errors.append(f"client {k} request {i}: {e!r}")
            with lock:
                results.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.timeout * args.requests)
    wall = time.perf_counter() - t0
    check(not any(t.is_alive() for t in threads), "some clients never finished")
    by_status = {}
    for s, *_ in results:
        by_status[s] = by_status.get(s, 0) + 1
    ok = [r for r in results if r[0] == 200]
    lat = [r[2] for r in ok]
    ttfa = [r[1] for r in ok if r[1] is not None]
    samples = {r[3] for r in ok}
    summary = {
        "check": "load",
        "clients": args.clients,
        "requests_each": args.requests,
        "by_status": {str(k): v for k, v in sorted(by_status.items())},
        "wall_seconds": round(wall, 2),
        "latency_p50": percentile(lat, 50),
        "latency_p99": percentile(lat, 99),
        "first_audio_p50": percentile(ttfa, 50),
        "first_audio_p99": percentile(ttfa, 99),
        "audio_seconds_each": (max(samples) / 44100) if samples else None,
        "provider": health["provider"],
        "max_concurrent": health["max_concurrent"],
        "queue": health["queue"],
    }
    bad = {k: v for k, v in by_status.items() if k not in (200, 503)}
    same = len(samples) <= 1
    summary["ok"] = not bad and not errors and len(results) == args.clients * args.requests and bool(ok) and same
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}))
    for e in errors[:10]:
        print(f"FAIL: {e}", file=sys.stderr)
    check(not bad, f"statuses other than 200 and 503: {bad}")
    check(same, f"the same seeded request gave different lengths: {sorted(samples)}")
    check(summary["ok"], "load check failed")
    # Everything settles: no generation left running, nothing queued.
    deadline = time.time() + 10
    while True:
        h = c.json("/health")
        if h["running"] == 0 and h["queued"] == 0:
            break
        check(time.time() < deadline, f"still busy after the load: {h}")
        time.sleep(0.05)


# --- soak -----------------------------------------------------------------------------------


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    fail(f"no VmRSS for pid {pid}")


def run_soak(args):
    c = Client(args.url, args.key)
    body = {"model": MODEL, "input": TEXT, "seed": 3}
    if args.max_tokens:
        body["max_tokens"] = args.max_tokens
    samples = []
    t0 = time.perf_counter()
    warm = None
    for i in range(1, args.requests + 1):
        status, h, data = c.request("POST", "/v1/audio/speech", json_body=body)
        check(status == 200, f"request {i}: {status} {data[:200]!r}")
        if i == args.warmup:
            warm = rss_kb(args.pid)
        if i % args.every == 0 or i == args.requests:
            samples.append((i, rss_kb(args.pid)))
        check(time.perf_counter() - t0 < args.max_seconds, f"soak ran past {args.max_seconds} s")
    final = samples[-1][1]
    peak = max(kb for _, kb in samples if _ >= args.warmup)
    growth = (final - warm) / warm
    summary = {
        "check": "soak",
        "requests": args.requests,
        "seconds": round(time.perf_counter() - t0, 1),
        "rss_mb_after_warmup": round(warm / 1024, 1),
        "rss_mb_final": round(final / 1024, 1),
        "rss_mb_peak_after_warmup": round(peak / 1024, 1),
        "growth_percent": round(100 * growth, 2),
        "rss_mb_by_request": [(i, round(kb / 1024, 1)) for i, kb in samples],
        "ok": growth <= args.max_growth,
    }
    print(json.dumps(summary))
    check(summary["ok"], f"resident memory grew {100 * growth:.1f}% after warm-up (limit {100 * args.max_growth:.0f}%)")


# --- browser --------------------------------------------------------------------------------


def run_browser(args):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = args.chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
              "--window-size=1000,1300", "--use-fake-ui-for-media-stream", "--mute-audio"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=args.chromedriver))
    try:
        driver.set_script_timeout(60)
        driver.get(args.url.rstrip("/") + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.execute_script("return document.body.dataset.state") == "ready")
        check(driver.title == "Dia speech", f"title {driver.title!r}")
        # Every form control has a label.
        unlabelled = driver.execute_script(
            "return [...document.querySelectorAll('input, select, textarea')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)"
        )
        check(not unlabelled, f"controls without a label: {unlabelled}")
        # Upload a voice through the form, then pick it.
        wav_path = os.path.join(args.workdir, "browser-voice.wav")
        with open(wav_path, "wb") as f:
            f.write(sine_wav(1.0))
        driver.find_element(By.CSS_SELECTOR, "#upload summary").click()
        driver.find_element(By.ID, "voice-name").send_keys("browser")
        driver.find_element(By.ID, "voice-transcript").send_keys("[S1] A browser voice.")
        driver.find_element(By.ID, "voice-file").send_keys(wav_path)
        driver.find_element(By.ID, "voice-upload").click()
        wait.until(lambda d: "added" in d.find_element(By.ID, "voice-status").text)
        wait.until(lambda d: d.execute_script("return [...document.getElementById('voice').options].some(o => o.value === 'browser')"))
        # Settings: a seed, typed by keyboard.
        driver.find_element(By.CSS_SELECTOR, "#settings summary").click()
        seed = driver.find_element(By.ID, "seed")
        seed.clear()
        seed.send_keys("11")
        script = driver.find_element(By.ID, "script")
        script.clear()
        script.send_keys(TEXT)
        # Generate with the keyboard (Ctrl+Enter in the script), no voice first.
        script.send_keys(Keys.CONTROL, Keys.ENTER)
        wait.until(lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error"))
        check(driver.execute_script("return document.body.dataset.state") == "done",
              "generation failed: " + driver.find_element(By.ID, "status").text)
        # Then with the uploaded voice, by the Generate button.
        driver.execute_script("document.getElementById('voice').value = 'browser'")
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error"))
        check(driver.execute_script("return document.body.dataset.state") == "done",
              "generation with a voice failed: " + driver.find_element(By.ID, "status").text)
        takes = driver.find_elements(By.CSS_SELECTOR, "#history li")
        check(len(takes) == 2, f"{len(takes)} takes listed")
        # The downloadable WAV decodes in the page's own audio stack.
        res = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const take = window.diaLastTake;
            fetch(take.url).then(r => r.arrayBuffer()).then(buf => {
              const ctx = new AudioContext();
              return ctx.decodeAudioData(buf).then(a => done({duration: a.duration, length: a.length,
                rate: a.sampleRate, samples: take.samples, requestId: take.requestId}));
            }).catch(e => done({error: String(e)}));
            """
        )
        check("error" not in res, f"decodeAudioData: {res}")
        check(res["duration"] > 0, f"decoded duration {res['duration']}")
        expected = res["samples"] / 44100
        check(abs(res["duration"] - expected) < 0.01, f"decoded {res['duration']} s, streamed {expected} s")
        st = Client(args.url, args.key).json(f"/v1/audio/requests/{res['requestId']}")
        check(st["samples"] == res["samples"], f"the page got {res['samples']} samples, the server sent {st['samples']}")
        stats = {k: driver.find_element(By.ID, k).text for k in ("stat-frames", "stat-rtf", "stat-ttfa", "stat-ttfa-client")}
        check(all(v and v != "–" for v in stats.values()), f"progress not shown: {stats}")
        # The download link is a WAV of the take.
        link = driver.find_elements(By.CSS_SELECTOR, "#history li a.download")[0]
        check(link.get_attribute("download").endswith(".wav"), "download link")
        if args.screenshot:
            driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = false); window.scrollTo(0, 0)")
            driver.save_screenshot(args.screenshot)
        # Stop mid-stream: the page keeps what came, the server cancels the generation.
        script.clear()
        script.send_keys("[S1] This goes on and on for a while. [S2] It does, it really does. " * 20)
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "stat-ttfa-client").text not in ("", "\u2013"))
        driver.find_element(By.ID, "stop").click()
        wait.until(lambda d: d.execute_script("return document.body.dataset.state") in ("stopped", "done", "error"))
        check(driver.execute_script("return document.body.dataset.state") == "stopped",
              "stop: " + driver.find_element(By.ID, "status").text)
        c = Client(args.url, args.key)
        deadline = time.time() + 5
        while c.json("/health")["running"] != 0:
            check(time.time() < deadline, "the stopped generation kept running")
            time.sleep(0.05)
        check(len(driver.find_elements(By.CSS_SELECTOR, "#history li")) == 3, "the stopped take is listed")
        # An error is shown, not thrown: an unknown voice by hand.
        driver.execute_script("const o = new Option('gone', 'gone'); document.getElementById('voice').add(o); document.getElementById('voice').value = 'gone'")
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error"))
        check("unknown voice" in driver.find_element(By.ID, "status").text, "the page shows the server's error")
        logs = driver.get_log("browser")
        # The one expected failure: the unknown voice's 400.
        errors = [l for l in logs if l["level"] == "SEVERE" and "status of 400" not in l["message"]]
        check(not errors, f"console errors: {errors}")
        print(json.dumps({"check": "browser", "ok": True, "duration": res["duration"], "takes": len(takes), **stats}))
    finally:
        driver.quit()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("check", choices=["openai", "bad", "load", "soak", "browser"])
    p.add_argument("--url", required=True)
    p.add_argument("--key", default=os.environ.get("DIA_SERVE_API_KEY"))
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--pid", type=int)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--max-growth", type=float, default=0.05)
    p.add_argument("--max-seconds", type=float, default=1800)
    p.add_argument("--max-voice-bytes", type=int, default=10 << 20)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--screenshot")
    p.add_argument("--workdir", default="/tmp")
    args = p.parse_args()
    if args.check == "soak":
        check(args.pid, "soak needs --pid of the server")
        check(args.requests > args.warmup, "soak needs more requests than the warm-up")
    {"openai": run_openai, "bad": run_bad, "load": run_load, "soak": run_soak, "browser": run_browser}[args.check](args)


if __name__ == "__main__":
    main()
