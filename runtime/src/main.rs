//! `dia-run`: text in, WAV (and/or codes) out.
//!
//! `dia-run --bundle DIR --text "..." [--out speech.wav] [--save-codes codes.npy]
//!  [--max-tokens N] [--cfg-scale S] [--cfg-filter-top-k K] [--temperature T] [--top-p P]
//!  [--seed N] [--prompt-audio voice.wav --prompt-text "..."] [--ep auto|cpu|cuda|coreml]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dia_run::audio::{read_audio_mono, resample, write_wav, SampleStream, WavFormat};
use dia_run::codec::ChunkSizes;
use dia_run::script::{ScriptGenerator, ScriptOptions, ScriptPlan, ScriptProgress, VoicePrompt};
use dia_run::stream::ScriptStream;
use dia_run::{DiaModel, ExecutionProvider, GenerateOptions, ModelOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;

mod batch_cli;

/// Generate speech with a Dia ONNX bundle.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Bundle directory written by dia-export.
    #[arg(long)]
    bundle: PathBuf,
    /// The script, e.g. "[S1] Hello there. [S2] Hi! (laughs)".
    #[arg(long, conflicts_with = "text_file")]
    text: Option<String>,
    /// Read the script from a UTF-8 text file instead.
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// WAV file to write (44.1 kHz mono; needs a bundle exported with --dac), or `-` for
    /// stdout (a WAV stream whose size fields are 0xFFFFFFFF, or raw samples with
    /// --format pcm), e.g. `dia-run ... --out - | ffplay -`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Decode audio while generating, in chunks (always so with --out -): the first chunk
    /// small, for latency. With --out FILE the file is still written whole, atomically.
    #[arg(long)]
    stream: bool,
    /// What --out holds: wav, or pcm (raw little-endian samples, s16le; f32le with --float).
    #[arg(long, value_enum, default_value = "wav")]
    format: OutFormat,
    /// Crossfade between the segments of a script longer than one generation, in ms.
    #[arg(long, default_value_t = 40.0, value_parser = parse_crossfade)]
    crossfade_ms: f32,
    /// Generate a long script's segments each on its own, not prompted with the one before
    /// (voices then drift between segments).
    #[arg(long)]
    no_carry: bool,
    /// Frames of audio (11.6 ms each) in the first streamed chunk.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    first_chunk_frames: u32,
    /// Frames of audio in each later streamed chunk.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    chunk_frames: u32,
    /// Write 32-bit float samples instead of 16-bit PCM.
    #[arg(long)]
    float: bool,
    /// Also write the delay-reverted codes [frames, 9] as int64 .npy.
    #[arg(long)]
    save_codes: Option<PathBuf>,
    /// Voice prompt whose voice to continue: WAV, FLAC, MP3 or Ogg Vorbis (told by its content;
    /// any rate from 1 to 768 kHz, mixed down to mono).
    #[arg(long, requires = "prompt_text")]
    prompt_audio: Option<PathBuf>,
    /// Transcript of the voice prompt, e.g. "[S1] What the prompt says."
    #[arg(long, requires = "prompt_audio")]
    prompt_text: Option<String>,
    /// Most decoder steps (frames, 86 per second); default: the bundle's maximum.
    #[arg(long, allow_negative_numbers = true)]
    max_tokens: Option<usize>,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 3.0, allow_negative_numbers = true)]
    cfg_scale: f32,
    /// Top-k applied to the CFG logits (and again when sampling).
    #[arg(long, default_value_t = 45, allow_negative_numbers = true)]
    cfg_filter_top_k: usize,
    /// Sampling temperature; 0 is greedy (argmax).
    #[arg(long, default_value_t = 1.2, allow_negative_numbers = true)]
    temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    top_p: f32,
    /// Seed for sampling: the same seed gives the same audio on the same machine.
    #[arg(long, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Execution provider: auto (CoreML on macOS, CUDA where it loads, else CPU), cpu, cuda, coreml.
    #[arg(long, default_value = "auto")]
    ep: ExecutionProvider,
    /// With --ep coreml: compute units CoreML may use: all, cpu-and-ne (Neural Engine), cpu-and-gpu.
    #[arg(long, default_value = "all")]
    coreml_units: dia_run::providers::CoreMlUnits,
    /// With --ep cuda: capture the decoder step as a CUDA graph and replay it every step.
    #[arg(long)]
    cuda_graph: bool,
    /// Intra-op threads for ONNX Runtime, 1 or more (default: all cores).
    #[arg(long, value_name = "N", value_parser = parse_threads, allow_negative_numbers = true)]
    threads: Option<usize>,
    /// Write ONNX Runtime's per-node profile of each graph to PREFIX_<graph>_<time>.json
    /// (summarise it with scripts/ort_profile_summary.py).
    #[arg(long, value_name = "PREFIX")]
    ort_profile: Option<PathBuf>,
    /// With --ep cuda: how cuDNN picks the codec's convolution algorithms: heuristic, or
    /// exhaustive (times every algorithm once per input shape: ~0.5 s per new length).
    #[arg(long, default_value = "heuristic")]
    cudnn_conv_search: dia_run::providers::ConvSearch,
    /// With --ep cuda: run the codec's 1-D convolutions in ONNX Runtime's default [N, C, L, 1]
    /// layout instead of the faster [N, C, 1, L].
    #[arg(long)]
    conv1d_ncl1: bool,
    /// No progress bar and no summary line.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Benchmark: run --max-tokens steps (EOS ignored), write nothing, report speed.
    #[arg(long)]
    bench: bool,
    /// Decode N utterances at once in one batch (fused bundles): the script has one utterance
    /// per line, and --out / --save-codes name directories that get NNNN.wav / NNNN.npy per
    /// line. Each line gets seed --seed + its index.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024),
          conflicts_with_all = ["stream", "bench", "format"])]
    batch: Option<u32>,
}

