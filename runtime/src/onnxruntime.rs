//! Finding and loading the ONNX Runtime shared library (`ort` with `load-dynamic`).
//!
//! Search order: a libonnxruntime the process has loaded already (a host application that
//! embeds us: two copies of ONNX Runtime in one process would not share threads, allocators or
//! providers); a path the caller gives ([`environment_with`]); `ORT_DYLIB_PATH`;
//! `.onnxruntime/` in the current directory or in any ancestor of the current directory or of
//! the executable (where scripts/setup-onnxruntime.sh puts it); then the system's library
//! path. The library and ONNX Runtime's environment are process-wide by nature, so they are
//! loaded once and shared.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::error::RuntimeError;

#[cfg(target_os = "macos")]
const LIB_NAMES: &[&str] = &["libonnxruntime.dylib"];
#[cfg(target_os = "windows")]
const LIB_NAMES: &[&str] = &["onnxruntime.dll"];
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
const LIB_NAMES: &[&str] = &["libonnxruntime.so"];

/// Names the loader knows an already loaded ONNX Runtime by (its SONAME, or the file name).
#[cfg(target_os = "macos")]
const LOADED_NAMES: &[&str] = &["libonnxruntime.1.dylib", "libonnxruntime.dylib"];
#[cfg(not(target_os = "macos"))]
const LOADED_NAMES: &[&str] = &["libonnxruntime.so.1", "libonnxruntime.so"];

/// The file of the ONNX Runtime this process has loaded already, if any: by name without
/// loading (`RTLD_NOLOAD`, which also finds a library loaded `RTLD_LOCAL` from any path, by its
/// SONAME), else through a globally visible `OrtGetApiBase` (a host linked against it).
#[cfg(unix)]
pub fn loaded_in_process() -> Option<PathBuf> {
    use std::ffi::{CStr, CString};
    // The file that holds `sym`.
    let file_of = |sym: *mut libc::c_void| -> Option<PathBuf> {
        if sym.is_null() {
            return None;
        }
        // SAFETY: dladdr only reads the loader's tables; `info` is plain data it fills.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        if unsafe { libc::dladdr(sym, &mut info) } == 0 || info.dli_fname.is_null() {
            return None;
        }
        // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dli_fname) };
        use std::os::unix::ffi::OsStrExt;
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
    };
    let api_base = CString::new("OrtGetApiBase").expect("no NUL");
    for name in LOADED_NAMES {
        let c = CString::new(*name).expect("no NUL");
        // SAFETY: RTLD_NOLOAD never loads anything; it only takes a reference to a library
        // that is there already, which we drop again below.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if h.is_null() {
            continue;
        }
        // SAFETY: `h` is a live handle; dlsym only looks the symbol up.
        let file = file_of(unsafe { libc::dlsym(h, api_base.as_ptr()) });
        // SAFETY: balances the reference dlopen took.
        unsafe { libc::dlclose(h) };
        if file.is_some() {
            return file;
        }
    }
    // SAFETY: as above, on the global scope.
    file_of(unsafe { libc::dlsym(libc::RTLD_DEFAULT, api_base.as_ptr()) })
}

/// Not implemented on this platform: there the search starts at the caller's path.
#[cfg(not(unix))]
pub fn loaded_in_process() -> Option<PathBuf> {
    None
}

fn candidates(preferred: Option<&Path>) -> (Vec<PathBuf>, Vec<String>) {
    let mut found = Vec::new();
    let mut searched = Vec::new();
    if let Some(p) = loaded_in_process() {
        // Already in the process: that one or none (loading another would make two).
        searched.push(format!("already loaded: {}", p.display()));
        found.push(p);
        return (found, searched);
    }
    if let Some(p) = preferred {
        searched.push(p.display().to_string());
        found.push(p.to_path_buf());
        return (found, searched);
    }
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

/// Why ONNX Runtime could not be loaded, kept typed until it becomes the error (a path is never
/// packed into a string and split again: Windows paths hold `:`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum LoadFailure {
    /// No candidate library was found; `searched` lists where we looked.
    Missing { searched: String },
    /// The library at `path` was found but did not load (or its environment did not build).
    Load { path: PathBuf, detail: String },
}

impl LoadFailure {
    fn to_error(&self) -> RuntimeError {
        match self {
            LoadFailure::Missing { searched } => RuntimeError::OrtMissing {
                searched: searched.clone(),
            },
            LoadFailure::Load { path, detail } => RuntimeError::OrtLoad {
                path: path.clone(),
                detail: detail.clone(),
            },
        }
    }
}

/// How one candidate library failed.
#[derive(Debug)]
enum Attempt {
    /// The library did not load from there: try the next candidate.
    NotLoaded(String),
    /// The library loaded but ONNX Runtime's environment did not build: final.
    Failed(String),
}

