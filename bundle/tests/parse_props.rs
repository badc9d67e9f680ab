//! Property tests for the bundle crate's parsers of outside input, through its public API:
//! Dia's `config.json` (`DiaConfig::from_json_str`, seeded with the committed fixtures
//! `tests/fixtures/tiny-nari` and `tiny-hf`) and `manifest.json` (`Manifest::load` on a temporary
//! directory, seeded with a manifest built here from the public types). Arbitrary and mutated
//! input must give `Ok` (when still valid) or an `Err` naming the file, never a panic, a hang,
//! or an allocation sized by a claimed count rather than by the file. Each parse runs under
//! [`guard::guarded`]: on its own thread, with a time limit, and with its largest single
//! allocation recorded by a tracking global allocator.

use std::path::Path;
use std::sync::OnceLock;

use dia_bundle::{
    names, DacInfo, DiaConfig, Dtype, ElementType, GraphSpec, Graphs, Manifest, Target, TensorSpec,
    FORMAT_VERSION,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

#[path = "../../tests/support/guard.rs"]
mod guard;
#[path = "../../tests/support/json_edit.rs"]
mod json_edit;
#[path = "../../tests/support/mutate.rs"]
mod mutate;

use guard::{config, guarded};
use json_edit::{edit_value, new_value};
use mutate::{apply, edit};

/// What parsing `len` bytes of JSON may allocate at once: the text and its tree, a few times.
fn json_alloc_limit(len: usize) -> usize {
    (1 << 20) + 64 * len
}

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

/// The fixtures' config.json files (nari-labs and transformers layouts).
fn seed_configs() -> &'static [String; 2] {
    static SEEDS: OnceLock<[String; 2]> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        ["tiny-nari", "tiny-hf"]
            .map(|d| std::fs::read_to_string(dir.join(d).join("config.json")).unwrap())
    })
}

