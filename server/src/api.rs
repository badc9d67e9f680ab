//! The HTTP API, as OpenAI's: `POST /v1/audio/speech`, `GET /v1/models`, the voices, plus
//! `GET /health`, `GET /metrics`, a job status endpoint and the web page.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use dia_run::audio::{SampleStream, WavFormat};
use dia_run::script::ScriptPlan;
use dia_run::GenerateOptions;
use serde::Deserialize;

use crate::engine::{Engine, EngineError, Event, Handle, Job, Summary};
use crate::error::{parse_json, ApiError, ApiJson};
use crate::metrics::{Gauges, Metrics};
use crate::voices::{VoiceError, Voices};
use crate::web;

/// OpenAI's speech model names, taken as aliases of the served model so OpenAI clients work
/// unchanged.
pub const OPENAI_MODEL_ALIASES: [&str; 3] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"];

/// The API's limits and names.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The id `GET /v1/models` lists and `model` must name (or an OpenAI alias).
    pub model_name: String,
    /// Longest `input`, in characters.
    pub max_input_chars: usize,
    /// Longest audio of a whole-file (not streamed) response, in frames.
    pub max_buffered_frames: usize,
    /// Bearer token every `/v1/` request must carry, when set.
    pub api_key: Option<String>,
}

/// Everything the handlers share.
pub struct App {
    pub engine: Arc<Engine>,
    pub voices: Arc<Voices>,
    pub metrics: Arc<Metrics>,
    pub config: ApiConfig,
}

type AppState = State<Arc<App>>;

/// The whole server: API, page, health and metrics.
pub fn router(app: Arc<App>) -> Router {
    // Room for `max_input_chars` of 4-byte characters, JSON-escaped, and the other fields.
    let speech_limit = app.config.max_input_chars.saturating_mul(6) + (64 << 10);
    // Base64 in JSON, or multipart framing, around the largest upload.
    let voice_limit = app.voices.max_bytes().saturating_mul(4) / 3 + (64 << 10);
    let v1 = Router::new()
        .route(
            "/v1/audio/speech",
            post(speech).layer(DefaultBodyLimit::max(speech_limit)),
        )
        .route(
            "/v1/audio/voices",
            get(list_voices)
                .post(add_voice)
                .layer(DefaultBodyLimit::max(voice_limit)),
        )
        .route("/v1/audio/requests", get(list_requests))
        .route("/v1/audio/requests/{id}", get(request_status))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth));
    Router::new()
        .merge(v1)
        .route("/", get(web::index))
        .route("/app.js", get(web::script))
        .route("/style.css", get(web::style))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::status_with(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Counts every response by route and status.
async fn count(State(app): AppState, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let r = next.run(req).await;
    app.metrics.response(&route, r.status().as_u16());
    r
}

/// `Authorization: Bearer KEY` on `/v1/`, when the server has a key.
async fn auth(State(app): AppState, req: Request, next: Next) -> Response {
    let Some(key) = &app.config.api_key else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.trim().as_bytes(), key.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::unauthorized("incorrect API key").into_response(),
        None => ApiError::unauthorized("missing API key: send it as `Authorization: Bearer KEY`")
            .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(app): AppState) -> Json<serde_json::Value> {
    let e = &app.engine;
    Json(serde_json::json!({
        "status": "ok",
        "model": app.config.model_name,
        "provider": e.model().provider().name(),
        "sample_rate": e.model().sample_rate(),
        "running": e.running(),
        "queued": e.queued(),
        "max_concurrent": e.config().max_concurrent,
        "queue": e.config().queue,
        "batch": e.batch_slots(),
        "batch_text_len": e.batch_text_len(),
    }))
}

async fn metrics(State(app): AppState) -> impl IntoResponse {
    let e = &app.engine;
    let text = app.metrics.render(&Gauges {
        running: e.running(),
        queued: e.queued(),
        max_concurrent: e.config().max_concurrent,
        queue_capacity: e.config().queue,
        batch: e.batch_stats(),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

fn model_object(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "nari-labs"})
}

async fn models(State(app): AppState) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "object": "list",
        "data": [model_object(&app.config.model_name)],
    }))
}

async fn model(
    State(app): AppState,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if id == app.config.model_name {
        Ok(Json(model_object(&id)))
    } else {
        Err(ApiError::not_found(format!(
            "no model `{id}`; this server has `{}`",
            app.config.model_name
        )))
    }
}

async fn list_requests(State(app): AppState) -> Json<serde_json::Value> {
    let e = &app.engine;
    Json(serde_json::json!({
        "running": e.running(),
        "queued": e.queued(),
        "requests": e.live(),
    }))
}

