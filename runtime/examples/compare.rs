//! Accuracy of one bundle against another (e.g. int8 or float16 against float32) on the same
//! text: both decoders are fed the reference bundle's greedy frames (teacher forcing) for N
//! steps; reports the relative logit error and how often the greedy tokens agree.
//!
//! ```sh
//! cargo run --release -p dia-run --example compare -- REF_BUNDLE TEST_BUNDLE "[S1] text" 200 \
//!     [--ref-ep cpu] [--test-ep cuda] [--test-cuda-graph]
//! ```
//! (providers default to auto; a float32 reference is best run on the CPU, since the CUDA
//! provider's float32 MatMuls use TF32.)

use std::path::PathBuf;

use dia_run::delay::{delayed_prefill, Frames};
use dia_run::sampler::{Sampler, SamplingParams};
use dia_run::tokenizer::encode_text;
use dia_run::{DiaModel, ModelOptions};
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut ref_opts = ModelOptions::default();
    let mut test_opts = ModelOptions::default();
    let flag = |args: &mut Vec<String>, name: &str| -> Option<String> {
        let i = args.iter().position(|a| a == name)?;
        args.remove(i);
        (i < args.len()).then(|| args.remove(i))
    };
    if let Some(ep) = flag(&mut args, "--ref-ep") {
        ref_opts.provider = ep.parse()?;
    }
    if let Some(ep) = flag(&mut args, "--test-ep") {
        test_opts.provider = ep.parse()?;
    }
    if let Some(i) = args.iter().position(|a| a == "--test-cuda-graph") {
        args.remove(i);
        test_opts.cuda_graph = true;
    }
    if args.len() < 3 {
        return Err(
            "usage: compare REF_BUNDLE TEST_BUNDLE TEXT [STEPS] [--ref-ep EP] \
                    [--test-ep EP] [--test-cuda-graph]"
                .into(),
        );
    }
    let steps: usize = args.get(3).map_or(Ok(200), |s| s.parse())?;
    let a = DiaModel::load(&PathBuf::from(&args[0]), &ref_opts)?;
    let b = DiaModel::load(&PathBuf::from(&args[1]), &test_opts)?;
    let cfg = a.config().clone();
    let d = &cfg.decoder_config;
    let (c, v) = (d.num_channels, d.vocab_size);
    let steps = steps
        .min(a.manifest().max_frames)
        .min(b.manifest().max_frames)
        - 1;
    let tokens = encode_text(
        &args[2],
        a.manifest().max_text_len.min(b.manifest().max_text_len),
    )?;
    let mut ua = a.utterance(&tokens)?;
    let mut ub = b.utterance(&tokens)?;

    let params = SamplingParams {
        cfg_scale: 3.0,
        cfg_filter_top_k: 45,
        temperature: 0.0,
        top_p: 1.0,
    };
    let mut sa = Sampler::new(c, v, cfg.eos_token_id as usize);
    let mut sb = Sampler::new(c, v, cfg.eos_token_id as usize);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let prefill = delayed_prefill(None, &cfg.delay_pattern, cfg.bos_token_id);
    let mut frames = Frames::new(steps + 1 + prefill.len(), c);
    frames.data[..prefill.data.len()].copy_from_slice(&prefill.data);

    let (mut worst, mut sum_err) = (0f32, 0f64);
    let (mut agree, mut total) = (0usize, 0usize);
    let (mut pa, mut pb) = (vec![0i64; c], vec![0i64; c]);
    let mut input = vec![0i64; c];
    for t in 0..steps {
        input.copy_from_slice(frames.row(t));
        let la = ua.step(&input, t)?.to_vec();
        let lb = ub.step(&input, t)?;
        let scale = la.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = la
            .iter()
            .zip(lb)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale;
        worst = worst.max(err);
        sum_err += err as f64;
        sa.sample(&la, &params, &mut rng, &mut pa);
        sb.sample(lb, &params, &mut rng, &mut pb);
        agree += pa.iter().zip(&pb).filter(|(x, y)| x == y).count();
        total += c;
        // Teacher forcing: the reference's tokens go in, prefill slots stay.
        for (slot, &p) in frames.row_mut(t + 1).iter_mut().zip(&pa) {
            if *slot == -1 {
                *slot = p;
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "reference": args[0],
            "reference_provider": a.provider().name(),
            "test": args[1],
            "test_provider": b.provider().name(),
            "test_cuda_graph": b.cuda_graph(),
            "steps": steps,
            "max_rel_logit_err": worst,
            "mean_rel_logit_err": sum_err / steps as f64,
            "greedy_token_agreement": agree as f64 / total as f64,
        })
    );
    Ok(())
}
