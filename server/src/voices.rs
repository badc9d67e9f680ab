//! The voices directory: `NAME.wav` (the recording) and `NAME.txt` (its transcript, with
//! speaker tags) for every voice. Names are `[A-Za-z0-9_-]{1,64}`, so no name leaves the
//! directory. Uploads are size-limited, must be a readable WAV of a sensible length, and are
//! written atomically (a temporary file in the directory, then a rename). Encoded prompts
//! (the DAC codes of a recording) are cached, keyed by the file's size and modification time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use dia_run::audio::{read_audio_mono, resample};
use dia_run::script::VoicePrompt;
use dia_run::DiaModel;
use serde::Serialize;

use crate::engine::{EngineError, VoiceLoader};

/// Longest transcript of a voice, in bytes.
pub const MAX_TRANSCRIPT_BYTES: usize = 4096;
/// Encoded voices kept in memory at most.
const CACHE_ENTRIES: usize = 64;

/// What is wrong with a voice request.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("unknown voice `{name}`; available: {}", list(.available))]
    Unknown {
        name: String,
        available: Vec<String>,
    },
    #[error("invalid voice name `{0}`: use 1 to 64 of A-Z, a-z, 0-9, `_` and `-`")]
    BadName(String),
    #[error("this server has no voices directory (start it with --voices DIR to add voices)")]
    NoDirectory,
    #[error("{0}")]
    Invalid(String),
    #[error("the voice file is {got} bytes, more than the {max} this server takes")]
    TooLarge { got: usize, max: usize },
    #[error("voices directory: {0}")]
    Io(#[from] std::io::Error),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none (add one with POST /v1/audio/voices)".into()
    } else {
        names.join(", ")
    }
}

/// A voice as listed.
#[derive(Clone, Debug, Serialize)]
pub struct VoiceInfo {
    pub name: String,
    pub transcript: String,
    pub bytes: u64,
}

type CacheKey = (u64, Option<SystemTime>);

/// The voices directory and its encoded prompts.
pub struct Voices {
    dir: Option<PathBuf>,
    max_bytes: usize,
    max_seconds: f64,
    cache: Mutex<HashMap<String, (CacheKey, Arc<VoicePrompt>)>>,
}

