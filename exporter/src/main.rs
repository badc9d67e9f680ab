//! `dia-export CHECKPOINT_DIR --out BUNDLE_DIR [--dtype f32|f16] [--max-text-len N] [--max-frames N]
//! [--dac DAC_DIR]`
//!
//! `dia-export check BUNDLE_DIR --ep coreml`: every node of the bundle's graphs that the execution
//! provider would not take, and why; exit status 0 when all are supported, 1 when some are not,
//! 2 on an error (a checkpoint directory named `check` is passed as `./check`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use dia_export::{coreml_check, export, ExportOptions};
use dia_graphs::quant::QuantSpec;
use dia_graphs::{DType, Target};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Precision {
    F32,
    F16,
    Bf16,
}

/// Export a Dia checkpoint (nari-labs or transformers layout) to an ONNX model bundle.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Checkpoint directory: config.json + model.safetensors.
    checkpoint: PathBuf,
    /// Bundle directory to write (replaced atomically if it already holds a bundle).
    #[arg(long)]
    out: PathBuf,
    /// Weight and activation dtype (norms, RoPE, softmax and logits stay float32); default f32
    /// (f16 with --target coreml). Use f16 (or bf16) for NVIDIA GPUs.
    #[arg(long, value_enum)]
    dtype: Option<Precision>,
    /// fused (the decoder step written with ONNX Runtime's fused attention and norm kernels:
    /// the fastest on the CPU and CUDA providers), portable (standard ONNX operators only: any
    /// ONNX runtime, and float32 on CUDA) or coreml (graphs the CoreML provider takes whole:
    /// static shapes, int32 ids, float masks).
    #[arg(long, value_enum, default_value = "fused")]
    target: TargetArg,
    /// Longest text in tokens (default: the model's, 1024). The portable and coreml steps pad
    /// every text to it; the fused step pads to the shortest of 32, 64, 128, ... that holds it.
    #[arg(long)]
    max_text_len: Option<usize>,
    /// Most frames one generation can have: the decoder's cache length (default: the model's, 3072).
    #[arg(long)]
    max_frames: Option<usize>,
    /// DAC codec directory (config.json + model.safetensors, transformers or descript layout,
    /// e.g. the Hub's descript/dac_44khz): also export the codec's decoder and encoder
    /// (always float32).
    #[arg(long)]
    dac: Option<PathBuf>,
    /// Weight-only block quantisation of the projection matrices (ONNX Runtime MatMulNBits,
    /// blocks of 32, int8 activations on the CPU): int8 or int4.
    #[arg(long, value_enum, default_value = "none")]
    quantize: Quantize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TargetArg {
    Fused,
    Portable,
    Coreml,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Quantize {
    None,
    Int8,
    Int4,
}

/// Check which nodes of a bundle's graphs an ONNX Runtime execution provider would not take.
#[derive(Parser, Debug)]
#[command(name = "dia-export check", version)]
struct CheckArgs {
    /// Bundle directory (manifest.json and the graphs it lists).
    bundle: PathBuf,
    /// Execution provider whose rules to check (only `coreml` for now: ONNX Runtime's CoreML EP,
    /// ML Program format, static shapes).
    #[arg(long)]
    ep: String,
}

/// `dia-export check`: prints per graph its unsupported nodes; exit status 0 when every node of
/// every graph is supported, 1 when some are not, 2 on an error.
fn check_main() -> ExitCode {
    let args = CheckArgs::parse_from(std::env::args().skip(1));
    let reports = match coreml_check::check_bundle_report(&args.bundle, &args.ep) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{}: {} rules ({})",
        args.bundle.display(),
        args.ep,
        coreml_check::ORT_REFERENCE
    );
    let mut total = 0;
    for r in &reports {
        println!(
            "{}: {} nodes, {} unsupported",
            r.file,
            r.nodes,
            r.unsupported.len()
        );
        if !r.unsupported.is_empty() {
            let by_op: Vec<String> = r
                .by_op()
                .iter()
                .map(|(op, n)| format!("{op} {n}"))
                .collect();
            println!("  by op type: {}", by_op.join(", "));
        }
        for u in &r.unsupported {
            println!("  {} ({}): {} [{}]", u.node, u.op_type, u.reason, u.source);
        }
        total += r.unsupported.len();
    }
    if total == 0 {
        println!("all nodes of all {} graphs are supported", reports.len());
        ExitCode::SUCCESS
    } else {
        println!(
            "{total} unsupported nodes in {} of {} graphs",
            reports.iter().filter(|r| !r.unsupported.is_empty()).count(),
            reports.len()
        );
        ExitCode::from(1)
    }
}

fn main() -> Result<ExitCode> {
    if std::env::args().nth(1).as_deref() == Some("check") {
        return Ok(check_main());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let report = export(&ExportOptions {
        checkpoint: args.checkpoint,
        out: args.out.clone(),
        target: match args.target {
            TargetArg::Portable => Target::Portable,
            TargetArg::Coreml => Target::CoreMl,
            TargetArg::Fused => Target::Fused,
        },
        dtype: match args.dtype.unwrap_or(match args.target {
            TargetArg::Portable | TargetArg::Fused => Precision::F32,
            TargetArg::Coreml => Precision::F16,
        }) {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        },
        max_text_len: args.max_text_len,
        max_frames: args.max_frames,
        dac: args.dac,
        quantize: match args.quantize {
            Quantize::None => None,
            Quantize::Int8 => Some(QuantSpec::int8()),
            Quantize::Int4 => Some(QuantSpec::int4()),
        },
    })?;
    for (name, size) in &report.files {
        println!("{:>14}  {}", size, args.out.join(name).display());
    }
    println!(
        "exported {} layout, {}, text {} tokens, {} frames, in {:.1}s",
        report.manifest.source_layout,
        report.manifest.dtype,
        report.manifest.max_text_len,
        report.manifest.max_frames,
        report.seconds
    );
    if let Some(dac) = &report.manifest.dac {
        println!(
            "with the DAC codec ({} layout, {} Hz, {} codebooks, hop {}; float32)",
            dac.source_layout, dac.sample_rate, dac.n_codebooks, dac.hop_length
        );
    }
    Ok(ExitCode::SUCCESS)
}
