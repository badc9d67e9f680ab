//! Property tests for the checkpoint readers: safetensors headers (`Checkpoint::open`,
//! `DacCheckpoint::open`), Dia's and the DAC's `config.json`, and the shard index. Seeds are
//! the committed fixtures (`tests/fixtures/tiny-nari`, `tiny-hf`, `tiny-dac`); arbitrary and
//! mutated files must open (when still valid) or give an `Err` naming the file or the tensor,
//! never a panic, a hang, or an allocation sized by a claimed rather than an actual length.
//! Each open runs under [`guard::guarded`]: on its own thread, with a time limit, and with its
//! largest single allocation recorded by a tracking global allocator.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dia_graphs::{Checkpoint, DacCheckpoint, DacConfig};
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
use mutate::{apply, edit, interesting_u64};

// ---------------------------------------------------------------------------------------------
// Seeds and opening
// ---------------------------------------------------------------------------------------------

/// A checkpoint directory's two files.
#[derive(Clone)]
struct Seed {
    config: String,
    weights: Vec<u8>,
}

impl Seed {
    /// The weights file split into its JSON header and its data.
    fn header(&self) -> (Value, &[u8]) {
        let n = u64::from_le_bytes(self.weights[..8].try_into().unwrap()) as usize;
        let header = serde_json::from_slice(&self.weights[8..8 + n]).unwrap();
        (header, &self.weights[8 + n..])
    }
}

struct Seeds {
    nari: Seed,
    hf: Seed,
    dac: Seed,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let load = |name: &str| Seed {
            config: std::fs::read_to_string(dir.join(name).join("config.json")).unwrap(),
            weights: std::fs::read(dir.join(name).join("model.safetensors")).unwrap(),
        };
        Seeds {
            nari: load("tiny-nari"),
            hf: load("tiny-hf"),
            dac: load("tiny-dac"),
        }
    })
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Dia,
    Dac,
}

/// Writes `files` into a fresh directory and opens it as a `kind` checkpoint; checks what any
/// outcome must satisfy and returns the error message, if any.
fn open(kind: Kind, files: Vec<(&'static str, Vec<u8>)>) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut total = 0;
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        total += bytes.len();
    }
    let path: PathBuf = dir.path().to_path_buf();
    let dir_name = path.file_name().unwrap().to_string_lossy().into_owned();
    // The files are mapped, not read; what is allocated follows the header and config sizes.
    let got = guarded(10, (2 << 20) + total, move || {
        let _keep = dir;
        match kind {
            Kind::Dia => Checkpoint::open(&path)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Kind::Dac => DacCheckpoint::open(&path)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    });
    if let Err(e) = &got {
        assert!(
            e.contains(&dir_name) || e.contains("tensor `"),
            "the error names neither the file nor a tensor: {e}"
        );
    }
    got
}

fn open_dia(config: &str, weights: Vec<u8>) -> Result<(), String> {
    open(
        Kind::Dia,
        vec![
            ("config.json", config.as_bytes().to_vec()),
            ("model.safetensors", weights),
        ],
    )
}

fn open_dac(config: &str, weights: Vec<u8>) -> Result<(), String> {
    open(
        Kind::Dac,
        vec![
            ("config.json", config.as_bytes().to_vec()),
            ("model.safetensors", weights),
        ],
    )
}

/// A weights file from a header and data, the header length field `len` (or the true one).
fn weights_file(header: &Value, data: &[u8], len: Option<u64>) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = len.unwrap_or(h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

// ---------------------------------------------------------------------------------------------
// safetensors headers
// ---------------------------------------------------------------------------------------------

/// One structural edit of a safetensors header, on the tensor `Index` picks.
#[derive(Clone, Debug)]
enum HeaderEdit {
    Shape(Index, Vec<u64>),
    Offsets(Index, Value),
    Dtype(Index, String),
    Remove(Index),
    Rename(Index, String),
    Field(Index, Value),
    Metadata(Value),
}

fn odd_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        Just(json!("12")),
        Just(json!([])),
        Just(json!({})),
        Just(json!([[1, 2]])),
        interesting_u64().prop_map(|v| json!(v)),
    ]
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    let dim = prop_oneof![
        3 => 0u64..4,
        3 => interesting_u64(),
        1 => Just(1028),
    ];
    prop_oneof![
        (any::<Index>(), prop::collection::vec(dim, 0..5))
            .prop_map(|(i, s)| HeaderEdit::Shape(i, s)),
        (
            any::<Index>(),
            prop_oneof![
                3 => (interesting_u64(), interesting_u64()).prop_map(|(a, b)| json!([a, b])),
                1 => odd_json(),
                1 => Just(json!([0, 1, 2])),
            ]
        )
            .prop_map(|(i, o)| HeaderEdit::Offsets(i, o)),
        (
            any::<Index>(),
            prop_oneof![
                Just("F16".to_string()),
                Just("BF16".to_string()),
                Just("I8".to_string()),
                Just("BOOL".to_string()),
                Just("F64".to_string()),
                Just("F8_E4M3".to_string()),
                "[A-Z0-9_]{0,6}",
            ]
        )
            .prop_map(|(i, d)| HeaderEdit::Dtype(i, d)),
        any::<Index>().prop_map(HeaderEdit::Remove),
        (any::<Index>(), "[a-z._0-9]{0,12}").prop_map(|(i, n)| HeaderEdit::Rename(i, n)),
        (any::<Index>(), odd_json()).prop_map(|(i, v)| HeaderEdit::Field(i, v)),
        odd_json().prop_map(HeaderEdit::Metadata),
    ]
}

