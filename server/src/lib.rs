//! `dia-serve`: an OpenAI-compatible speech server for Dia ONNX bundles.
//!
//! The model is loaded once ([`dia_run::DiaModel`]) and shared by every request.
//! [`engine`] runs generations (a bounded number at once, decoded together on the runtime's
//! batching scheduler when the bundle can batch, a bounded queue, cancelled when the client
//! goes away); [`api`] is the HTTP side (`POST /v1/audio/speech` as OpenAI's, voices,
//! models, health, metrics, the job status); [`voices`] is the voices directory; [`metrics`]
//! the Prometheus counters; [`error`] the OpenAI-shaped errors; [`web`] the page at `/`.
//!
//! ```no_run
//! # async fn demo(model: dia_run::DiaModel) -> std::io::Result<()> {
//! use std::sync::Arc;
//! let app = dia_serve::App::new(Arc::new(model), dia_serve::ServerConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, dia_serve::api::router(app)).await
//! # }
//! ```

pub mod api;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod voices;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;

pub use api::{ApiConfig, App};
pub use engine::{Engine, EngineConfig};

/// Everything that configures a server beside its model.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub engine: EngineConfig,
    pub api: ApiConfig,
    /// The voices directory (created when missing); `None`: no voices.
    pub voices_dir: Option<PathBuf>,
    /// Largest voice upload, in bytes.
    pub max_voice_bytes: usize,
    /// Longest voice recording, in seconds.
    pub max_voice_seconds: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            api: ApiConfig {
                model_name: "dia".into(),
                max_input_chars: 50_000,
                // 10 minutes of audio at 86 frames a second.
                max_buffered_frames: 600 * 86,
                api_key: None,
            },
            voices_dir: None,
            max_voice_bytes: 10 << 20,
            max_voice_seconds: 30.0,
        }
    }
}

impl App {
    /// The shared state of a server of `model`.
    pub fn new(model: Arc<dia_run::DiaModel>, config: ServerConfig) -> std::io::Result<Arc<Self>> {
        let metrics = Arc::new(metrics::Metrics::default());
        Ok(Arc::new(App {
            engine: Engine::new(model, config.engine, metrics.clone()),
            voices: Arc::new(voices::Voices::new(
                config.voices_dir,
                config.max_voice_bytes,
                config.max_voice_seconds,
            )?),
            metrics,
            config: config.api,
        }))
    }
}
