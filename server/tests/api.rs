//! End-to-end tests of the server on loopback: the tiny fixture model exported once, a server
//! per test (its own limits), real HTTP through reqwest.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use dia_serve::{App, ServerConfig};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The tiny fixture model with its codec, exported once per test binary.
fn bundle() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bundle");
        let fixtures = repo_root().join("tests").join("fixtures");
        dia_export::export(&dia_export::ExportOptions {
            checkpoint: fixtures.join("tiny-nari"),
            out: out.clone(),
            dac: Some(fixtures.join("tiny-dac")),
            target: dia_graphs::Target::Fused,
            ..Default::default()
        })
        .expect("export the tiny bundle");
        (dir, out)
    })
    .1
}

fn model() -> Arc<dia_run::DiaModel> {
    static MODEL: OnceLock<Arc<dia_run::DiaModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                dia_run::DiaModel::load(
                    bundle(),
                    &dia_run::ModelOptions {
                        provider: dia_run::ExecutionProvider::Cpu,
                        threads: Some(1),
                        ..Default::default()
                    },
                )
                .expect("load the tiny bundle"),
            )
        })
        .clone()
}

struct Server {
    url: String,
    client: reqwest::Client,
    _voices: tempfile::TempDir,
}

impl Server {
    async fn start(edit: impl FnOnce(&mut ServerConfig)) -> Self {
        let voices = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            voices_dir: Some(voices.path().join("voices")),
            ..ServerConfig::default()
        };
        edit(&mut config);
        let app = App::new(model(), config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, dia_serve::api::router(app))
                .await
                .unwrap()
        });
        Server {
            url: format!("http://{addr}"),
            client: reqwest::Client::new(),
            _voices: voices,
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn speech(&self, body: Value) -> reqwest::Response {
        self.post("/v1/audio/speech")
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

/// Checks an error response: its status and OpenAI's error shape, the message containing
/// `want`.
async fn expect_error(r: reqwest::Response, status: u16, want: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status for {want}");
    assert!(
        header(&r, "content-type").starts_with("application/json"),
        "{want}"
    );
    let v: Value = r.json().await.unwrap();
    let e = &v["error"];
    let msg = e["message"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(msg.contains(want), "{msg:?} does not say {want:?}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    v
}

fn sine_wav(seconds: f64, rate: u32) -> Vec<u8> {
    let mut c = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
    for i in 0..(seconds * rate as f64) as usize {
        w.write_sample(((i as f64 * 0.06).sin() * 9000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    c.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_wav_and_pcm() {
    let s = Server::start(|_| {}).await;
    let r = s
        .speech(json!({"model": "dia", "input": "[S1] Hello there. [S2] Hi!", "seed": 3}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "audio/wav");
    assert_eq!(header(&r, "x-dia-sample-rate"), "44100");
    let samples: usize = header(&r, "x-dia-samples").parse().unwrap();
    let frames: usize = header(&r, "x-dia-frames").parse().unwrap();
    assert!(samples > 0 && frames > 0);
    let body = r.bytes().await.unwrap();
    let wav = hound::WavReader::new(std::io::Cursor::new(body.to_vec())).unwrap();
    assert_eq!(wav.spec().sample_rate, 44100);
    assert_eq!(wav.len() as usize, samples);

    // The same seed through an OpenAI model alias, as raw PCM: the same samples.
    let r = s
        .speech(
            json!({"model": "tts-1", "input": "[S1] Hello there. [S2] Hi!", "seed": 3,
                       "response_format": "pcm", "speed": 1.0}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "audio/pcm");
    let pcm = r.bytes().await.unwrap();
    assert_eq!(pcm.len(), 2 * samples);
    assert_eq!(&pcm[..], &body[44..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_audio_and_sse() {
    let s = Server::start(|_| {}).await;
    let r = s
        .speech(
            json!({"model": "dia", "input": "[S1] Streaming, please.", "seed": 5,
                       "stream_format": "audio"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-dia-request-id");
    let mut body = Vec::new();
    let mut chunks = 0;
    let mut r = r;
    while let Some(c) = r.chunk().await.unwrap() {
        body.extend_from_slice(&c);
        chunks += 1;
    }
    assert!(chunks > 2, "{chunks} chunks");
    assert_eq!(&body[..4], b"RIFF");
    assert_eq!(&body[4..8], &u32::MAX.to_le_bytes());
    assert_eq!(&body[40..44], &u32::MAX.to_le_bytes());
    let streamed = (body.len() - 44) / 2;
    assert!(streamed > 0);
    // The status endpoint reports what was sent.
    let st = s.get_json(&format!("/v1/audio/requests/{id}")).await;
    assert_eq!(st["state"], "done", "{st}");
    assert_eq!(st["samples"].as_u64().unwrap() as usize, streamed);
    assert!(st["first_audio_seconds"].as_f64().unwrap() > 0.0);

    // The same request as a whole file: the same audio.
    let whole = s
        .speech(json!({"model": "dia", "input": "[S1] Streaming, please.", "seed": 5}))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&whole[44..], &body[44..]);

    // SSE: deltas of base64 PCM, then done with the usage.
    let r = s
        .speech(
            json!({"model": "dia", "input": "[S1] Streaming, please.", "seed": 5,
                       "stream_format": "sse", "response_format": "pcm"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    let text = r.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data line")).unwrap())
        .collect();
    let (last, deltas) = events.split_last().unwrap();
    assert!(deltas.len() > 2);
    let mut pcm = Vec::new();
    for d in deltas {
        assert_eq!(d["type"], "speech.audio.delta");
        pcm.extend(
            base64::engine::general_purpose::STANDARD
                .decode(d["audio"].as_str().unwrap())
                .unwrap(),
        );
    }
    assert_eq!(&pcm[..], &body[44..]);
    assert_eq!(last["type"], "speech.audio.done");
    let usage = &last["usage"];
    assert_eq!(usage["input_tokens"], "[S1] Streaming, please.".len());
    assert!(usage["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_input_is_segmented() {
    let s = Server::start(|_| {}).await;
    // The tiny bundle's text window is 64 bytes: this takes several segments.
    let input = "[S1] One sentence here. [S2] Another one there. [S1] And a third one to finish. [S2] Done now.";
    let r = s
        .speech(json!({"model": "dia", "input": input, "seed": 1}))
        .await;
    assert_eq!(r.status(), 200);
    let segments: usize = header(&r, "x-dia-segments").parse().unwrap();
    assert!(segments > 1, "{segments} segments");
    assert!(header(&r, "x-dia-samples").parse::<usize>().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let s = Server::start(|c| {
        c.api.max_input_chars = 200;
        c.api.max_buffered_frames = 300;
    })
    .await;
    let ok = json!({"model": "dia", "input": "[S1] Hi."});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("voice", json!("alloy")), 400, "unknown voice `alloy`"),
        (
            with("response_format", json!("mp3")),
            400,
            "writes wav, pcm",
        ),
        (with("response_format", json!("flac")), 400, "not supported"),
        (with("speed", json!(1.5)), 400, "only 1.0"),
        (with("speed", json!(10)), 400, "between 0.25 and 4.0"),
        (
            with("stream_format", json!("video")),
            400,
            "not one of audio, sse",
        ),
        (
            with("instructions", json!("cheerful")),
            400,
            "not supported by Dia",
        ),
        (with("input", json!("   ")), 400, "`input` is empty"),
        (with("input", json!("a".repeat(201))), 400, "201 characters"),
        (
            with("input", json!("[S1] Quite a long script. ".repeat(7))),
            400,
            "ask for it streamed",
        ),
        (with("model", json!("gpt-5")), 400, "unknown model"),
        (
            with("temperature", json!("hot")),
            400,
            "`temperature`: invalid type",
        ),
        (with("temperature", json!(1e300)), 400, "temperature"),
        (with("top_p", json!(2.0)), 400, "`top_p` must be in (0, 1]"),
        (with("max_tokens", json!(-1)), 400, "`max_tokens`"),
        (
            with("max_tokens", json!(100000)),
            400,
            "`max_tokens` 100000 must be between 1 and",
        ),
        (with("seed", json!(1.5)), 400, "`seed`"),
        (with("colour", json!("red")), 400, "unknown field `colour`"),
        (json!({"input": "[S1] Hi."}), 400, "missing field `model`"),
        (json!([1, 2]), 400, "invalid type"),
    ];
    for (body, status, want) in cases {
        expect_error(s.speech(body).await, status, want).await;
    }
    let raw = |b: &'static [u8]| {
        s.post("/v1/audio/speech")
            .header("content-type", "application/json")
            .body(b)
            .send()
    };
    expect_error(
        raw(b"{\"model\": \"dia\", \"inp").await.unwrap(),
        400,
        "not complete JSON",
    )
    .await;
    expect_error(
        raw(b"{\"model\": NaN}").await.unwrap(),
        400,
        "not valid JSON",
    )
    .await;
    expect_error(
        raw(b"{\"model\": \"dia\", \"input\": \"\xff\xfe\"}")
            .await
            .unwrap(),
        400,
        "JSON",
    )
    .await;
    // Far past the body limit.
    let big = format!(r#"{{"model": "dia", "input": "{}"}}"#, "a".repeat(2 << 20));
    expect_error(
        s.post("/v1/audio/speech").body(big).send().await.unwrap(),
        413,
        "larger than",
    )
    .await;
    let r = s
        .client
        .get(format!("{}/v1/nope", s.url))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "no such endpoint").await;
    let r = s
        .client
        .get(format!("{}/v1/audio/speech", s.url))
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "not allowed").await;
    // Still healthy, and still serving.
    assert_eq!(s.get_json("/health").await["status"], "ok");
    assert_eq!(s.speech(ok).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key() {
    let s = Server::start(|c| c.api.api_key = Some("sekrit".into())).await;
    let body = json!({"model": "dia", "input": "[S1] Hi."});
    let r = s.speech(body.clone()).await;
    assert_eq!(header(&r, "www-authenticate"), "Bearer");
    expect_error(r, 401, "missing API key").await;
    let r = s
        .post("/v1/audio/speech")
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "incorrect API key").await;
    let r = s
        .post("/v1/audio/speech")
        .bearer_auth("sekrit")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The page, health and metrics need no key.
    assert_eq!(s.get_json("/health").await["status"], "ok");
}

/// A request that generates for a while: many segments.
fn long_request() -> Value {
    let input = "[S1] This goes on and on for a while. [S2] It does, it really does. ".repeat(20);
    json!({"model": "dia", "input": input, "stream_format": "audio", "response_format": "pcm"})
}

async fn wait_idle(s: &Server, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let h = s.get_json("/health").await;
        if h["running"] == 0 && h["queued"] == 0 {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "still busy after {within:?}: {h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_then_disconnect_frees_the_slot() {
    let s = Server::start(|c| {
        c.engine.max_concurrent = 1;
        c.engine.queue = 1;
    })
    .await;
    // One running, one waiting: the third is refused.
    let mut first = s.speech(long_request()).await;
    assert_eq!(first.status(), 200);
    let id = header(&first, "x-dia-request-id");
    assert!(!first.chunk().await.unwrap().unwrap().is_empty());
    let waiting = {
        let req = s.post("/v1/audio/speech").json(&long_request());
        tokio::spawn(async move { req.send().await })
    };
    let t = Instant::now();
    while s.get_json("/health").await["queued"] != 1 {
        assert!(t.elapsed() < Duration::from_secs(10), "never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = s.speech(long_request()).await;
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!(retry >= 1);
    expect_error(r, 503, "busy").await;

    // The waiting client gives up: it leaves the queue.
    waiting.abort();
    let t = Instant::now();
    while s.get_json("/health").await["queued"] != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the queue kept a gone client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The running client disconnects mid-stream: the generation stops, the slot is freed.
    let st = s.get_json(&format!("/v1/audio/requests/{id}")).await;
    assert_eq!(st["state"], "running", "{st}");
    drop(first);
    let took = wait_idle(&s, Duration::from_secs(5)).await;
    let st = s.get_json(&format!("/v1/audio/requests/{id}")).await;
    assert_eq!(st["state"], "cancelled", "{st}");
    assert!(
        st["frames"].as_u64().unwrap() < st["estimated_frames"].as_u64().unwrap(),
        "{st}"
    );
    eprintln!("slot freed {took:?} after the disconnect");
    // The batch's row too: the scheduler drops the request at its next frames.
    let t = Instant::now();
    loop {
        let m = s
            .client
            .get(format!("{}/metrics", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.lines().any(|l| l == "dia_batch_active 0") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the batch kept a row:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = s
        .client
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dia_speech_jobs_total{outcome=\"cancelled\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("dia_running_generations 0"), "{metrics}");
    assert!(
        metrics.contains("dia_http_responses_total{route=\"/v1/audio/speech\",status=\"503\"} 1"),
        "{metrics}"
    );
    // And the next request is served.
    let r = s
        .speech(json!({"model": "dia", "input": "[S1] Next!"}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "x-dia-samples").parse::<usize>().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_file_client_gone_cancels() {
    let s = Server::start(|_| {}).await;
    let mut body = long_request();
    body.as_object_mut().unwrap().remove("stream_format");
    let req = s.post("/v1/audio/speech").json(&body);
    let client = tokio::spawn(async move { req.send().await });
    let t = Instant::now();
    while s.get_json("/health").await["running"] != 1 {
        assert!(t.elapsed() < Duration::from_secs(10), "never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.abort();
    wait_idle(&s, Duration::from_secs(5)).await;
    let live = s.get_json("/v1/audio/requests").await;
    assert_eq!(live["requests"].as_array().unwrap().len(), 0, "{live}");
    let st = s.get_json("/v1/audio/requests/1").await;
    assert_eq!(st["state"], "cancelled", "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voices_upload_list_and_use() {
    let s = Server::start(|c| c.max_voice_bytes = 200_000).await;
    let wav = sine_wav(1.0, 22050);
    // Multipart.
    let form = reqwest::multipart::Form::new()
        .text("name", "alice")
        .text("transcript", "[S1] A test voice.")
        .part(
            "file",
            reqwest::multipart::Part::bytes(wav.clone()).file_name("alice.wav"),
        );
    let r = s
        .post("/v1/audio/voices")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // JSON with base64.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&wav);
    let r = s
        .post("/v1/audio/voices")
        .json(&json!({"name": "bob-2", "transcript": "[S2] Another.", "audio": b64}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let list = s.get_json("/v1/audio/voices").await;
    let names: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alice", "bob-2"]);
    assert_eq!(list["data"][0]["transcript"], "[S1] A test voice.");

    // Spoken in a voice (twice: the second from the cache), the same audio.
    let body = json!({"model": "dia", "input": "[S1] In her voice.", "voice": "alice", "seed": 2});
    let a = s.speech(body.clone()).await;
    assert_eq!(a.status(), 200);
    let a = a.bytes().await.unwrap();
    let b = s.speech(body).await.bytes().await.unwrap();
    assert_eq!(a, b);
    assert!(a.len() > 44);
    let e = expect_error(
        s.speech(json!({"model": "dia", "input": "[S1] Hi.", "voice": "carol"}))
            .await,
        400,
        "available: alice, bob-2",
    )
    .await;
    assert_eq!(e["error"]["param"], "voice");

    // A recording longer than the model's whole budget: refused when it is used, saying why.
    let long = base64::engine::general_purpose::STANDARD.encode(sine_wav(4.0, 8000));
    let r = s
        .post("/v1/audio/voices")
        .json(&json!({"name": "long", "transcript": "[S1] Long.", "audio": long}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    expect_error(
        s.speech(json!({"model": "dia", "input": "[S1] Hi.", "voice": "long"}))
            .await,
        400,
        "voice prompt (345 frames) leaves no room",
    )
    .await;

    // Bad uploads.
    let up = |name: &str, audio: &[u8]| {
        s.post("/v1/audio/voices")
            .json(&json!({"name": name, "transcript": "[S1] x",
                          "audio": base64::engine::general_purpose::STANDARD.encode(audio)}))
            .send()
    };
    expect_error(
        up("../evil", &wav).await.unwrap(),
        400,
        "invalid voice name",
    )
    .await;
    expect_error(
        up("x", b"GIF89a not a wav").await.unwrap(),
        400,
        "not a WAV",
    )
    .await;
    expect_error(
        up("x", &wav[..200]).await.unwrap(),
        400,
        "not a readable WAV",
    )
    .await;
    expect_error(
        up("x", &sine_wav(5.0, 22050)).await.unwrap(),
        413,
        "more than the 200000",
    )
    .await;
    expect_error(
        up("x", &sine_wav(60.0, 22050)).await.unwrap(),
        413,
        "larger than",
    )
    .await;
    let r = s
        .post("/v1/audio/voices")
        .json(&json!({"name": "x", "transcript": "[S1] x", "audio": "%%%"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "not base64").await;
    let list = s.get_json("/v1/audio/voices").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_page_metrics() {
    let s = Server::start(|_| {}).await;
    let m = s.get_json("/v1/models").await;
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "dia");
    assert_eq!(s.get_json("/v1/models/dia").await["object"], "model");
    let page = s.client.get(&s.url).send().await.unwrap();
    assert!(header(&page, "content-type").starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<textarea") && html.contains("app.js"));
    for (path, mime) in [("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let r = s
            .client
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(header(&r, "content-type").starts_with(mime));
    }
    assert_eq!(
        s.speech(json!({"model": "dia", "input": "[S1] Count me."}))
            .await
            .status(),
        200
    );
    // The job is counted when its worker ends, which may be just after the response's last
    // byte: wait for it (a loaded machine can take a moment).
    let mut text = String::new();
    for _ in 0..100 {
        text = s
            .client
            .get(format!("{}/metrics", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("dia_speech_jobs_total{outcome=\"done\"} 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for want in [
        "dia_http_responses_total{route=\"/v1/audio/speech\",status=\"200\"} 1",
        "dia_speech_jobs_total{outcome=\"done\"} 1",
        "dia_queue_depth 0",
        "dia_time_to_first_audio_seconds_count 1",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    let fps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("dia_frames_per_second "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(fps > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_generations_match_sequential_ones() {
    let s = Server::start(|c| c.engine.max_concurrent = 2).await;
    let body =
        |seed: u64| json!({"model": "dia", "input": "[S1] Two at once. [S2] Fine.", "seed": seed});
    let mut alone = Vec::new();
    for seed in [1, 2] {
        alone.push(s.speech(body(seed)).await.bytes().await.unwrap());
    }
    let (a, b) = tokio::join!(s.speech(body(1)), s.speech(body(2)));
    let (a, b) = (a.bytes().await.unwrap(), b.bytes().await.unwrap());
    assert_eq!(a, alone[0]);
    assert_eq!(b, alone[1]);
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_decode_together_and_equal_each_alone() {
    // The default engine batches (the fixture bundle is fused); the other decodes a request
    // per thread.
    let batched = Server::start(|c| c.engine.max_concurrent = 2).await;
    let threads = Server::start(|c| {
        c.engine.max_concurrent = 2;
        c.engine.batch = false;
    })
    .await;
    assert_eq!(batched.get_json("/health").await["batch"], 2);
    assert!(threads.get_json("/health").await["batch"].is_null());
    let b64 = base64::engine::general_purpose::STANDARD.encode(sine_wav(0.5, 22050));
    for s in [&batched, &threads] {
        let r = s
            .post("/v1/audio/voices")
            .json(&json!({"name": "v", "transcript": "[S1] A voice.", "audio": b64}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Several segments each (the carried prompts too), one in a voice.
    let input = "[S1] One sentence here. [S2] Another one there. [S1] And a third one to \
                 finish. [S2] Done now, or nearly. [S1] Yes.";
    let bodies = [
        json!({"model": "dia", "input": input, "seed": 7, "response_format": "pcm"}),
        json!({"model": "dia", "input": input, "seed": 8, "voice": "v",
               "response_format": "pcm"}),
    ];
    let pcm = |s: &Server, body: Value| {
        let req = s.post("/v1/audio/speech").json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let segments: usize = header(&r, "x-dia-segments").parse().unwrap();
            (segments, r.bytes().await.unwrap())
        }
    };
    let mut alone = Vec::new();
    for body in &bodies {
        let (segments, a) = pcm(&batched, body.clone()).await;
        assert!(segments > 1, "{segments} segments");
        // A thread of its own makes the same audio.
        let (_, t) = pcm(&threads, body.clone()).await;
        assert_eq!(a, t, "batched alone vs a thread of its own");
        alone.push(a);
    }
    assert_ne!(alone[0], alone[1]);
    let before = batched.get_json("/health").await;
    assert_eq!(before["running"], 0, "{before}");
    let ((_, a), (_, b)) = tokio::join!(
        pcm(&batched, bodies[0].clone()),
        pcm(&batched, bodies[1].clone())
    );
    assert_eq!(a, alone[0], "decoded together vs alone");
    assert_eq!(b, alone[1], "decoded together vs alone");

    // The scheduler decoded both in the rows of the same steps.
    let metrics = batched
        .client
        .get(format!("{}/metrics", batched.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("dia_batch_peak"), 2.0, "{metrics}");
    assert!(
        value("dia_batch_utterance_steps_total") > value("dia_batch_steps_total"),
        "{metrics}"
    );
    assert!(metrics.contains("dia_speech_jobs_total{outcome=\"done\"} 4"));
    // The thread-per-request engine has no batch to report.
    let metrics = threads
        .client
        .get(format!("{}/metrics", threads.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("dia_batch_steps_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_batch_text_length_splits_scripts_to_fit() {
    let whole = Server::start(|_| {}).await;
    let short = Server::start(|c| c.engine.batch_text_len = Some(32)).await;
    let h = short.get_json("/health").await;
    assert_eq!(h["batch_text_len"], 32, "{h}");
    assert_eq!(whole.get_json("/health").await["batch_text_len"], 64);
    // 44 tokens: one generation in the bundle's window (64), two segments in 32.
    let input = "[S1] Hello there. [S2] How are you doing now?";
    let body = json!({"model": "dia", "input": input, "seed": 4, "max_tokens": 120});
    let segments = |r: &reqwest::Response| header(r, "x-dia-segments").parse::<usize>().unwrap();
    let a = whole.speech(body.clone()).await;
    let b = short.speech(body).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert!(
        segments(&b) > segments(&a),
        "{} vs {}",
        segments(&b),
        segments(&a)
    );
    assert!(header(&b, "x-dia-samples").parse::<usize>().unwrap() > 0);
}
