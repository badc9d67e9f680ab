//! Embedding dia-run: load a bundle once, then generate from several threads at once.
//!
//! ```sh
//! cargo run --release -p dia-run --example generate -- BUNDLE_DIR [OUT_DIR] [--ep EP] [--cuda-graph]
//! ```
//! Writes `OUT_DIR/line-N.wav` (or `.npy` codes when the bundle has no DAC codec).

use std::path::PathBuf;
use std::sync::Arc;

use dia_run::audio::{write_wav, WavFormat};
use dia_run::{DiaModel, GenerateOptions, ModelOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = ModelOptions::default();
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ep" => opts.provider = args.next().ok_or("--ep needs a provider")?.parse()?,
            "--cuda-graph" => opts.cuda_graph = true,
            _ => positional.push(a),
        }
    }
    let mut positional = positional.into_iter();
    let usage = "usage: generate BUNDLE_DIR [OUT_DIR] [--ep EP] [--cuda-graph]";
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

    let handles: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let model = Arc::clone(&model);
            let out = out.clone();
            let line = line.to_string();
            std::thread::spawn(move || -> Result<PathBuf, dia_run::RuntimeError> {
                let opts = GenerateOptions {
                    max_tokens: Some(100),
                    seed: Some(i as u64),
                    ..GenerateOptions::default()
                };
                // Each call has its own decoder state (with --cuda-graph they take turns on the
                // model's); the model itself is shared.
                let gen = model.generate(&line, &opts, |_| {})?;
                if model.has_codec() {
                    let audio = model.decode_audio(&gen.codes)?;
                    let rate = model
                        .manifest()
                        .dac
                        .as_ref()
                        .map_or(44100, |d| d.sample_rate);
                    let path = out.join(format!("line-{i}.wav"));
                    write_wav(&path, &audio, rate, WavFormat::Pcm16)?;
                    Ok(path)
                } else {
                    let path = out.join(format!("line-{i}.npy"));
                    dia_run::npy::write_codes(&path, &gen.codes)?;
                    Ok(path)
                }
            })
        })
        .collect();
    for h in handles {
        let path = h.join().expect("generation thread panicked")?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
