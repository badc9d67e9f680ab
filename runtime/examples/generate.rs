//! Embedding dia-run: load a bundle once, then generate from several threads at once.
//!
//! ```sh
//! cargo run --release -p dia-run --example generate -- BUNDLE_DIR [OUT_DIR] [--ep EP] [--cuda-graph] [--rounds N]
//! ```
//! Writes `OUT_DIR/line-N.wav` (or `.npy` codes when the bundle has no DAC codec). With
//! `--rounds N` the lines are generated N times on the same model (later rounds reuse the
//! pooled decoder states, refilled) and every round must give the same codes as the first.

use std::path::PathBuf;
use std::sync::Arc;

use dia_run::audio::{write_wav, WavFormat};
use dia_run::{DiaModel, GenerateOptions, ModelOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = ModelOptions::default();
    let mut positional = Vec::new();
    let mut rounds = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ep" => opts.provider = args.next().ok_or("--ep needs a provider")?.parse()?,
            "--cuda-graph" => opts.cuda_graph = true,
            "--rounds" => rounds = args.next().ok_or("--rounds needs a count")?.parse()?,
            _ => positional.push(a),
        }
    }
    let mut positional = positional.into_iter();
    let usage = "usage: generate BUNDLE_DIR [OUT_DIR] [--ep EP] [--cuda-graph] [--rounds N]";
    let bundle = PathBuf::from(positional.next().ok_or(usage)?);
    let out = PathBuf::from(positional.next().unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&out)?;

    // Load once: sessions, weights and the manifest are shared by every generation.
    let model = Arc::new(DiaModel::load(&bundle, &opts)?);
    let lines = [
        "[S1] Good morning.",
        "[S2] Morning! I brought coffee and the notes. (laughs)",
        "[S1] Ready?",
    ];

    let mut first: Option<Vec<Vec<i64>>> = None;
    for round in 0..rounds {
        let codes = generate_lines(&model, &lines, &out, round == 0)?;
        match &first {
            None => first = Some(codes),
            Some(f) if *f == codes => {
                println!("round {} gave the same codes as round 1", round + 1)
            }
            Some(_) => {
                return Err(format!("round {} gave other codes than round 1", round + 1).into())
            }
        }
    }
    Ok(())
}

/// Generates every line on its own thread (writing the files when `write`); returns the codes.
fn generate_lines(
    model: &Arc<DiaModel>,
    lines: &[&str],
    out: &std::path::Path,
    write: bool,
) -> Result<Vec<Vec<i64>>, Box<dyn std::error::Error>> {
    let handles: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let model = Arc::clone(model);
            let out = out.to_path_buf();
            let line = line.to_string();
            std::thread::spawn(
                move || -> Result<(Vec<i64>, Option<PathBuf>), dia_run::RuntimeError> {
                    let opts = GenerateOptions {
                        max_tokens: Some(100),
                        seed: Some(i as u64),
                        ..GenerateOptions::default()
                    };
                    // Each call checks its own decoder state out of the model's pool; the
                    // model itself (sessions, weights) is shared.
                    let gen = model.generate(&line, &opts, |_| {})?;
                    if !write {
                        return Ok((gen.codes.data, None));
                    }
                    let path = if model.has_codec() {
                        let audio = model.decode_audio(&gen.codes)?;
                        let path = out.join(format!("line-{i}.wav"));
                        write_wav(&path, &audio, model.sample_rate(), WavFormat::Pcm16)?;
                        path
                    } else {
                        let path = out.join(format!("line-{i}.npy"));
                        dia_run::npy::write_codes(&path, &gen.codes)?;
                        path
                    };
                    Ok((gen.codes.data, Some(path)))
                },
            )
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let (codes, path) = h.join().expect("generation thread panicked")?;
        if let Some(p) = path {
            println!("wrote {}", p.display());
        }
        all.push(codes);
    }
    Ok(all)
}
