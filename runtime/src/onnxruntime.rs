//! Finding and loading the ONNX Runtime shared library (`ort` with `load-dynamic`).
//!
//! Search order: `ORT_DYLIB_PATH`; `.onnxruntime/` in the current directory or in any
//! ancestor of the current directory or of the executable (where scripts/setup-onnxruntime.sh
//! puts it); then the system's library path. The library and ONNX Runtime's environment are
//! process-wide by nature, so they are loaded once and shared.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::error::RuntimeError;

#[cfg(target_os = "macos")]
const LIB_NAMES: &[&str] = &["libonnxruntime.dylib"];
#[cfg(target_os = "windows")]
const LIB_NAMES: &[&str] = &["onnxruntime.dll"];
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
const LIB_NAMES: &[&str] = &["libonnxruntime.so"];

fn candidates() -> (Vec<PathBuf>, Vec<String>) {
    let mut found = Vec::new();
    let mut searched = Vec::new();
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        if !p.is_empty() {
            searched.push(format!("ORT_DYLIB_PATH={p}"));
            found.push(PathBuf::from(p));
            return (found, searched);
        }
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    for root in roots {
        for name in LIB_NAMES {
            let p = root.join(".onnxruntime").join(name);
            if !searched.iter().any(|s| s == &p.display().to_string()) {
                searched.push(p.display().to_string());
            }
            if p.is_file() && !found.contains(&p) {
                found.push(p);
            }
        }
    }
    // Last: let the dynamic loader search the system paths by bare name.
    for name in LIB_NAMES {
        searched.push(format!("system library path ({name})"));
        found.push(PathBuf::from(name));
    }
    (found, searched)
}

static ENV: OnceLock<Result<(PathBuf, Environment), String>> = OnceLock::new();

/// Loads ONNX Runtime (once per process) and returns its environment.
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    let r = ENV.get_or_init(|| {
        let (paths, searched) = candidates();
        let mut last_err = None;
        for p in &paths {
            let explicit = p.components().count() > 1 || p.is_file();
            match ort::init_from(p) {
                Ok(builder) => {
                    return builder
                        .with_name("dia")
                        .build()
                        .map(|env| (p.clone(), env))
                        .map_err(|e| format!("load:{}:{e}", p.display()));
                }
                Err(e) if explicit => last_err = Some(format!("load:{}:{e}", p.display())),
                Err(_) => {}
            }
        }
        Err(last_err.unwrap_or_else(|| format!("missing:{}", searched.join(", "))))
    });
    match r {
        Ok((_, env)) => Ok(env),
        Err(e) => Err(match e.split_once(':') {
            Some(("missing", searched)) => RuntimeError::OrtMissing {
                searched: searched.to_string(),
            },
            Some((_, rest)) => {
                let (path, detail) = rest.split_once(':').unwrap_or((rest, ""));
                RuntimeError::OrtLoad {
                    path: PathBuf::from(path),
                    detail: detail.to_string(),
                }
            }
            None => RuntimeError::OrtMissing {
                searched: e.clone(),
            },
        }),
    }
}

/// Where ONNX Runtime was loaded from (after [`environment`] succeeded).
pub fn library_path() -> Option<&'static Path> {
    ENV.get()
        .and_then(|r| r.as_ref().ok())
        .map(|(p, _)| p.as_path())
}