/// Whether `name` is a valid voice name.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Voices {
    /// Voices in `dir` (created when missing), or none. Uploads up to `max_bytes`, recordings
    /// up to `max_seconds`.
    pub fn new(dir: Option<PathBuf>, max_bytes: usize, max_seconds: f64) -> std::io::Result<Self> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)?;
        }
        Ok(Self {
            dir,
            max_bytes,
            max_seconds,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn dir(&self) -> Result<&Path, VoiceError> {
        self.dir.as_deref().ok_or(VoiceError::NoDirectory)
    }

    /// Every voice with both its files, by name.
    pub fn list(&self) -> Result<Vec<VoiceInfo>, VoiceError> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("wav") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if !valid_name(name) {
                continue;
            }
            let Ok(transcript) = std::fs::read_to_string(path.with_extension("txt")) else {
                continue;
            };
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            out.push(VoiceInfo {
                name: name.to_string(),
                transcript: transcript.trim().to_string(),
                bytes,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The voice `name`'s transcript, or an error listing the voices there are.
    pub fn find(&self, name: &str) -> Result<VoiceInfo, VoiceError> {
        let all = self.list()?;
        if valid_name(name) {
            if let Some(v) = all.iter().find(|v| v.name == name) {
                return Ok(v.clone());
            }
        }
        Err(VoiceError::Unknown {
            name: name.chars().take(80).collect(),
            available: all.into_iter().map(|v| v.name).collect(),
        })
    }

    /// Loads (or takes from the cache) the prompt of voice `name` on the worker: reads the
    /// recording, resamples it to the model's rate and encodes it with the bundle's codec.
    pub fn loader(self: &Arc<Self>, info: VoiceInfo) -> VoiceLoader {
        let voices = self.clone();
        Box::new(move |model: &DiaModel| {
            voices
                .prompt(model, &info)
                .map(|p| (*p).clone())
                .map_err(|e| EngineError::Invalid(format!("voice `{}`: {e}", info.name)))
        })
    }

    fn prompt(&self, model: &DiaModel, info: &VoiceInfo) -> Result<Arc<VoicePrompt>, String> {
        let dir = self.dir().map_err(|e| e.to_string())?;
        let wav = dir.join(format!("{}.wav", info.name));
        let meta = std::fs::metadata(&wav).map_err(|e| e.to_string())?;
        let key = (meta.len(), meta.modified().ok());
        if let Some((k, p)) = self.cache_lock().get(&info.name) {
            if *k == key && p.transcript == info.transcript {
                return Ok(p.clone());
            }
        }
        let (samples, rate) = read_audio_mono(&wav).map_err(|e| e.to_string())?;
        let samples = resample(&samples, rate, model.sample_rate()).map_err(|e| e.to_string())?;
        let codes = model.encode_audio(&samples).map_err(|e| e.to_string())?;
        let prompt = Arc::new(VoicePrompt {
            codes,
            transcript: info.transcript.clone(),
        });
        let mut cache = self.cache_lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(info.name.clone(), (key, prompt.clone()));
        Ok(prompt)
    }

    fn cache_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (CacheKey, Arc<VoicePrompt>)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or replaces) voice `name`: checks the name, the transcript and the recording
    /// (a WAV that reads, of `max_seconds` at most), then writes both files atomically.
    /// Blocking (file I/O and decoding): call it off the async threads.
    pub fn add(&self, name: &str, transcript: &str, wav: &[u8]) -> Result<VoiceInfo, VoiceError> {
        let dir = self.dir()?;
        if !valid_name(name) {
            return Err(VoiceError::BadName(name.chars().take(80).collect()));
        }
        let transcript = transcript.trim();
        if transcript.is_empty() {
            return Err(VoiceError::Invalid(
                "the transcript is empty: give what the recording says, with speaker tags, e.g. \"[S1] Hello there.\"".into(),
            ));
        }
        if transcript.len() > MAX_TRANSCRIPT_BYTES {
            return Err(VoiceError::Invalid(format!(
                "the transcript is {} bytes, more than {MAX_TRANSCRIPT_BYTES}",
                transcript.len()
            )));
        }
        if wav.len() > self.max_bytes {
            return Err(VoiceError::TooLarge {
                got: wav.len(),
                max: self.max_bytes,
            });
        }
        if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
            return Err(VoiceError::Invalid(
                "the voice file is not a WAV file (no RIFF/WAVE header)".into(),
            ));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".upload-")
            .suffix(".wav")
            .tempfile_in(dir)?;
        std::io::Write::write_all(&mut tmp, wav)?;
        let (samples, rate) = read_audio_mono(tmp.path()).map_err(|e| {
            VoiceError::Invalid(format!(
                "the voice file is not a readable WAV: {}",
                e.to_string()
                    .trim_start_matches(&format!("{}: ", tmp.path().display()))
            ))
        })?;
        let seconds = samples.len() as f64 / rate as f64;
        if seconds < 0.1 || seconds > self.max_seconds {
            return Err(VoiceError::Invalid(format!(
                "the recording is {seconds:.2} s long; a voice takes 0.1 to {} s",
                self.max_seconds
            )));
        }
        dia_run::npy::write_atomic(
            &dir.join(format!("{name}.txt")),
            format!("{transcript}\n").as_bytes(),
        )
        .map_err(|e| VoiceError::Invalid(e.to_string()))?;
        tmp.persist(dir.join(format!("{name}.wav")))
            .map_err(|e| VoiceError::Io(e.error))?;
        self.cache_lock().remove(name);
        tracing::info!(voice = name, seconds, "voice added");
        Ok(VoiceInfo {
            name: name.to_string(),
            transcript: transcript.to_string(),
            bytes: wav.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(seconds: f64) -> Vec<u8> {
        let rate = 16000u32;
        let n = (seconds * rate as f64) as usize;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + 2 * n as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * 2).to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(2 * n as u32).to_le_bytes());
        for i in 0..n {
            let s = ((i as f64 * 0.05).sin() * 8000.0) as i16;
            b.extend_from_slice(&s.to_le_bytes());
        }
        b
    }

    #[test]
    fn names() {
        for ok in ["a", "Alice_2", "x-y", &"a".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", "a.b", "a b", &"a".repeat(65), "é", ".."] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn add_list_find() {
        let dir = tempfile::tempdir().unwrap();
        let v = Voices::new(Some(dir.path().join("voices")), 1 << 20, 10.0).unwrap();
        assert!(v.list().unwrap().is_empty());
        let e = v.find("alice").unwrap_err().to_string();
        assert!(e.contains("none (add one"), "{e}");
        v.add("alice", " [S1] Hello. ", &wav(1.0)).unwrap();
        let all = v.list().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].transcript, "[S1] Hello.");
        assert_eq!(v.find("alice").unwrap().name, "alice");
        let e = v.find("bob").unwrap_err().to_string();
        assert!(e.contains("available: alice"), "{e}");
        assert!(v.find("../alice").is_err());
        // Nothing but the two files is left in the directory.
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("voices"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["alice.txt", "alice.wav"]);
    }

    #[test]
    fn bad_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let v = Voices::new(Some(dir.path().to_path_buf()), 40_000, 1.0).unwrap();
        let cases: [(&str, &str, Vec<u8>, &str); 6] = [
            ("../x", "[S1] Hi.", wav(0.5), "invalid voice name"),
            ("x", "  ", wav(0.5), "transcript is empty"),
            (
                "x",
                "[S1] Hi.",
                b"OggS not a wav at all".to_vec(),
                "not a WAV",
            ),
            (
                "x",
                "[S1] Hi.",
                wav(0.5)[..100].to_vec(),
                "not a readable WAV",
            ),
            ("x", "[S1] Hi.", wav(1.3), "more than the 40000"),
            ("x", "[S1] Hi.", wav(0.05), "0.1 to 1 s"),
        ];
        for (name, text, bytes, want) in cases {
            let e = v.add(name, text, &bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e} (wanted {want})");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let none = Voices::new(None, 1, 1.0).unwrap();
        assert!(matches!(
            none.add("x", "[S1] Hi.", &wav(0.5)),
            Err(VoiceError::NoDirectory)
        ));
    }
}
