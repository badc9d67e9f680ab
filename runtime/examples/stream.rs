//! Streaming speech from a loaded model, as an app or a server sees it: the model is loaded
//! once, a first utterance warms it up (ONNX Runtime's first-run work, CUDA graph capture),
//! then each utterance's time to first audio is measured from the call that starts it.
//!
//! ```sh
//! cargo run --release -p dia-run --example stream -- BUNDLE_DIR [--ep EP] [--cuda-graph] [--utterances N] [--text T]
//!     [--first-chunk FRAMES] [--codec-window N (0: exact lengths)] [--conv-exhaustive] [--conv1d-ncl1] [--profile PREFIX]
//! ```
//! Prints one JSON line per utterance: `first_audio_seconds`, `audio_seconds`,
//! `steps_per_second` (decoder steps and streamed codec together) and whether it was the cold one.

use std::path::PathBuf;
use std::time::Instant;

use dia_run::codec::ChunkSizes;
use dia_run::{AudioStream, DiaModel, GenerateOptions, ModelOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = ModelOptions::default();
    let mut bundle = None;
    let mut utterances = 3usize;
    let mut chunks = ChunkSizes::default();
    // A two-sentence script by default.
    let mut text = "[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices.".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ep" => opts.provider = args.next().ok_or("--ep needs a provider")?.parse()?,
            "--cuda-graph" => opts.cuda_graph = true,
            "--codec-window" => {
                opts.codec_window = Some(args.next().ok_or("--codec-window needs N")?.parse()?)
            }
            "--conv-exhaustive" => opts.conv_search = dia_run::providers::ConvSearch::Exhaustive,
            "--conv1d-ncl1" => opts.conv1d_ncl1 = true,
            "--profile" => {
                opts.profile = Some(args.next().ok_or("--profile needs a prefix")?.into())
            }
            "--utterances" => utterances = args.next().ok_or("--utterances needs N")?.parse()?,
            "--text" => text = args.next().ok_or("--text needs a script")?,
            "--first-chunk" => {
                chunks.first = args.next().ok_or("--first-chunk needs N")?.parse()?
            }
            _ => bundle = Some(PathBuf::from(a)),
        }
    }
    let bundle =
        bundle.ok_or("usage: stream BUNDLE_DIR [--ep EP] [--cuda-graph] [--utterances N]")?;
    let t = Instant::now();
    let model = DiaModel::load(&bundle, &opts)?;
    eprintln!(
        "loaded in {:.2} s on {}",
        t.elapsed().as_secs_f64(),
        model.provider().name()
    );
    // Greedy, EOS ignored, so every utterance is the same length.
    let gen = GenerateOptions {
        max_tokens: Some(200),
        temperature: 0.0,
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    for i in 0..utterances {
        let t = Instant::now();
        let mut s = AudioStream::new(&model, &text, &gen, chunks)?;
        let mut samples = 0usize;
        while let Some(pcm) = s.next_chunk()? {
            samples += pcm.len();
        }
        let first = s.first_audio_seconds();
        let g = s.finish();
        let total = t.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "utterance": i + 1,
                "cold": i == 0,
                "first_audio_seconds": first,
                "encoder_seconds": g.encoder_s,
                "audio_seconds": samples as f64 / model.sample_rate() as f64,
                "steps_per_second": g.steps as f64 / g.decode_s.max(1e-9),
                "total_seconds": total,
            })
        );
    }
    Ok(())
}