async fn request_status(
    State(app): AppState,
    Path(id): Path<String>,
) -> Result<Json<crate::engine::Progress>, ApiError> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| app.engine.progress(id))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no request `{id}` (running or recent)")))
}

impl From<VoiceError> for ApiError {
    fn from(e: VoiceError) -> Self {
        match &e {
            VoiceError::Unknown { .. } => {
                ApiError::invalid_param("voice", "unknown_voice", e.to_string())
            }
            VoiceError::BadName(_) => {
                ApiError::invalid_param("name", "invalid_voice_name", e.to_string())
            }
            VoiceError::TooLarge { .. } => ApiError::too_large(e.to_string()),
            VoiceError::NoDirectory | VoiceError::Invalid(_) => ApiError::invalid(e.to_string()),
            VoiceError::Io(_) => ApiError::internal(e.to_string()),
        }
    }
}

async fn list_voices(State(app): AppState) -> Result<Json<serde_json::Value>, ApiError> {
    let voices = app.voices.clone();
    let list = tokio::task::spawn_blocking(move || voices.list())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(serde_json::json!({"object": "list", "data": list})))
}

/// A voice upload as JSON: the WAV file in base64.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoiceUpload {
    name: String,
    transcript: String,
    /// The WAV file, base64.
    audio: String,
}

/// `POST /v1/audio/voices`: multipart (`name`, `transcript`, `file`) or JSON (`name`,
/// `transcript`, `audio` as base64).
async fn add_voice(State(app): AppState, req: Request) -> Result<Response, ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (name, transcript, audio) = if multipart {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::status_with(e.status(), e.body_text()))?;
        let (mut name, mut transcript, mut audio) = (None, None, None);
        while let Some(field) = form.next_field().await.map_err(multipart_error)? {
            let key = field.name().unwrap_or_default().to_string();
            match key.as_str() {
                "name" => name = Some(field.text().await.map_err(multipart_error)?),
                "transcript" => transcript = Some(field.text().await.map_err(multipart_error)?),
                "file" | "audio" => audio = Some(field.bytes().await.map_err(multipart_error)?),
                other => {
                    return Err(ApiError::invalid_param(
                        other,
                        "unknown_field",
                        format!(
                            "unknown form field `{other}`: send `name`, `transcript` and `file`"
                        ),
                    ))
                }
            }
        }
        let missing = |f: &str| {
            ApiError::invalid_param(f, "missing_field", format!("the form has no `{f}` field"))
        };
        (
            name.ok_or_else(|| missing("name"))?,
            transcript.ok_or_else(|| missing("transcript"))?,
            audio.ok_or_else(|| missing("file"))?,
        )
    } else {
        let bytes = Bytes::from_request(req, &()).await?;
        let up: VoiceUpload = parse_json(&bytes)?;
        let audio = base64::engine::general_purpose::STANDARD
            .decode(up.audio.trim())
            .map_err(|e| {
                ApiError::invalid_param(
                    "audio",
                    "invalid_base64",
                    format!("`audio` is not base64: {e}"),
                )
            })?;
        (up.name, up.transcript, Bytes::from(audio))
    };
    let voices = app.voices.clone();
    let info = tokio::task::spawn_blocking(move || voices.add(&name, &transcript, &audio))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("the upload is too large: {}", e.body_text()))
    } else {
        ApiError::status_with(e.status(), format!("bad multipart form: {}", e.body_text()))
    }
}

/// `POST /v1/audio/speech`'s body: OpenAI's fields and Dia's knobs.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SpeechRequest {
    pub model: String,
    pub input: String,
    /// A voice of the voices directory; absent or empty: no voice prompt.
    #[serde(default)]
    pub voice: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub speed: Option<f64>,
    /// Absent: the whole file at once; `audio`: bytes as frames decode; `sse`: events.
    #[serde(default)]
    pub stream_format: Option<String>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub cfg_scale: Option<f32>,
    #[serde(default)]
    pub cfg_filter_top_k: Option<usize>,
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

/// What `response_format` may be.
pub const FORMATS: &str = "wav, pcm (16-bit little-endian mono at the model's rate, 44.1 kHz)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Wav,
    Pcm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Whole,
    Audio,
    Sse,
}

