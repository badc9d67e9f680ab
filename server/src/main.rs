//! `dia-serve --bundle DIR`: an OpenAI-compatible speech server (`POST /v1/audio/speech`) with
//! a web page at `/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use dia_run::codec::ChunkSizes;
use dia_run::{DiaModel, ExecutionProvider, ModelOptions};
use dia_serve::{ApiConfig, App, EngineConfig, ServerConfig};

/// Serve a Dia ONNX bundle over HTTP, as OpenAI's speech API.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Bundle directory written by dia-export (with --dac).
    #[arg(long)]
    bundle: PathBuf,
    /// Execution provider: auto, cpu, cuda, coreml.
    #[arg(long, default_value = "auto")]
    ep: ExecutionProvider,
    /// With --ep cuda: capture the decoder step as a CUDA graph (generations take turns whole).
    #[arg(long)]
    cuda_graph: bool,
    /// Intra-op threads for ONNX Runtime (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the one taken is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Voices directory: NAME.wav + NAME.txt (its transcript) per voice; created when missing.
    #[arg(long)]
    voices: Option<PathBuf>,
    /// Require `Authorization: Bearer KEY` on /v1/ (the page, /health and /metrics stay open).
    #[arg(long, env = "DIA_SERVE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Generations running at once (default 1: on the CPU one already uses every core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent: Option<u32>,
    /// Slots of the batching scheduler: generations decoded together, in the rows of one
    /// decoder step (so also the generations running at once). Default: --max-concurrent's
    /// when that is more than 1, else 0 (a batch of one shares nothing and reads the whole
    /// text window every step). 0: no scheduler, each generation decodes on a thread of its
    /// own (what bundles whose step takes one utterance get anyway).
    #[arg(long)]
    batch: Option<u32>,
    /// Text tokens each batch slot reads every step (rounded up to the bundle's bucket);
    /// default: the bundle's whole window. Shorter makes a large batch's steps cheaper, and
    /// long inputs are then split into more, shorter segments.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch_text_len: Option<u32>,
    /// Requests waiting for a slot at most; beyond that the server answers 503 with Retry-After.
    #[arg(long, default_value_t = 16)]
    queue: u32,
    /// Longest `input`, in characters.
    #[arg(long, default_value_t = 50_000)]
    max_input_chars: usize,
    /// Longest audio of a whole-file (not streamed) response, in seconds.
    #[arg(long, default_value_t = 600)]
    max_buffered_seconds: u32,
    /// Largest voice upload, in bytes.
    #[arg(long, default_value_t = 10 << 20)]
    max_voice_bytes: usize,
    /// Longest voice recording, in seconds (at least 0.1).
    #[arg(long, default_value_t = 30.0, value_parser = parse_voice_seconds)]
    max_voice_seconds: f64,
    /// Model id listed by /v1/models and expected in requests (OpenAI's tts-1, tts-1-hd and
    /// gpt-4o-mini-tts are taken too).
    #[arg(long, default_value = "dia")]
    model_name: String,
    /// Frames of audio (11.6 ms each) in the first streamed chunk.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    first_chunk_frames: u32,
    /// Frames of audio in each later chunk.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    chunk_frames: u32,
}

/// `--max-voice-seconds`: a finite number of at least 0.1 (the shortest recording taken).
fn parse_voice_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.1 => Ok(v),
        Ok(_) => Err("must be at least 0.1".into()),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ort=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (max_concurrent, batch) = match (args.batch, args.max_concurrent) {
        (None, m) => {
            let m = m.unwrap_or(1);
            (m, m > 1)
        }
        (Some(0), m) => (m.unwrap_or(1), false),
        (Some(b), None) => (b, true),
        (Some(b), Some(m)) if b == m => (b, true),
        (Some(b), Some(m)) => anyhow::bail!(
            "--batch {b} and --max-concurrent {m} disagree: with batching, the scheduler's slots \
             are the generations running at once (give one of them, or --batch 0 for a thread \
             per generation)"
        ),
    };
    let model = DiaModel::load(
        &args.bundle,
        &ModelOptions {
            threads: args.threads.map(|t| t as usize),
            provider: args.ep,
            cuda_graph: args.cuda_graph,
            ..ModelOptions::default()
        },
    )
    .with_context(|| format!("loading the bundle {}", args.bundle.display()))?;
    for w in model.warnings() {
        tracing::warn!("{w}");
    }
    model.require_codec("serve speech")?;
    let window = model.manifest().max_text_len;
    if let Some(t) = args.batch_text_len.filter(|&t| t as usize > window) {
        anyhow::bail!("--batch-text-len {t} is more than the bundle's text window of {window}");
    }
    let rate = model.sample_rate();
    let config = ServerConfig {
        engine: EngineConfig {
            max_concurrent: max_concurrent as usize,
            batch,
            batch_text_len: args.batch_text_len.map(|t| t as usize),
            queue: args.queue as usize,
            chunks: ChunkSizes {
                first: args.first_chunk_frames as usize,
                rest: args.chunk_frames as usize,
            },
            ..EngineConfig::default()
        },
        api: ApiConfig {
            model_name: args.model_name.clone(),
            max_input_chars: args.max_input_chars,
            max_buffered_frames: (args.max_buffered_seconds as usize * rate as usize) / 512,
            api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        },
        voices_dir: args.voices.clone(),
        max_voice_bytes: args.max_voice_bytes,
        max_voice_seconds: args.max_voice_seconds,
    };
    let provider = model.provider();
    let app = App::new(Arc::new(model), config).context("opening the voices directory")?;
    let batch_slots = app.engine.batch_slots();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        let addr: SocketAddr = listener.local_addr()?;
        tracing::info!(
            provider = provider.name(),
            max_concurrent,
            batch = ?batch_slots,
            batch_text_len = ?app.engine.batch_text_len(),
            queue = args.queue,
            "serving {}",
            args.bundle.display()
        );
        // Scripts and tests read this line for the port.
        eprintln!("dia-serve listening on http://{addr}");
        axum::serve(listener, dia_serve::api::router(app))
            .with_graceful_shutdown(shutdown())
            .await
            .context("serving")
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