/// `--threads`: a count of 1 or more (0 would leave ONNX Runtime to choose, which is what
/// leaving the option out says).
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<i64>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|e| e.to_string()),
        Ok(_) => Err("must be 1 or more (leave --threads out to use all cores)".into()),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

/// `--crossfade-ms`: 0 to 1000.
fn parse_crossfade(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1000.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be between 0 and 1000 ms".into()),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OutFormat {
    Wav,
    Pcm,
}

/// The reader of our stdout went away (a closed pipe): not a failure of ours.
#[derive(Debug, thiserror::Error)]
#[error("the output pipe was closed; stopped")]
struct OutputClosed;

/// Exit status after a closed output pipe: what a shell reports for a process that SIGPIPE
/// ended (128 + 13), so pipelines treat it the usual way.
const EXIT_PIPE_CLOSED: u8 = 141;

fn output_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        OutputClosed.into()
    } else {
        anyhow::Error::new(e).context("writing the audio to stdout")
    }
}

fn read_text(args: &Args) -> Result<String> {
    match (&args.text, &args.text_file) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(p)) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not UTF-8 text (invalid byte at offset {})",
                    p.display(),
                    e.utf8_error().valid_up_to()
                )
            })
        }
        (None, None) => bail!("give the script with --text \"...\" or --text-file FILE"),
    }
}

