//! A loaded bundle: manifest plus ONNX Runtime sessions. Load once, generate many times; a
//! `DiaModel` is `Sync`, and each generation keeps its own state ([`crate::decoder::Utterance`]),
//! so several threads can generate at once (their steps take turns on the sessions).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use dia_bundle::{DiaConfig, GraphSpec, Manifest};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionOutputs};
use ort::value::{DynValue, Tensor};

use crate::error::RuntimeError;
use crate::onnxruntime;

/// How to run the bundle.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// Intra-op threads (default: ONNX Runtime's choice, all physical cores).
    pub threads: Option<usize>,
}

pub struct DiaModel {
    dir: PathBuf,
    manifest: Manifest,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
}

fn check_graph(dir: &Path, name: &str, spec: &GraphSpec) -> Result<PathBuf, RuntimeError> {
    let path = dir.join(&spec.file);
    if !path.is_file() {
        return Err(RuntimeError::MissingFile {
            path,
            what: format!("the {name} graph"),
        });
    }
    if let Some(w) = &spec.weights {
        let wp = dir.join(w);
        if !wp.is_file() {
            return Err(RuntimeError::MissingFile {
                path: wp,
                what: format!("the {name} weights"),
            });
        }
    }
    Ok(path)
}

fn open_session(
    path: &Path,
    name: &str,
    spec: &GraphSpec,
    opts: &ModelOptions,
) -> Result<Session, RuntimeError> {
    let env = onnxruntime::environment()?;
    let mut b = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort::Error::from)?;
    if let Some(n) = opts.threads {
        b = b.with_intra_threads(n).map_err(ort::Error::from)?;
    }
    let session = b.commit_from_file(path)?;
    for t in &spec.inputs {
        if !session.inputs().iter().any(|i| i.name() == t.name) {
            return Err(RuntimeError::GraphMismatch {
                graph: name.into(),
                kind: "input",
                name: t.name.clone(),
            });
        }
    }
    Ok(session)
}

impl DiaModel {
    /// Loads the bundle in `dir` (manifest, encoder and decoder-step graphs).
    pub fn load(dir: &Path, opts: &ModelOptions) -> Result<Self, RuntimeError> {
        if !dir.is_dir() {
            return Err(RuntimeError::MissingFile {
                path: dir.to_path_buf(),
                what: "the bundle directory".into(),
            });
        }
        let manifest = Manifest::load(dir)?;
        let enc_path = check_graph(dir, "encoder", &manifest.graphs.encoder)?;
        let dec_path = check_graph(dir, "decoder_step", &manifest.graphs.decoder_step)?;
        if manifest.dtype != "float32" {
            return Err(RuntimeError::InvalidOption(format!(
                "this bundle is {}; the CPU runtime runs float32 bundles (export with --dtype f32)",
                manifest.dtype
            )));
        }
        let encoder = open_session(&enc_path, "encoder", &manifest.graphs.encoder, opts)?;
        let decoder = open_session(
            &dec_path,
            "decoder_step",
            &manifest.graphs.decoder_step,
            opts,
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            encoder: Mutex::new(encoder),
            decoder: Mutex::new(decoder),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn config(&self) -> &DiaConfig {
        &self.manifest.config
    }

    pub(crate) fn decoder_session(&self) -> MutexGuard<'_, Session> {
        self.decoder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the encoder on padded tokens and mask of the pair (`[2, T]` each, row-major);
    /// returns its outputs by name.
    pub(crate) fn run_encoder(
        &self,
        tokens: Vec<i64>,
        mask: Vec<bool>,
    ) -> Result<std::collections::HashMap<String, DynValue>, RuntimeError> {
        let t = self.manifest.max_text_len;
        let tok = Tensor::from_array(([2usize, t], tokens))?;
        let msk = Tensor::from_array(([2usize, t], mask))?;
        let mut session = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let outputs: SessionOutputs =
            session.run(ort::inputs!["text_tokens" => tok, "text_mask" => msk])?;
        let mut out = std::collections::HashMap::new();
        for (name, v) in outputs {
            out.insert(name.to_string(), v);
        }
        Ok(out)
    }

    /// Encoder states `[2, T, E]` for `text` (unpadded conditional tokens), for parity tests.
    pub fn encoder_states(&self, text: &[i64]) -> Result<Vec<f32>, RuntimeError> {
        let t = self.manifest.max_text_len;
        let mut tok = vec![0i64; 2 * t];
        tok[t..t + text.len()].copy_from_slice(text);
        let mask: Vec<bool> = (0..2 * t).map(|i| tok[t + i % t] != 0).collect();
        let out = self.run_encoder(tok, mask)?;
        let v = out
            .get("encoder_states")
            .ok_or_else(|| RuntimeError::GraphMismatch {
                graph: "encoder".into(),
                kind: "output",
                name: "encoder_states".into(),
            })?;
        Ok(v.try_extract_tensor::<f32>()?.1.to_vec())
    }
}
