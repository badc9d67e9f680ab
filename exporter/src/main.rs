//! `dia-export CHECKPOINT_DIR --out BUNDLE_DIR [--dtype f32|f16] [--max-text-len N] [--max-frames N]
//! [--dac DAC_DIR]`
//!
//! `dia-export check BUNDLE_DIR [--verify] [--ep coreml]`: with `--verify`, every file's size
//! and SHA-256 against the manifest; with `--ep`, every node of the bundle's graphs that the
//! execution provider would not take, and why. Exit status 0 when all is well, 1 when a file is
//! damaged or some nodes are not supported, 2 on an error.
//!
//! `check` is a subcommand: a checkpoint directory literally named `check` is exported as
//! `dia-export ./check --out BUNDLE` (any path that is not the bare word works).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dia_export::{export, ExportOptions};
use dia_graphs::quant::QuantSpec;
use dia_graphs::{DType, Target};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Precision {
    F32,
    F16,
    Bf16,
}

/// Export a Dia checkpoint (nari-labs or transformers layout) to an ONNX model bundle, or check
/// a bundle (`dia-export check`).
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    export: ExportArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a bundle: its files against the manifest's sizes and SHA-256 (--verify), and which
    /// nodes of its graphs an ONNX Runtime execution provider would not take (--ep); exit
    /// status 0 when all is well, 1 when a file is damaged or a node not taken, 2 on an error.
    Check(CheckArgs),
}

/// The export: `dia-export CHECKPOINT --out BUNDLE [OPTIONS]` (the arguments when no subcommand
/// is given; clap requires CHECKPOINT and --out then).
#[derive(Args, Debug)]
struct ExportArgs {
    /// Checkpoint directory: config.json + model.safetensors (one named `check` is given as
    /// ./check: the bare word is the subcommand).
    #[arg(required = true)]
    checkpoint: Option<PathBuf>,
    /// Bundle directory to write (replaced atomically if it already holds a bundle).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
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

/// `dia-export check BUNDLE [--verify] [--ep EP]`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["verify", "ep"])))]
struct CheckArgs {
    /// Bundle directory (manifest.json and the graphs it lists).
    bundle: PathBuf,
    /// Read every file of the bundle and compare its size and SHA-256 with the manifest's
    /// record (a download or copy that went wrong).
    #[arg(long)]
    verify: bool,
    /// Execution provider whose rules to check (only `coreml` for now: ONNX Runtime's CoreML EP,
    /// ML Program format, static shapes).
    #[arg(long)]
    ep: Option<String>,
}

/// `dia-export check`: `--verify` checks the files against the manifest; `--ep` prints per
/// graph its unsupported nodes. Exit status 0 when the files are intact and every node of every
/// graph is supported, 1 when a file is damaged or some nodes are not supported, 2 on an error.
fn check_main(args: &CheckArgs) -> ExitCode {
    if args.verify {
        let verified =
            dia_bundle::Manifest::load(&args.bundle).and_then(|m| m.verify_hashes(&args.bundle));
        match verified {
            Ok(n) => println!(
                "{}: all {n} files match the manifest",
                args.bundle.display()
            ),
            Err(e @ dia_bundle::BundleError::Damaged { .. }) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match &args.ep {
        Some(ep) => check_ep(&args.bundle, ep),
        None => ExitCode::SUCCESS,
    }
}

/// The nodes of the bundle's graphs that `ep` would not take.
fn check_ep(bundle: &std::path::Path, ep: &str) -> ExitCode {
    let reports = match dia_coreml_check::check_bundle_report(bundle, ep) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{}: {} rules ({})",
        bundle.display(),
        ep,
        dia_coreml_check::ORT_REFERENCE
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
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Check(args)) => Ok(check_main(args)),
        None => export_main(cli.export),
    }
}

/// `dia-export CHECKPOINT --out BUNDLE ...`.
fn export_main(args: ExportArgs) -> Result<ExitCode> {
    // Required by clap when there is no subcommand.
    let (Some(checkpoint), Some(out)) = (args.checkpoint, args.out) else {
        anyhow::bail!("give the checkpoint directory and --out BUNDLE_DIR");
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let report = export(&ExportOptions {
        checkpoint,
        out: out.clone(),
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
    for f in &report.files {
        println!("{:>14}  {}", f.bytes, out.join(&f.name).display());
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