/// Tries `paths` in order with `load`, returning the first that loads. A load failure on an
/// explicit path (a file, or a path with a directory) is remembered and reported if none loads;
/// a bare library name the system loader does not find is not an error of its own.
fn load_first<T>(
    paths: &[PathBuf],
    searched: &[String],
    mut load: impl FnMut(&Path) -> Result<T, Attempt>,
) -> Result<(PathBuf, T), LoadFailure> {
    let mut last_err = None;
    for p in paths {
        let explicit = p.components().count() > 1 || p.is_file();
        let failure = |detail| LoadFailure::Load {
            path: p.clone(),
            detail,
        };
        match load(p) {
            Ok(v) => return Ok((p.clone(), v)),
            Err(Attempt::Failed(detail)) => return Err(failure(detail)),
            Err(Attempt::NotLoaded(detail)) if explicit => last_err = Some(failure(detail)),
            Err(Attempt::NotLoaded(_)) => {}
        }
    }
    Err(last_err.unwrap_or_else(|| LoadFailure::Missing {
        searched: searched.join(", "),
    }))
}

static ENV: OnceLock<(PathBuf, Environment)> = OnceLock::new();
/// Serialises load attempts. A failure is not kept: a library host may fix the path (or
/// install the library) and try again in the same process.
static LOADING: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime (once per process) and returns its environment.
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    environment_with(None)
}

/// [`environment`], trying `preferred` when the process has no ONNX Runtime loaded yet (the
/// first load in a process decides for its lifetime: see [`library_path`]).
pub fn environment_with(preferred: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    if let Some((_, env)) = ENV.get() {
        return Ok(env);
    }
    // Nothing runs under the lock that could leave the cell half set.
    let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, env)) = ENV.get() {
        return Ok(env);
    }
    let (paths, searched) = candidates(preferred);
    let loaded = load_first(&paths, &searched, |p| {
        ort::init_from(p)
            .map_err(|e| Attempt::NotLoaded(e.to_string()))?
            .with_name("dia")
            .build()
            .map_err(|e| Attempt::Failed(e.to_string()))
    })
    .map_err(|e| e.to_error())?;
    Ok(&ENV.get_or_init(|| loaded).1)
}

/// Where ONNX Runtime was loaded from (after [`environment`] succeeded).
pub fn library_path() -> Option<&'static Path> {
    ENV.get().map(|(p, _)| p.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_with_colons_survives_a_failed_load() {
        // A Windows path (drive letter, and a message with colons of its own) comes back as
        // it went in. Under a directory so that it is an explicit path on Unix too (where it is
        // one file name; on Windows the join gives the drive path itself).
        let dll = Path::new("/opt").join(r"C:\Program Files\onnxruntime\onnxruntime.dll");
        let detail =
            "LoadLibraryExW failed: The specified module could not be found. (os error 126)";
        let paths = [dll.clone(), PathBuf::from("onnxruntime.dll")];
        let searched = [dll.display().to_string(), "system library path".to_string()];
        let failure = load_first::<()>(&paths, &searched, |_| {
            Err(Attempt::NotLoaded(detail.to_string()))
        })
        .expect_err("nothing loads");
        assert_eq!(
            failure,
            LoadFailure::Load {
                path: dll.clone(),
                detail: detail.to_string()
            }
        );
        match failure.to_error() {
            RuntimeError::OrtLoad { path, detail: d } => {
                assert_eq!((path, d.as_str()), (dll.clone(), detail));
            }
            other => panic!("expected OrtLoad, got {other:?}"),
        }
        let msg = failure.to_error().to_string();
        assert!(
            msg.ends_with(&format!("{}: {detail}", dll.display())),
            "{msg}"
        );
    }

    #[test]
    fn nothing_found_lists_every_place_searched() {
        let paths = [PathBuf::from("libonnxruntime.so")];
        let searched = [
            r"D:\work\.onnxruntime\onnxruntime.dll".to_string(),
            "system library path (libonnxruntime.so)".to_string(),
        ];
        let failure = load_first::<()>(&paths, &searched, |_| {
            Err(Attempt::NotLoaded("not found".into()))
        })
        .expect_err("nothing loads");
        match failure.to_error() {
            RuntimeError::OrtMissing { searched: s } => assert_eq!(
                s,
                r"D:\work\.onnxruntime\onnxruntime.dll, system library path (libonnxruntime.so)"
            ),
            other => panic!("expected OrtMissing, got {other:?}"),
        }
    }

    #[test]
    fn the_first_path_that_loads_wins() {
        let paths = [
            PathBuf::from("/a:b/libonnxruntime.so"),
            PathBuf::from("/c/libonnxruntime.so"),
        ];
        let (p, v) = load_first(&paths, &[], |p| {
            if p.starts_with("/c") {
                Ok(7)
            } else {
                Err(Attempt::NotLoaded("no".to_string()))
            }
        })
        .unwrap();
        assert_eq!((p, v), (PathBuf::from("/c/libonnxruntime.so"), 7));
    }

    #[test]
    fn an_environment_that_does_not_build_is_final() {
        // The library loaded (it is then loaded for the process): later candidates would
        // only hide the error under another path.
        let paths = [
            PathBuf::from("/x:y/libonnxruntime.so"),
            PathBuf::from("/z/libonnxruntime.so"),
        ];
        let failure = load_first::<()>(&paths, &[], |_| Err(Attempt::Failed("bad env".into())))
            .expect_err("nothing builds");
        assert_eq!(
            failure,
            LoadFailure::Load {
                path: paths[0].clone(),
                detail: "bad env".into()
            }
        );
    }
}