fn edit_header(header: &mut Value, e: &HeaderEdit) {
    let map = header.as_object_mut().unwrap();
    let names: Vec<String> = map
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let pick = |i: &Index| names[i.index(names.len())].clone();
    match e {
        HeaderEdit::Shape(i, s) => map[&pick(i)]["shape"] = json!(s),
        HeaderEdit::Offsets(i, o) => map[&pick(i)]["data_offsets"] = o.clone(),
        HeaderEdit::Dtype(i, d) => map[&pick(i)]["dtype"] = json!(d),
        HeaderEdit::Remove(i) => {
            map.remove(&pick(i));
        }
        HeaderEdit::Rename(i, n) => {
            let v = map.remove(&pick(i)).unwrap();
            map.insert(n.clone(), v);
        }
        HeaderEdit::Field(i, v) => {
            let name = pick(i);
            let field = ["dtype", "shape", "data_offsets"][i.index(3)];
            map[&name][field] = v.clone();
        }
        HeaderEdit::Metadata(v) => {
            map.insert("__metadata__".into(), v.clone());
        }
    }
}

fn seed_of(which: usize) -> (Kind, &'static Seed) {
    let s = seeds();
    match which {
        0 => (Kind::Dia, &s.nari),
        1 => (Kind::Dia, &s.hf),
        _ => (Kind::Dac, &s.dac),
    }
}