/// Fails early, before any work, if `path` cannot be written.
fn check_writable(path: &std::path::Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    let probe = dir.join(format!(".dia-run-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "cannot write {}: directory {} is not writable",
            path.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Peak resident set size of this process in MB (Linux), for the summary.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<OutputClosed>().is_some() => {
            eprintln!("dia-run: {e}");
            ExitCode::from(EXIT_PIPE_CLOSED)
        }
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn load_model(args: &Args) -> Result<DiaModel> {
    let model = DiaModel::load(
        &args.bundle,
        &ModelOptions {
            threads: args.threads,
            provider: args.ep,
            cuda_graph: args.cuda_graph,
            coreml_units: args.coreml_units,
            coreml_cache_dir: None,
            profile: args.ort_profile.clone(),
            conv_search: args.cudnn_conv_search,
            conv1d_ncl1: args.conv1d_ncl1,
            ..ModelOptions::default()
        },
    )?;
    for w in model.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(model)
}

/// The voice prompt of --prompt-audio / --prompt-text, encoded by the bundle's codec.
fn voice_prompt(args: &Args, model: &DiaModel) -> Result<Option<VoicePrompt>> {
    let (Some(wav), Some(transcript)) = (&args.prompt_audio, &args.prompt_text) else {
        return Ok(None);
    };
    let (samples, sr) = read_audio_mono(wav)?;
    let samples = resample(&samples, sr, model.sample_rate())?;
    Ok(Some(VoicePrompt {
        codes: model.encode_audio(&samples)?,
        // As in the reference's voice cloning: the transcript goes before the text.
        transcript: transcript.clone(),
    }))
}

fn generate_options(args: &Args) -> GenerateOptions {
    GenerateOptions {
        max_tokens: args.max_tokens,
        cfg_scale: args.cfg_scale,
        temperature: args.temperature,
        top_p: args.top_p,
        cfg_filter_top_k: args.cfg_filter_top_k,
        seed: args.seed,
        audio_prompt: None,
        ignore_eos: args.bench,
    }
}

fn run_batch(args: &Args, text: &str) -> Result<()> {
    let lines = batch_cli::lines_of(text)?;
    let model = load_model(args)?;
    let voice = voice_prompt(args, &model)?;
    let mut opts = generate_options(args);
    let lines = match voice {
        Some(v) => {
            opts.audio_prompt = Some(v.codes);
            lines
                .into_iter()
                .map(|l| format!("{}{l}", v.transcript))
                .collect()
        }
        None => lines,
    };
    batch_cli::run(
        &model,
        batch_cli::BatchRun {
            slots: args.batch.unwrap_or(1) as usize,
            lines,
            opts,
            out_dir: args.out.as_deref(),
            codes_dir: args.save_codes.as_deref(),
            float: args.float,
            json: args.json,
            quiet: args.quiet,
        },
    )
}

fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let text = read_text(&args)?;
    if args.batch.is_some() {
        return run_batch(&args, &text);
    }
    if args.stream && args.out.is_none() {
        bail!("--stream needs somewhere to stream to: --out - (stdout) or --out FILE.wav");
    }
    if args.out.is_none() && args.save_codes.is_none() && !args.bench {
        bail!("nothing to write: give --out speech.wav and/or --save-codes codes.npy");
    }
    let to_stdout = args.out.as_deref() == Some(std::path::Path::new("-"));
    for p in args
        .out
        .iter()
        .filter(|_| !to_stdout)
        .chain(args.save_codes.iter())
    {
        check_writable(p)?;
    }

    let model = load_model(&args)?;
    if args.out.is_some() {
        // Before spending time on generation.
        model.require_codec("write audio")?;
    }

    let voice = voice_prompt(&args, &model)?;
    let opts = generate_options(&args);
    let sopts = ScriptOptions {
        carry: !args.no_carry,
        crossfade_s: args.crossfade_ms / 1000.0,
        ..ScriptOptions::default()
    };
    // Any length: a script longer than one generation is split into segments.
    let plan = ScriptPlan::new(&model, &text, voice.as_ref(), &opts, &sopts)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let warned = plan.warnings.len();
    let segments = plan.segments.len();
    let frame_rate = model.manifest().dac.as_ref().map_or(44100.0 / 512.0, |d| {
        d.sample_rate as f64 / d.hop_length as f64
    });
    let bar = if args.quiet || args.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(plan.estimated_frames as u64);
        let template = if segments > 1 {
            "{bar:30} {pos}/~{len} frames, segment {prefix} {msg}"
        } else {
            "{bar:30} {pos}/{len} frames {msg}"
        };
        b.set_style(ProgressStyle::with_template(template).expect("valid template"));
        b
    };
    let show = |p: ScriptProgress| {
        bar.set_length(p.estimated_frames as u64);
        bar.set_position(p.frames as u64);
        bar.set_prefix(format!("{}/{}", p.segment + 1, p.segments));
        if p.elapsed_s > 0.0 {
            let fps = p.steps as f64 / p.elapsed_s;
            bar.set_message(format!(
                "{:.2}s audio, {fps:.1} steps/s, {:.2}x realtime",
                p.frames as f64 / frame_rate,
                fps / frame_rate
            ));
        }
    };
    let rate = model.sample_rate();
    let format = if args.float {
        WavFormat::Float32
    } else {
        WavFormat::Pcm16
    };
    let mut dac_s = 0.0;
    let mut first_audio_s = None;
    let mut audio: Option<Vec<f32>> = None;
    // Samples written to stdout (the others are counted in `audio`).
    let mut streamed = 0;
    let script = if args.stream || to_stdout {
        let chunks = ChunkSizes {
            first: args.first_chunk_frames as usize,
            rest: args.chunk_frames as usize,
        };
        let mut s = ScriptStream::new(&model, plan, voice, &opts, &sopts, chunks)?;
        let mut sink = if to_stdout {
            let out = std::io::stdout().lock();
            Some(match args.format {
                OutFormat::Wav => SampleStream::wav(out, rate, format).map_err(output_error)?,
                OutFormat::Pcm => SampleStream::raw(out, format),
            })
        } else {
            None
        };
        let mut all = Vec::new();
        while let Some(chunk) = s.next_chunk()? {
            streamed += chunk.len();
            match sink.as_mut() {
                Some(w) => w.write(chunk).map_err(output_error)?,
                None => all.extend_from_slice(chunk),
            }
            show(s.generator().progress());
        }
        first_audio_s = s.first_audio_seconds();
        if sink.is_none() {
            audio = Some(all);
        }
        s.finish()
    } else {
        let mut g = ScriptGenerator::new(&model, plan, voice, &opts)?;
        while !g.is_done() {
            g.step()?;
            show(g.progress());
        }
        let script = g.finish();
        if args.out.is_some() {
            let t = Instant::now();
            audio = Some(script.decode_audio(&model, sopts.crossfade_s)?);
            dac_s = t.elapsed().as_secs_f64();
        }
        script
    };
    bar.finish_and_clear();
    // The plan's warnings were shown; these are the segments that ran out of steps.
    for w in &script.warnings[script.warnings.len().min(warned)..] {
        eprintln!("warning: {w}");
    }
    let gen = &script.generation;

    if let Some(path) = &args.save_codes {
        dia_run::npy::write_codes(path, &gen.codes)?;
    }
    let samples = audio.as_ref().map_or(streamed, Vec::len);
    if let (Some(path), Some(audio)) = (&args.out, &audio) {
        match args.format {
            OutFormat::Wav => write_wav(path, audio, rate, format)?,
            OutFormat::Pcm => {
                let mut bytes = Vec::new();
                SampleStream::raw(&mut bytes, format).write(audio)?;
                dia_run::npy::write_atomic(path, &bytes)?;
            }
        }
    }

    let audio_s = gen.codes.len() as f64 / frame_rate;
    let steps_per_s = gen.steps as f64 / gen.decode_s.max(1e-9);
    let segment_reports: Vec<_> = script
        .segments
        .iter()
        .map(|r| {
            serde_json::json!({
                "text": r.text,
                "frames": r.frames.len(),
                "steps": r.steps,
                "eos_step": r.eos_step,
                "prompt_frames": r.prompt_frames,
            })
        })
        .collect();
    let summary = serde_json::json!({
        "frames": gen.codes.len(),
        "audio_seconds": audio_s,
        "samples": samples,
        "steps": gen.steps,
        "eos_step": gen.eos_step,
        "steps_per_second": steps_per_s,
        "realtime_factor": steps_per_s / frame_rate,
        "encoder_seconds": gen.encoder_s,
        "first_step_seconds": gen.first_step_s,
        "decode_seconds": gen.decode_s,
        "dac_seconds": dac_s,
        "streamed": args.stream || to_stdout,
        "first_audio_seconds": first_audio_s,
        "total_seconds": start.elapsed().as_secs_f64(),
        "load_seconds": {
            "manifest": model.load_timings().manifest_s,
            "encoder": model.load_timings().encoder_s,
            "decoder_step": model.load_timings().decoder_step_s,
            "codec": model.load_timings().codec_s,
        },
        "segments": segment_reports,
        "warnings": script.warnings,
        "provider": model.provider().name(),
        "peak_rss_mb": peak_rss_mb(),
        "per_step_ms": {
            "upload": 1e3 * gen.step_timings.upload_s / gen.step_timings.steps.max(1) as f64,
            "run": 1e3 * gen.step_timings.run_s / gen.step_timings.steps.max(1) as f64,
            "download": 1e3 * gen.step_timings.download_s / gen.step_timings.steps.max(1) as f64,
            "sample": 1e3 * gen.sample_s / gen.steps.max(1) as f64,
            "total": 1e3 * gen.decode_s / gen.steps.max(1) as f64,
        },
        "cuda_graph": model.cuda_graph(),
        "threads": args.threads,
        "out": args.out.as_ref().map(|p| p.display().to_string()),
        "codes": args.save_codes.as_ref().map(|p| p.display().to_string()),
    });
    if args.json && to_stdout {
        // Stdout carries the audio.
        eprintln!("{summary}");
    } else if args.json {
        println!("{summary}");
    } else if !args.quiet {
        eprintln!(
            "{} frames ({audio_s:.2}s of audio) in {} steps on {}: {steps_per_s:.1} steps/s, {:.2}x realtime; encoder {:.3}s, decode {:.2}s, DAC {dac_s:.2}s{}",
            gen.codes.len(),
            gen.steps,
            model.provider().name(),
            steps_per_s / frame_rate,
            gen.encoder_s,
            gen.decode_s,
            gen.eos_step.map_or(String::new(), |s| format!(", EOS at step {s}"))
        );
    }
    Ok(())
}