fn check(req: &SpeechRequest, app: &App) -> Result<(Format, Delivery), ApiError> {
    let cfg = &app.config;
    if req.model != cfg.model_name && !OPENAI_MODEL_ALIASES.contains(&req.model.as_str()) {
        return Err(ApiError::invalid_param(
            "model",
            "model_not_found",
            format!(
                "unknown model `{}`: this server has `{}` (also taken: {})",
                req.model.chars().take(80).collect::<String>(),
                cfg.model_name,
                OPENAI_MODEL_ALIASES.join(", ")
            ),
        ));
    }
    if req.input.trim().is_empty() {
        return Err(ApiError::invalid_param(
            "input",
            "empty_input",
            "`input` is empty: give the script, e.g. \"[S1] Hello. [S2] Hi!\"",
        ));
    }
    let chars = req.input.chars().count();
    if chars > cfg.max_input_chars {
        return Err(ApiError::invalid_param(
            "input",
            "input_too_long",
            format!(
                "`input` is {chars} characters long, more than this server's {}",
                cfg.max_input_chars
            ),
        ));
    }
    let format = match req.response_format.as_deref().unwrap_or("wav") {
        "wav" => Format::Wav,
        "pcm" => Format::Pcm,
        other => {
            return Err(ApiError::invalid_param(
                "response_format",
                "unsupported_response_format",
                format!(
                    "response_format `{}` is not supported; this server writes {FORMATS}",
                    other.chars().take(40).collect::<String>()
                ),
            ))
        }
    };
    if let Some(speed) = req.speed {
        if !(0.25..=4.0).contains(&speed) {
            return Err(ApiError::invalid_param(
                "speed",
                "invalid_speed",
                format!("`speed` must be between 0.25 and 4.0 (got {speed})"),
            ));
        }
        if speed != 1.0 {
            return Err(ApiError::invalid_param(
                "speed",
                "unsupported_speed",
                format!("`speed` {speed} is not supported: Dia speaks at its own pace, only 1.0 is taken"),
            ));
        }
    }
    if req
        .instructions
        .as_deref()
        .is_some_and(|i| !i.trim().is_empty())
    {
        return Err(ApiError::invalid_param(
            "instructions",
            "unsupported_instructions",
            "`instructions` is not supported by Dia: put non-verbal cues such as (laughs) in the input",
        ));
    }
    let delivery = match req.stream_format.as_deref() {
        None => Delivery::Whole,
        Some("audio") => Delivery::Audio,
        Some("sse") => Delivery::Sse,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "stream_format",
                "invalid_stream_format",
                format!(
                    "stream_format `{}` is not one of audio, sse",
                    other.chars().take(40).collect::<String>()
                ),
            ))
        }
    };
    Ok((format, delivery))
}

/// Makes the job of `req`, checking everything that can be checked before it runs.
fn job(req: SpeechRequest, app: &App, delivery: Delivery) -> Result<Job, ApiError> {
    let d = GenerateOptions::default();
    let options = GenerateOptions {
        max_tokens: req.max_tokens,
        cfg_scale: req.cfg_scale.unwrap_or(d.cfg_scale),
        temperature: req.temperature.unwrap_or(d.temperature),
        top_p: req.top_p.unwrap_or(d.top_p),
        cfg_filter_top_k: req.cfg_filter_top_k.unwrap_or(d.cfg_filter_top_k),
        seed: req.seed,
        ..d
    };
    let script = app.engine.script_options();
    let voice = match req.voice.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(app.voices.loader(app.voices.find(name)?)),
    };
    // The options and the text, checked now (the worker plans again, with the voice).
    ScriptPlan::new(app.engine.model(), &req.input, None, &options, &script)
        .map_err(|e| ApiError::from(EngineError::from(e)))?;
    Ok(Job {
        text: req.input,
        voice,
        options,
        script,
        max_frames: (delivery == Delivery::Whole).then_some(app.config.max_buffered_frames),
    })
}

fn pcm16(samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    SampleStream::raw(&mut out, WavFormat::Pcm16)
        .write(samples)
        .expect("writing to memory");
    out
}

/// The header of a WAV stream (sizes 0xFFFFFFFF, the length unknown).
fn stream_header(rate: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44);
    SampleStream::wav(&mut out, rate, WavFormat::Pcm16).expect("writing to memory");
    out
}

/// A complete 16-bit mono WAV file of `data` (s16le samples).
fn wav_file(rate: u32, data: &[u8]) -> Vec<u8> {
    let mut h = stream_header(rate);
    let len = data.len() as u32;
    h[4..8].copy_from_slice(&(36 + len).to_le_bytes());
    h[40..44].copy_from_slice(&len.to_le_bytes());
    h.extend_from_slice(data);
    h
}

