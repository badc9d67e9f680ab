//! The `dia-run` command line is a contract: this exact invocation writes the reference's
//! greedy codes as int64 .npy.

use std::fs;
use std::process::Command;

use dia_tests::{bin, bundle, dia_run, fixtures, reference, run, scratch, stderr, texts};
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
    assert_eq!(
        (m.target, m.dtype),
        (dia_bundle::Target::Fused, dia_bundle::Dtype::Float32)
    );
    let dec = &m.graphs.decoder_step;
    let layers = m.config.decoder_config.num_hidden_layers;
    // tokens, step, cross_bias + 4 per layer; logits + 2 per layer.
    assert_eq!(dec.inputs.len(), 3 + 4 * layers);
    assert_eq!(dec.outputs.len(), 1 + 2 * layers);
    // K stored like V, [rows, kv heads, frames, head dim]; the rows (2 per utterance: a
    // batch) and the text length are dynamic.
    assert_eq!(dec.input("self_k_0").unwrap().shape, vec![-1, 2, 128, 16]);
    assert_eq!(dec.input("cross_k_0").unwrap().shape, vec![-1, 8, -1, 16]);
    assert_eq!(dec.output("logits").unwrap().shape, vec![-1, 9, 1028]);
    for f in [
        "encoder.onnx",
        "encoder.weights",
        "decoder_step.onnx",
        "decoder_step.weights",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn export_and_check_each_have_their_help() {
    let o = run("dia-export", &["--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = String::from_utf8_lossy(&o.stdout);
    // Both forms in the usage, the export's options, and how to name a `check` directory.
    for want in [
        "Usage: dia-export [OPTIONS] --out <OUT> <CHECKPOINT>",
        "dia-export <COMMAND>",
        "check",
        "--dtype <DTYPE>",
        "--quantize <QUANTIZE>",
        "./check",
    ] {
        assert!(help.contains(want), "`{want}` not in:\n{help}");
    }

    for args in [&["check", "--help"][..], &["help", "check"][..]] {
        let o = run("dia-export", args);
        assert!(o.status.success(), "{}", stderr(&o));
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(
            help.contains("Usage: dia-export check <--verify|--ep <EP>> <BUNDLE>")
                && help.contains("SHA-256"),
            "{args:?}:\n{help}"
        );
        // The export's options are not the check's.
        assert!(!help.contains("--dtype"), "{args:?}:\n{help}");
    }
}

#[test]
fn a_checkpoint_directory_named_check_exports_as_dot_slash_check() {
    let parent = scratch().join("named-check");
    let ckpt = parent.join("check");
    fs::create_dir_all(&ckpt).unwrap();
    for f in ["config.json", "model.safetensors"] {
        fs::copy(fixtures().join("tiny-nari").join(f), ckpt.join(f)).unwrap();
    }
    let export = |args: &[&str]| {
        Command::new(bin("dia-export"))
            .args(args)
            .current_dir(&parent)
            .output()
            .unwrap()
    };
    let o = export(&["./check", "--out", "bundle", "--max-frames", "64"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = dia_bundle::Manifest::load(&parent.join("bundle")).unwrap();
    assert_eq!((m.max_frames, m.source_layout.as_str()), (64, "nari"));
    // The bare word is the subcommand, which has no --out: a usage error, nothing written.
    let o = export(&["check", "--out", "bundle2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unexpected argument '--out'"),
        "{}",
        stderr(&o)
    );
    assert!(!parent.join("bundle2").exists());
}
