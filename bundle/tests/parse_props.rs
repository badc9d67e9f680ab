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

use guard::{config, guarded};

/// What parsing `len` bytes of JSON may allocate at once: the text and its tree, a few times.
fn json_alloc_limit(len: usize) -> usize {
    (1 << 20) + 64 * len
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

/// One edit of a byte string; positions are fractions of its length.
#[derive(Clone, Debug)]
enum Edit {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), 1u8..).prop_map(|(i, x)| Edit::Flip(i, x)),
        (
            any::<Index>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                Just(b"[".to_vec()),
                Just(b"{\"a\":".to_vec()),
                Just(b"-".to_vec()),
                Just(b"99999999999999999999".to_vec()),
            ]
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| Edit::Remove(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    let len = bytes.len();
    let at = |i: &Index| i.index(len + 1);
    match e {
        Edit::Truncate(i) => bytes.truncate(at(i)),
        Edit::Flip(i, x) if len > 0 => bytes[i.index(len)] ^= x,
        Edit::Flip(..) => {}
        Edit::Insert(i, b) => {
            let p = at(i);
            bytes.splice(p..p, b.iter().copied());
        }
        Edit::Remove(i, n) => {
            let p = at(i);
            bytes.drain(p..(p + n).min(len));
        }
    }
}

/// Every number- or list-valued key path of a JSON value.
fn value_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(k.clone());
                value_paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            out.push(prefix.clone());
            for (i, x) in a.iter().enumerate() {
                prefix.push(i.to_string());
                value_paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Number(_) => out.push(prefix.clone()),
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        v => &mut v[k.as_str()],
    })
}

/// A replacement for a value; `Raw` is spliced in as text (numbers a JSON value cannot hold),
/// `Many` is a list of `n` copies, `Nested` brackets nested `n` deep.
#[derive(Clone, Debug)]
enum NewValue {
    Json(Value),
    Raw(String),
    Many(usize, i64),
    Nested(usize),
}

fn new_value() -> impl Strategy<Value = NewValue> {
    prop_oneof![
        4 => prop_oneof![
            Just(json!(0)),
            Just(json!(1)),
            Just(json!(2)),
            Just(json!(3)),
            Just(json!(-1)),
            Just(json!(i64::MIN)),
            Just(json!(1 << 20)),
            Just(json!((1 << 20) + 1)),
            Just(json!(1u64 << 32)),
            Just(json!(1u64 << 62)),
            Just(json!(u64::MAX)),
            Just(json!(1.5)),
            Just(json!(1e300)),
            Just(json!(-1e-300)),
            Just(json!("7")),
            Just(Value::Null),
            Just(json!([])),
            Just(json!({})),
        ]
        .prop_map(NewValue::Json),
        1 => prop_oneof![
            Just("18446744073709551616".to_string()),
            Just("-9223372036854775809".to_string()),
            Just("1e400".to_string()),
            Just("-0".to_string()),
            Just("NaN".to_string()),
        ]
        .prop_map(NewValue::Raw),
        1 => (
            prop_oneof![0usize..4, Just(9), Just(10_000)],
            prop_oneof![Just(0i64), Just(1), Just(-1), Just(1 << 20), Just(i64::MAX)],
        )
            .prop_map(|(n, v)| NewValue::Many(n, v)),
        1 => prop_oneof![Just(127usize), Just(129), Just(5_000)].prop_map(NewValue::Nested),
    ]
}

/// `text` with the value at a path (picked by `which`) replaced.
fn edit_value(text: &str, which: &Index, new: &NewValue) -> String {
    // (An earlier edit may have left text no JSON parser takes: leave it so.)
    let Ok(mut v) = serde_json::from_str::<Value>(text) else {
        return text.to_string();
    };
    let mut paths = Vec::new();
    value_paths(&v, &mut Vec::new(), &mut paths);
    if paths.is_empty() {
        return text.to_string();
    }
    let slot = at_path(&mut v, &paths[which.index(paths.len())]);
    let raw = match new {
        NewValue::Json(x) => {
            *slot = x.clone();
            return serde_json::to_string(&v).unwrap();
        }
        NewValue::Many(n, x) => {
            *slot = json!(vec![*x; *n]);
            return serde_json::to_string(&v).unwrap();
        }
        NewValue::Raw(r) => r.clone(),
        NewValue::Nested(depth) => format!("{}{}", "[".repeat(*depth), "]".repeat(*depth)),
    };
    *slot = json!("@@RAW@@");
    serde_json::to_string(&v)
        .unwrap()
        .replace("\"@@RAW@@\"", &raw)
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