/// Parses `text` as `x/config.json`; checks what any outcome must satisfy.
fn parse_config(text: String) -> Result<DiaConfig, String> {
    let limit = json_alloc_limit(text.len());
    let t = text.clone();
    let got = guarded(10, limit, move || {
        DiaConfig::from_json_str(&t, "x/config.json").map_err(|e| e.to_string())
    });
    match &got {
        Ok(c) => {
            assert_eq!(c.validate(), Ok(()));
            // What parses serialises and parses back to itself.
            let again = DiaConfig::from_json_str(&serde_json::to_string(c).unwrap(), "again")
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&again, c);
        }
        Err(e) => assert!(e.contains("x/config.json"), "the error names no file: {e}"),
    }
    got
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn config_fixtures_parse(which in 0usize..2) {
        prop_assert!(parse_config(seed_configs()[which].clone()).is_ok());
    }

    #[test]
    fn arbitrary_config_text_is_refused(text in prop_oneof![
        any::<String>(),
        "[{}\\[\\]\",:0-9a-z_ -]{0,80}",
    ]) {
        prop_assert!(parse_config(text).is_err());
    }

    #[test]
    fn mutated_configs_parse_or_are_refused(which in 0usize..2, edits in prop::collection::vec(edit(), 1..4)) {
        let mut bytes = seed_configs()[which].clone().into_bytes();
        for e in &edits {
            apply(&mut bytes, e);
        }
        let _ = parse_config(String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn edited_config_values_parse_or_are_refused(
        which in 0usize..2,
        edits in prop::collection::vec((any::<Index>(), new_value()), 1..3),
    ) {
        let mut text = seed_configs()[which].clone();
        for (at, new) in &edits {
            text = edit_value(&text, at, new);
        }
        let _ = parse_config(text);
    }
}

#[test]
fn deeply_nested_configs_are_refused() {
    for depth in [100, 1_000, 100_000] {
        for text in [
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            format!(
                "{{\"encoder_config\": {{\"x\": {}{}}}}}",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            ),
        ] {
            let e = parse_config(text).unwrap_err();
            assert!(e.contains("x/config.json"), "{e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// manifest.json
// ---------------------------------------------------------------------------------------------

/// A valid manifest for the tiny-nari config, built from the public types, for `target`
/// (with the DAC graphs when `dac`).
fn seed_manifest(target: Target, dac: bool) -> String {
    let config = DiaConfig::from_json_str(&seed_configs()[0], "config.json").unwrap();
    let spec = |file: &str| GraphSpec {
        file: file.into(),
        weights: Some(format!("{file}.data")),
        inputs: vec![],
        outputs: vec![],
    };
    let d = config.decoder_config.clone();
    let mut m = Manifest {
        format_version: FORMAT_VERSION,
        producer: "parse_props".into(),
        config,
        dtype: Dtype::Float32,
        max_text_len: 64,
        max_frames: 256,
        source_layout: "nari".into(),
        graphs: Graphs {
            encoder: spec("encoder.onnx"),
            decoder_step: spec("decoder_step.onnx"),
            dac_decoder: dac.then(|| spec("dac_decoder.onnx")),
            dac_encoder: dac.then(|| spec("dac_encoder.onnx")),
        },
        dac: dac.then(|| DacInfo {
            sample_rate: 44_100,
            hop_length: 512,
            n_codebooks: d.num_channels,
            codebook_size: 1024,
            source_layout: "transformers".into(),
            decoder_chunk_frames: None,
            decoder_context_frames: 0,
        }),
        target,
        quantization: None,
        files: vec![],
    };
    m.graphs.decoder_step.inputs = m.expected_step_inputs();
    m.graphs.decoder_step.outputs = vec![TensorSpec::new(
        names::step::LOGITS,
        ElementType::Float32,
        &[2, d.num_channels as i64, d.vocab_size as i64],
    )];
    m.graphs.encoder.outputs = (0..d.num_hidden_layers)
        .flat_map(|i| [names::encoder::cross_k(i), names::encoder::cross_v(i)])
        .map(|n| TensorSpec::new(n, ElementType::Float32, &[2, 2, 64, 16]))
        .collect();
    serde_json::to_string_pretty(&m).unwrap()
}

fn seed_manifests() -> &'static [String; 3] {
    static SEEDS: OnceLock<[String; 3]> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            seed_manifest(Target::Portable, false),
            seed_manifest(Target::Fused, true),
            seed_manifest(Target::CoreMl, true),
        ]
    })
}

/// Writes `bytes` as `manifest.json` in a fresh directory and loads it; checks what any
/// outcome must satisfy.
fn load_manifest(bytes: Vec<u8>) -> Result<Manifest, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.json"), &bytes).unwrap();
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let got = guarded(10, json_alloc_limit(bytes.len()), move || {
        Manifest::load(dir.path()).map_err(|e| e.to_string())
    });
    if let Err(e) = &got {
        assert!(
            e.contains(&name) && e.contains("manifest.json"),
            "the error names no file: {e}"
        );
    }
    got
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn manifest_seeds_load(which in 0usize..3) {
        prop_assert!(load_manifest(seed_manifests()[which].clone().into_bytes()).is_ok());
    }

    #[test]
    fn arbitrary_manifests_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert!(load_manifest(bytes).is_err());
    }

    #[test]
    fn mutated_manifests_load_or_are_refused(which in 0usize..3, edits in prop::collection::vec(edit(), 1..4)) {
        let mut bytes = seed_manifests()[which].clone().into_bytes();
        for e in &edits {
            apply(&mut bytes, e);
        }
        let _ = load_manifest(bytes);
    }

    #[test]
    fn edited_manifest_values_load_or_are_refused(
        which in 0usize..3,
        edits in prop::collection::vec((any::<Index>(), new_value()), 1..3),
    ) {
        let mut text = seed_manifests()[which].clone();
        for (at, new) in &edits {
            text = edit_value(&text, at, new);
        }
        let _ = load_manifest(text.into_bytes());
    }
}

/// A manifest file larger than any real one is refused by its size, before it is read.
#[test]
fn oversized_manifest_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("manifest.json")).unwrap();
    f.set_len(1 << 40).unwrap(); // sparse: nothing is written
    let p = dir.path().to_path_buf();
    let e = guarded(10, 1 << 20, move || {
        Manifest::load(&p).map(|_| ()).unwrap_err().to_string()
    });
    assert!(
        e.contains("manifest.json") && e.contains("too large"),
        "{e}"
    );
}

/// FAILS (for the lead: bundle/src/manifest.rs). The decoder step's expected inputs are listed,
/// four per decoder layer, before the manifest's own inputs are compared with them
/// (`check_graph_specs` -> `expected_step_inputs`): a manifest claiming 2^20 decoder layers
/// builds four million tensor specs (one allocation of 470 MB, more in all) whatever its real
/// size. And the manifest's `config` is deserialised by serde's derive, which skips the
/// `1..=2^20` bounds `DiaConfig::from_json_str` applies: 2^20 + 1 layers pass too, and 10^9
/// would exhaust memory. Found by `edited_manifest_values_load_or_are_refused` (shrinks to
/// `num_hidden_layers: 1048577`).
#[test]
fn claimed_layer_count_does_not_size_the_check() {
    for layers in [1 << 20, (1 << 20) + 1] {
        let mut v: Value = serde_json::from_str(&seed_manifests()[0]).unwrap();
        v["config"]["decoder_config"]["num_hidden_layers"] = json!(layers);
        let text = serde_json::to_string(&v).unwrap();
        assert!(load_manifest(text.into_bytes()).is_err(), "{layers} layers");
    }
}
