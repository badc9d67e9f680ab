//! `dia-export CHECKPOINT_DIR --out BUNDLE_DIR [--dtype f32|f16] [--max-text-len N] [--max-frames N]
//! [--dac DAC_DIR]`

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use dia_export::{export, ExportOptions};
use dia_graphs::quant::QuantSpec;
use dia_graphs::DType;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Precision {
    F32,
    F16,
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
    /// Weight and activation dtype (norms, RoPE, softmax and logits stay float32).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Precision,
    /// Encoder text length; texts are padded to it (default: the model's, 1024).
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
enum Quantize {
    None,
    Int8,
    Int4,
}


fn main() -> Result<()> {
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
        dtype: match args.dtype {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
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
    Ok(())
}
