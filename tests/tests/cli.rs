//! The `dia-run` command line is a contract: this exact invocation writes the reference's
//! greedy codes as int64 .npy.

use dia_tests::{bundle, dia_run, reference, run, scratch, stderr, texts};
use ndarray::Array2;
use ndarray_npy::read_npy;

#[test]
fn contract_command_line_writes_reference_codes() {
    let t = texts();
    let case = t["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "long")
        .expect("long case")
        .clone();
    let max_tokens = case["max_tokens"].as_u64().unwrap().to_string();
    let want: Array2<i64> = read_npy(reference("greedy_long.npy")).unwrap();
    for layout in ["tiny-nari", "tiny-hf"] {
        let out = scratch().join(format!("codes-{layout}.npy"));
        let b = bundle(layout);
        let o = dia_run(
            &b,
            &[
                "--text",
                case["text"].as_str().unwrap(),
                "--temperature",
                "0",
                "--cfg-scale",
                "3",
                "--cfg-filter-top-k",
                "45",
                "--max-tokens",
                &max_tokens,
                "--save-codes",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let got: Array2<i64> = read_npy(&out).unwrap();
        assert_eq!(got, want, "{layout}");
    }
}

#[test]
fn export_cli_writes_manifest_with_every_io() {
    let out = scratch().join("cli-bundle");
    let ckpt = dia_tests::fixtures().join("tiny-nari");
    let o = run(
        "dia-export",
        &[
            ckpt.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-frames",
            "128",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = dia_bundle::Manifest::load(&out).unwrap();
    assert_eq!(m.max_frames, 128);
    assert_eq!(m.source_layout, "nari");
    // The default: fused kernels, float32.
    assert_eq!((m.target.as_str(), m.dtype.as_str()), ("fused", "float32"));
    let dec = &m.graphs.decoder_step;
    let layers = m.config.decoder_config.num_hidden_layers;
    // tokens, step, cross_bias + 4 per layer; logits + 2 per layer.
    assert_eq!(dec.inputs.len(), 3 + 4 * layers);
    assert_eq!(dec.outputs.len(), 1 + 2 * layers);
    // K stored like V, [pair, kv heads, frames, head dim]; the text length is dynamic.
    assert_eq!(dec.input("self_k_0").unwrap().shape, vec![2, 2, 128, 16]);
    assert_eq!(dec.input("cross_k_0").unwrap().shape, vec![2, 8, -1, 16]);
    assert_eq!(dec.output("logits").unwrap().shape, vec![2, 9, 1028]);
    for f in [
        "encoder.onnx",
        "encoder.weights",
        "decoder_step.onnx",
        "decoder_step.weights",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
}