fn open_kind(kind: Kind, config: &str, weights: Vec<u8>) -> Result<(), String> {
    match kind {
        Kind::Dia => open_dia(config, weights),
        Kind::Dac => open_dac(config, weights),
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn fixtures_open(which in 0usize..3) {
        let (kind, seed) = seed_of(which);
        prop_assert_eq!(open_kind(kind, &seed.config, seed.weights.clone()), Ok(()));
    }

    #[test]
    fn arbitrary_weight_files_are_refused(which in 0usize..3, bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let (kind, seed) = seed_of(which);
        prop_assert!(open_kind(kind, &seed.config, bytes).is_err());
    }

    #[test]
    fn arbitrary_headers_are_refused(which in 0usize..3, header in prop::collection::vec(any::<u8>(), 0..300), data in 0usize..64) {
        let (kind, seed) = seed_of(which);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header);
        bytes.extend(std::iter::repeat_n(0u8, data));
        prop_assert!(open_kind(kind, &seed.config, bytes).is_err());
    }

    /// Byte edits in the header (and its length prefix), where a reader can go wrong; the data
    /// after it is only ever cut short.
    #[test]
    fn mutated_headers_open_or_are_refused(
        which in 0usize..3,
        edits in prop::collection::vec(edit(), 1..4),
        cut in prop::option::weighted(0.2, any::<Index>()),
    ) {
        let (kind, seed) = seed_of(which);
        let n = u64::from_le_bytes(seed.weights[..8].try_into().unwrap()) as usize;
        let mut head = seed.weights[..8 + n].to_vec();
        for e in &edits {
            apply(&mut head, e);
        }
        let mut data = seed.weights[8 + n..].to_vec();
        if let Some(c) = cut {
            data.truncate(c.index(data.len()));
        }
        head.extend(data);
        let _ = open_kind(kind, &seed.config, head);
    }

    #[test]
    fn restructured_headers_open_or_are_refused(
        which in 0usize..3,
        edits in prop::collection::vec(header_edit(), 1..3),
        len in prop::option::weighted(0.2, interesting_u64()),
    ) {
        let (kind, seed) = seed_of(which);
        let (mut header, data) = seed.header();
        for e in &edits {
            edit_header(&mut header, e);
        }
        let _ = open_kind(kind, &seed.config, weights_file(&header, data, len));
    }

    /// A tensor claiming 2^64 - 1 bytes: safetensors adds that to the header length unchecked.
    #[test]
    fn offsets_past_the_file_are_named(which in 0usize..3, i in any::<Index>(), end in interesting_u64()) {
        let (kind, seed) = seed_of(which);
        let (mut header, data) = seed.header();
        let map = header.as_object_mut().unwrap();
        let names: Vec<String> = map.keys().filter(|k| *k != "__metadata__").cloned().collect();
        let name = names[i.index(names.len())].clone();
        map[&name]["data_offsets"] = json!([0, end]);
        map[&name]["shape"] = json!([end]);
        map[&name]["dtype"] = json!("U8");
        let e = open_kind(kind, &seed.config, weights_file(&header, data, None)).unwrap_err();
        if end > data.len() as u64 {
            prop_assert!(e.contains(&format!("reach byte {end} of the data")), "{e}");
        }
    }

    /// Headers written from scratch: a few tensors with contiguous offsets as long as their
    /// shapes and dtypes say (up to 2^64 - 1 bytes), over a few real bytes of data.
    #[test]
    fn generated_headers_open_or_are_refused(
        which in 0usize..3,
        tensors in prop::collection::vec(
            (
                prop_oneof![Just("U8"), Just("F32"), Just("F16"), Just("BF16"), Just("F64"), Just("I64")],
                prop::collection::vec(prop_oneof![0u64..5, interesting_u64()], 0..4),
                // A byte tensor reaching exactly 2^64 - 1.
                prop::bool::weighted(0.2),
            ),
            1..4,
        ),
        data in 0usize..64,
    ) {
        let (kind, seed) = seed_of(which);
        let mut header = serde_json::Map::new();
        let mut start = 0u64;
        for (i, (dtype, shape, to_the_end)) in tensors.iter().enumerate() {
            let (dtype, shape) = if *to_the_end {
                (&"U8", &vec![u64::MAX - start])
            } else {
                (dtype, shape)
            };
            let size: u64 = if dtype.ends_with('8') { 1 } else if dtype.ends_with("16") { 2 } else if *dtype == "F32" { 4 } else { 8 };
            let end = shape
                .iter()
                .try_fold(size, |a, &d| a.checked_mul(d))
                .and_then(|n| n.checked_add(start))
                .unwrap_or(u64::MAX);
            header.insert(
                format!("decoder.layers.{i}.pre_sa_norm.weight"),
                json!({"dtype": dtype, "shape": shape, "data_offsets": [start, end]}),
            );
            start = end;
        }
        let e = open_kind(kind, &seed.config, weights_file(&Value::Object(header), &vec![0; data], None));
        prop_assert!(e.is_err());
    }

    #[test]
    fn huge_header_lengths_are_named(which in 0usize..3, len in interesting_u64()) {
        let (kind, seed) = seed_of(which);
        let mut bytes = seed.weights.clone();
        bytes[..8].copy_from_slice(&len.to_le_bytes());
        let e = open_kind(kind, &seed.config, bytes.clone()).unwrap_err();
        if len > bytes.len() as u64 - 8 {
            prop_assert!(
                e.contains(&format!("header length field says {len} bytes but only {} bytes follow it", bytes.len() - 8)),
                "{e}"
            );
        }
    }

    #[test]
    fn truncated_weights_are_refused(which in 0usize..3, cut in any::<Index>()) {
        let (kind, seed) = seed_of(which);
        let keep = cut.index(seed.weights.len());
        let e = open_kind(kind, &seed.config, seed.weights[..keep].to_vec()).unwrap_err();
        prop_assert!(e.contains("model.safetensors") && e.contains("truncated"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn edited_configs_open_or_are_refused(
        which in 0usize..3,
        edits in prop::collection::vec((any::<Index>(), new_value()), 1..3),
    ) {
        let (kind, seed) = seed_of(which);
        let mut config = seed.config.clone();
        for (at, new) in &edits {
            config = edit_value(&config, at, new);
        }
        let _ = open_kind(kind, &config, seed.weights.clone());
        if let Kind::Dac = kind {
            let c = config.clone();
            let _ = guarded(10, (1 << 20) + 64 * config.len(), move || {
                DacConfig::from_json_str(&c, "config.json").map(|_| ()).map_err(|e| e.to_string())
            });
        }
    }

    #[test]
    fn mutated_config_text_opens_or_is_refused(
        which in 0usize..3,
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let (kind, seed) = seed_of(which);
        let mut config = seed.config.clone().into_bytes();
        for e in &edits {
            apply(&mut config, e);
        }
        let config = String::from_utf8_lossy(&config).into_owned();
        let _ = open_kind(kind, &config, seed.weights.clone());
    }

    #[test]
    fn arbitrary_dac_configs_parse_or_are_refused(text in prop_oneof![any::<String>(), "[{}\\[\\]\",:0-9a-z_ -]{0,80}"]) {
        let t = text.clone();
        let r = guarded(10, (1 << 20) + 64 * text.len(), move || {
            DacConfig::from_json_str(&t, "x/config.json").map(|_| ()).map_err(|e| e.to_string())
        });
        if let Err(e) = r {
            prop_assert!(e.contains("x/config.json"), "{e}");
        }
    }

    /// The shard index names files; any `weight_map` must give the files' errors or its own.
    #[test]
    fn shard_indexes_open_or_are_refused(
        map in prop_oneof![
            Just(json!(null)),
            Just(json!({})),
            Just(json!([])),
            prop::collection::btree_map(
                "[a-z.]{1,8}",
                prop_oneof![
                    Just(json!("model.safetensors")),
                    Just(json!("missing.safetensors")),
                    Just(json!("../model.safetensors")),
                    Just(json!("/etc/hostname")),
                    Just(json!("")),
                    Just(json!(".")),
                    Just(json!("..")),
                    Just(json!(3)),
                    Just(json!(null)),
                ],
                0..4,
            )
            .prop_map(|m| json!(m)),
        ],
    ) {
        let s = seeds();
        let index = serde_json::to_vec(&json!({ "metadata": {}, "weight_map": map })).unwrap();
        let r = open(
            Kind::Dia,
            vec![
                ("config.json", s.nari.config.clone().into_bytes()),
                ("model.safetensors.index.json", index),
                ("model.safetensors.shard", s.nari.weights.clone()),
            ],
        );
        prop_assert!(r.is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// The bugs these properties found, pinned
// ---------------------------------------------------------------------------------------------

/// `num_hidden_layers: 1048576` (the most config.json allows) listed 13.6 million expected
/// tensors before checking any: seconds and about a gigabyte before saying a layer is missing.
#[test]
fn implausible_layer_counts_name_the_missing_layer() {
    let s = seeds();
    // (Both counts in the nari config, the decoder's only (the first) in the transformers one.)
    for (seed, count, side) in [(&s.nari, 2, "encoder"), (&s.hf, 1, "decoder")] {
        let config = seed.config.replacen(
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 1048576",
            count,
        );
        assert_ne!(config, seed.config);
        let e = open_dia(&config, seed.weights.clone()).unwrap_err();
        assert!(
            e.contains(&format!("{side}.layers.2.pre_sa_norm.weight")) && e.contains("missing"),
            "{e}"
        );
    }
}

/// `n_codebooks: 10^18` likewise listed every codebook's tensors first.
#[test]
fn implausible_codebook_counts_name_the_missing_codebook() {
    let s = seeds();
    let config = s
        .dac
        .config
        .replace("\"n_codebooks\": 9", "\"n_codebooks\": 1000000000000000000");
    assert_ne!(config, s.dac.config);
    let e = open_dac(&config, s.dac.weights.clone()).unwrap_err();
    assert!(
        e.contains("quantizer.quantizers.9.codebook.weight") && e.contains("missing"),
        "{e}"
    );
}

/// A DAC config whose blocks double the channels past 2^64 (`<<` by 70, or the ratios'
/// product) panicked in debug builds and wrapped silently in release ones.
#[test]
fn dac_sizes_that_overflow_are_named() {
    for (text, want) in [
        (
            format!("{{\"downsampling_ratios\": {:?}}}", vec![2; 70]),
            "overflows",
        ),
        (
            "{\"downsampling_ratios\": [4294967296, 4294967296], \"hop_length\": 1}".to_string(),
            "hop_length 1 must be the product",
        ),
        (
            "{\"encoder_hidden_size\": 4611686018427387904}".to_string(),
            "encoder_hidden_size 4611686018427387904 doubled by 4 encoder blocks overflows",
        ),
        (
            "{\"sampling_rate\": 4294967297}".to_string(),
            "sampling_rate 4294967297 Hz is out of range",
        ),
    ] {
        let e = DacConfig::from_json_str(&text, "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x/config.json") && e.contains(want),
            "{text}: {e}"
        );
    }
}

/// A tensor claiming 2^64 - 1 bytes overflowed safetensors' own length check (a panic in
/// debug builds); a header length of 2^62 is named with the file's real size.
#[test]
fn safetensors_lengths_are_checked_against_the_file() {
    let s = seeds();
    let header = json!({"decoder.norm.weight": {
        "dtype": "U8", "shape": [u64::MAX], "data_offsets": [0, u64::MAX]
    }});
    let data = [0u8; 16];
    let e = open_dia(&s.nari.config, weights_file(&header, &data, None)).unwrap_err();
    assert!(
        e.contains("model.safetensors")
            && e.contains(&format!(
                "tensor `decoder.norm.weight`'s data_offsets reach byte {} of the data, but the \
                 file holds only {} bytes after its header",
                u64::MAX,
                data.len()
            )),
        "{e}"
    );

    let mut bytes = s.nari.weights.clone();
    bytes[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let e = open_dia(&s.nari.config, bytes).unwrap_err();
    assert!(
        e.contains(&format!(
            "the header length field says {} bytes but only {} bytes follow it",
            1u64 << 62,
            s.nari.weights.len() - 8
        )),
        "{e}"
    );
}

/// An index whose `weight_map` is empty reached `first_path()` of no files: an index out of
/// bounds panic. Shard names that leave the directory are refused too.
#[test]
fn shard_index_problems_are_named() {
    let s = seeds();
    for (map, want) in [
        (json!({}), "`weight_map` names no shard files"),
        (json!(null), "no `weight_map` object"),
        (
            json!({"a": "../model.safetensors"}),
            "`weight_map` puts `a` in \"../model.safetensors\", which is not a file name",
        ),
        (json!({"a": "/etc/hostname"}), "not a file name"),
    ] {
        let index = serde_json::to_vec(&json!({ "weight_map": map })).unwrap();
        let e = open(
            Kind::Dia,
            vec![
                ("config.json", s.nari.config.clone().into_bytes()),
                ("model.safetensors.index.json", index),
            ],
        )
        .unwrap_err();
        assert!(
            e.contains("model.safetensors.index.json") && e.contains(want),
            "{e}"
        );
    }
}