fn header_value(v: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&v.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn speech(
    State(app): AppState,
    ApiJson(req): ApiJson<SpeechRequest>,
) -> Result<Response, ApiError> {
    let (format, delivery) = check(&req, &app)?;
    let input_bytes = req.input.len();
    let job = job(req, &app, delivery)?;
    let mut handle = app.engine.submit(job)?;
    let started = match handle.next().await {
        Some(Event::Started(s)) => s,
        Some(Event::Failed(e)) => return Err(e.into()),
        _ => return Err(ApiError::internal("the generation ended before it started")),
    };
    let rate = started.sample_rate;
    let mut headers = HeaderMap::new();
    headers.insert("x-dia-request-id", header_value(handle.id));
    headers.insert("x-dia-sample-rate", header_value(rate));
    headers.insert("x-dia-segments", header_value(started.segments));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    let mime = match format {
        Format::Wav => "audio/wav",
        Format::Pcm => "audio/pcm",
    };
    match delivery {
        Delivery::Whole => {
            let mut data = Vec::new();
            let summary = loop {
                match handle.next().await {
                    Some(Event::Audio(pcm)) => data.extend_from_slice(&pcm16(&pcm)),
                    Some(Event::Done(s)) => break s,
                    Some(Event::Failed(e)) => return Err(e.into()),
                    Some(Event::Started(_)) => {}
                    None => return Err(ApiError::internal("the generation stopped unexpectedly")),
                }
            };
            summary_headers(&mut headers, &summary);
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            let body = match format {
                Format::Wav => wav_file(rate, &data),
                Format::Pcm => data,
            };
            Ok((headers, body).into_response())
        }
        Delivery::Audio => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            let first = (format == Format::Wav).then(|| stream_header(rate));
            Ok((headers, Body::from_stream(audio_stream(handle, first))).into_response())
        }
        Delivery::Sse => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            let first = (format == Format::Wav).then(|| stream_header(rate));
            Ok((
                headers,
                Body::from_stream(sse_stream(handle, first, input_bytes)),
            )
                .into_response())
        }
    }
}

fn summary_headers(h: &mut HeaderMap, s: &Summary) {
    h.insert("x-dia-samples", header_value(s.samples));
    h.insert("x-dia-frames", header_value(s.frames));
    h.insert(
        "x-dia-audio-seconds",
        header_value(format!("{:.3}", s.audio_seconds)),
    );
    h.insert(
        "x-dia-generation-seconds",
        header_value(format!("{:.3}", s.generation_seconds)),
    );
    if let Some(t) = s.first_audio_seconds {
        h.insert("x-dia-first-audio-seconds", header_value(format!("{t:.3}")));
    }
}

/// The audio as it is generated; an error mid-way aborts the response (the client sees a
/// truncated body, never a wrong one).
fn audio_stream(
    handle: Handle,
    first: Option<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Some((handle, first)), |st| async move {
        let (mut handle, first) = st?;
        if let Some(h) = first {
            return Some((Ok(Bytes::from(h)), Some((handle, None))));
        }
        loop {
            match handle.next().await {
                Some(Event::Audio(pcm)) => {
                    return Some((Ok(Bytes::from(pcm16(&pcm))), Some((handle, None))))
                }
                Some(Event::Started(_)) => {}
                Some(Event::Done(_)) => return None,
                Some(Event::Failed(e)) => {
                    tracing::warn!(request = handle.id, "generation failed mid-stream: {e}");
                    return Some((Err(std::io::Error::other(e.to_string())), None));
                }
                None => {
                    return Some((
                        Err(std::io::Error::other("the generation stopped unexpectedly")),
                        None,
                    ))
                }
            }
        }
    })
}

fn sse(v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// OpenAI's speech events: `speech.audio.delta` with base64 audio, then `speech.audio.done`
/// with the usage (Dia's input tokens are the input's bytes, its output tokens the frames).
fn sse_stream(
    handle: Handle,
    first: Option<Vec<u8>>,
    input_tokens: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    futures_util::stream::unfold(Some((handle, first)), move |st| async move {
        let (mut handle, mut first) = st?;
        loop {
            match handle.next().await {
                Some(Event::Audio(pcm)) => {
                    let mut bytes = first.take().unwrap_or_default();
                    bytes.extend_from_slice(&pcm16(&pcm));
                    let ev =
                        serde_json::json!({"type": "speech.audio.delta", "audio": b64(&bytes)});
                    return Some((Ok(sse(&ev)), Some((handle, None))));
                }
                Some(Event::Started(_)) => {}
                Some(Event::Done(s)) => {
                    let ev = serde_json::json!({
                        "type": "speech.audio.done",
                        "usage": {
                            "input_tokens": input_tokens,
                            "output_tokens": s.frames,
                            "total_tokens": input_tokens + s.frames,
                        },
                    });
                    return Some((Ok(sse(&ev)), None));
                }
                Some(Event::Failed(e)) => {
                    let mut ev = ApiError::from(e).json();
                    ev["type"] = "error".into();
                    return Some((Ok(sse(&ev)), None));
                }
                None => {
                    let mut ev = ApiError::internal("the generation stopped unexpectedly").json();
                    ev["type"] = "error".into();
                    return Some((Ok(sse(&ev)), None));
                }
            }
        }
    })
}
