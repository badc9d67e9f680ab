//! Which nodes of an ONNX model ONNX Runtime's CoreML execution provider (ML Program format)
//! would not take, and why: `dia-export check BUNDLE --ep coreml`.
//!
//! The provider decides per node (`CoreMLExecutionProvider::GetCapability` ->
//! `coreml::GetSupportedNodes` -> `IOpBuilder::IsOpSupported`): a node is taken when an op builder
//! is registered for its type, the builder supports ML Program, every input passes the general
//! checks (`helper.cc: IsInputSupported`), the input types pass the builder's
//! `HasSupportedInputsImpl` and its `IsOpSupportedImpl` accepts the attributes and shapes. This
//! crate keeps those rules in code, one [`OpRule`] per op type that has a builder plus the
//! [`GENERAL_RULES`], each naming the onnxruntime file and function it comes from, and checks
//! them against a prost [`ModelProto`].
//!
//! Types and shapes are read from the model, not inferred: initializers, graph inputs and
//! outputs, and the graph's `value_info`, which `dia_graphs::Builder` records for every value a
//! node computes (a dynamic dim as a `dim_param` or an unknown dim). A value the model does not
//! describe has no known shape, and the provider's "shape" rule reports its consumers; for a
//! model from another tool, run ONNX shape inference (`onnx.shape_inference.infer_shapes`) first.
//!
//! The rules are those of onnxruntime `main` as of mid-2026, the newest sources available when
//! they were written (the code ORT 1.31 is cut from; re-check on upgrades): on top
//! of the long-standing builders they include the ML Program Gather (PR #24387, fp16 #26442,
//! scalar indices #28278), the 16384-dim limit moved to Conv/ConvTranspose (#24594), Identity
//! (#28293), bool Cast (#28595), Sin/Cos (#28596) and Where (#28597). Builders that were only
//! proposed (Equal #28807, Expand #27681) or closed (Neg #28809) count as missing.
//!
//! Beyond the provider's own rules, the coreml target must have static shapes, so a dynamic
//! input dim is always reported (the provider's `RequireStaticInputShapes` option, which the
//! coreml target's session turns on). ONNX Runtime's basic (level 1) optimisations run before
//! partitioning and fold constant subgraphs, so a value computed only from initializers (or
//! from `Shape` of a static tensor) counts as a constant initializer here and the nodes
//! computing it are skipped (folded away before the provider sees them); no other rewrite is
//! simulated, so the check is a little stricter than the provider on graphs it would rewrite.

mod graph;
mod rules;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dia_bundle::{BundleError, Manifest};
use dia_graphs::onnx::{ModelProto, NodeProto};
use prost::Message;

use graph::{dtype_name, fmt_dims, Graph, FLOAT, FLOAT16, INT32, INT64};
use rules::{is_float, BOUNDARY, DTYPE, FACTORY, HELPER, OPSET};
pub use rules::{
    op_rule, DtypeRule, GeneralRule, NodeView, OpRule, GENERAL_RULES, NO_BUILDER_NOTES, OP_RULES,
};

/// The onnxruntime code the rules were taken from.
pub const ORT_REFERENCE: &str =
    "onnxruntime main as of mid-2026 (the newest sources available; ORT 1.31), CoreML EP, ML Program";

/// Execution providers `dia-export check --ep` knows.
pub const SUPPORTED_EPS: &[&str] = &["coreml"];

/// Why a bundle could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `--ep` names a provider whose rules we do not have (see [`SUPPORTED_EPS`]).
    #[error("unknown execution provider `--ep {0}`: only `coreml` is supported for now")]
    UnknownEp(String),
    /// The bundle's manifest is missing or invalid.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A graph file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A graph file is not an ONNX model.
    #[error("{path}: not an ONNX model: {source}")]
    Decode {
        path: PathBuf,
        source: prost::DecodeError,
    },
}

/// One node the provider would not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub node: String,
    pub op_type: String,
    /// Every rule the node fails, `; `-separated.
    pub reason: String,
    /// The onnxruntime file and function of each failed rule, `; `-separated.
    pub source: String,
}

/// What the check assumes about the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Report every dynamic input dim: the coreml target is static (ORT's
    /// `RequireStaticInputShapes`, `COREML_FLAG_ONLY_ALLOW_STATIC_INPUT_SHAPES`).
    pub require_static_shapes: bool,
    /// CoreML version the model is built for (ORT's `coreml_version`: 6 = iOS 16 / macOS 13,
    /// 7 = iOS 17 / macOS 14); a few builders accept float16 only from 6 on.
    pub coreml_version: i32,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            require_static_shapes: true,
            coreml_version: 7,
        }
    }
}

/// Every node of `model` the CoreML EP (ML Program) would not take, in graph order.
pub fn check_model(model: &ModelProto, opts: &CheckOptions) -> Vec<Unsupported> {
    let Some(g) = model.graph.as_ref() else {
        return Vec::new();
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let graph = Graph::new(g, opset, *opts);
    let mut found = Vec::new();
    for (node, &folded) in g.node.iter().zip(&graph.folded) {
        // ONNX Runtime's constant folding (a level 1 optimisation, run before partitioning)
        // replaces a node computed only from constants by initializers: no EP sees it.
        if folded {
            continue;
        }
        let (reasons, sources) = check_node(&graph, node);
        if !reasons.is_empty() {
            let mut srcs: Vec<&str> = Vec::new();
            for s in sources {
                if !srcs.contains(&s) {
                    srcs.push(s);
                }
            }
            found.push(Unsupported {
                node: node.name.clone(),
                op_type: if node.domain.is_empty() {
                    node.op_type.clone()
                } else {
                    format!("{}:{}", node.domain, node.op_type)
                },
                reason: reasons.join("; "),
                source: srcs.join("; "),
            });
        }
    }
    found
}

fn check_node(graph: &Graph, node: &NodeProto) -> (Vec<String>, Vec<&'static str>) {
    let mut reasons = Vec::new();
    let mut sources: Vec<&'static str> = Vec::new();
    let mut fail = |r: String, s: &'static str| {
        reasons.push(r);
        sources.push(s);
    };
    let view = NodeView { graph, node };

    // General rule "builder": the op type must have a builder (default domain only).
    let rule = if node.domain.is_empty() || node.domain == "ai.onnx" {
        op_rule(&node.op_type)
    } else {
        None
    };
    let Some(rule) = rule else {
        let note = NO_BUILDER_NOTES
            .iter()
            .find(|(op, _)| *op == node.op_type)
            .map_or_else(
                || {
                    if node.domain.is_empty() {
                        format!("no CoreML op builder for {}", node.op_type)
                    } else {
                        format!(
                            "{}:{} is not an ONNX op; no CoreML op builder",
                            node.domain, node.op_type
                        )
                    }
                },
                |(_, n)| n.to_string(),
            );
        fail(note, FACTORY);
        return (reasons, sources);
    };

    // General rule "opset".
    if graph.opset < rule.min_opset {
        fail(
            format!(
                "opset {} < {} supported by the builder",
                graph.opset, rule.min_opset
            ),
            OPSET,
        );
    }

    // General rules "shape", "static", "empty", "rank" on every input.
    let mut dynamic = Vec::new();
    for (i, name) in node.input.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        let v = view.input(i);
        match &v.shape {
            None => fail(format!("input `{name}` has no known shape"), HELPER),
            Some(d) => {
                if graph.opts.require_static_shapes && d.iter().any(|x| x.is_none()) {
                    dynamic.push(format!("`{name}` is {}", fmt_dims(&v.shape)));
                }
                if d.contains(&Some(0)) {
                    fail(
                        format!("input `{name}` {} is empty (a 0 dim)", fmt_dims(&v.shape)),
                        HELPER,
                    );
                }
                if d.len() > 5 {
                    fail(format!("input `{name}` has rank {} > 5", d.len()), HELPER);
                }
            }
        }
    }

    if !dynamic.is_empty() {
        fail(
            format!(
                "dynamic input shape: {} (the coreml target must be static)",
                dynamic.join(", ")
            ),
            HELPER,
        );
    }

    // General rule "dtype" (the builder's HasSupportedInputsImpl when it has none of its own).
    if rule.dtype == DtypeRule::Input0Float {
        let t = view.dtype(0);
        // An input of unknown type has already failed the shape rule.
        if t != 0 && !is_float(t) {
            fail(
                format!(
                    "input 0 {} is {}, the builder takes float32/float16 only",
                    view.label(0),
                    dtype_name(t)
                ),
                DTYPE,
            );
        }
    }

    // The builder's own conditions.
    for r in (rule.check)(&view) {
        fail(r, rule.source);
    }

    // General rule "boundary": graph inputs/outputs become CoreML model inputs/outputs.
    let boundary_ok = |t: i32| matches!(t, FLOAT | FLOAT16 | INT32 | INT64);
    for name in &node.input {
        if let Some(&t) = graph.graph_inputs.get(name) {
            if !boundary_ok(t) {
                fail(
                    format!(
                        "graph input `{name}` is {}: CoreML model inputs are float32/float16/int32/int64 (no bool)",
                        dtype_name(t)
                    ),
                    BOUNDARY,
                );
            }
        }
    }
    for name in &node.output {
        if let Some(&t) = graph.graph_outputs.get(name) {
            if !boundary_ok(t) {
                fail(
                    format!(
                        "graph output `{name}` is {}: CoreML model outputs are float32/float16/int32/int64 (no bool)",
                        dtype_name(t)
                    ),
                    BOUNDARY,
                );
            }
        }
    }
    (reasons, sources)
}

/// One graph of a bundle, checked.
#[derive(Clone, Debug)]
pub struct GraphReport {
    /// The graph's file name in the bundle (`encoder.onnx`, ...).
    pub file: String,
    pub nodes: usize,
    pub unsupported: Vec<Unsupported>,
}

impl GraphReport {
    /// Unsupported nodes counted per op type, most frequent first.
    pub fn by_op(&self) -> Vec<(String, usize)> {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for u in &self.unsupported {
            *m.entry(u.op_type.clone()).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

fn check_ep(ep: &str) -> Result<(), CheckError> {
    if SUPPORTED_EPS.contains(&ep) {
        Ok(())
    } else {
        Err(CheckError::UnknownEp(ep.to_string()))
    }
}

/// Reads and decodes one `.onnx` file (the weights stay in their external file).
pub fn load_model(path: &Path) -> Result<ModelProto, CheckError> {
    let bytes = fs::read(path).map_err(|source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    ModelProto::decode(bytes.as_slice()).map_err(|source| CheckError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks every graph the bundle at `dir` lists (encoder, decoder_step, and the DAC graphs when
/// present) for `ep`, with the number of nodes of each.
pub fn check_bundle_report(dir: &Path, ep: &str) -> Result<Vec<GraphReport>, CheckError> {
    check_ep(ep)?;
    let manifest = Manifest::load(dir)?;
    let g = &manifest.graphs;
    let specs = [
        Some(&g.encoder),
        Some(&g.decoder_step),
        g.dac_decoder.as_ref(),
        g.dac_encoder.as_ref(),
    ];
    let opts = CheckOptions::default();
    specs
        .into_iter()
        .flatten()
        .map(|spec| {
            let model = load_model(&dir.join(&spec.file))?;
            let nodes = model.graph.as_ref().map_or(0, |g| g.node.len());
            Ok(GraphReport {
                file: spec.file.clone(),
                nodes,
                unsupported: check_model(&model, &opts),
            })
        })
        .collect()
}

/// [`check_bundle_report`] as (graph file name, unsupported nodes) pairs.
pub fn check_bundle(dir: &Path, ep: &str) -> Result<Vec<(String, Vec<Unsupported>)>, CheckError> {
    Ok(check_bundle_report(dir, ep)?
        .into_iter()
        .map(|r| (r.file, r.unsupported))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dia_graphs::{Builder, DType};

    #[test]
    fn shapes_are_read_from_the_model() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[2, 3]);
        let s = b.sigmoid(&x);
        let y = b.mul(&x, &s);
        b.output(&y, "y");
        let (mut model, _) = b.finish("", &[]).unwrap();
        let found = check_model(&model, &CheckOptions::default());
        assert!(found.is_empty(), "{found:#?}");

        // Without the builder's value_info nothing says what the Sigmoid computes.
        model.graph.as_mut().unwrap().value_info.clear();
        let found = check_model(&model, &CheckOptions::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].op_type, "Mul");
        assert!(
            found[0]
                .reason
                .contains(&format!("input `{}` has no known shape", s.name)),
            "{found:#?}"
        );
    }

    #[test]
    fn nodes_computed_from_constants_are_folded_away() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[2, 3]);
        let c = b.const_f32(&[1.0; 3], &[3]);
        // No Neg builder, but ONNX Runtime folds these before the provider sees them, and a
        // Shape of a static tensor too.
        let nc = b.neg(&c);
        let nc = b.neg(&nc);
        let shape = b.shape_of(&x);
        let y = b.add(&x, &nc);
        let z = b.neg(&y);
        b.output(&z, "z");
        b.output(&shape, "shape");
        let (model, _) = b.finish("", &[]).unwrap();
        let found = check_model(&model, &CheckOptions::default());
        let names: Vec<&str> = found.iter().map(|u| u.node.as_str()).collect();
        assert_eq!(names.len(), 1, "{found:#?}");
        assert!(names[0].starts_with("Neg_"), "{found:#?}");
        assert!(found[0].reason.contains("no Neg builder"), "{found:#?}");
    }

    #[test]
    fn an_unknown_provider_is_an_error() {
        let err = check_bundle(Path::new("/nonexistent"), "tensorrt").unwrap_err();
        assert!(matches!(err, CheckError::UnknownEp(ref ep) if ep == "tensorrt"));
        assert!(
            err.to_string().contains("only `coreml` is supported"),
            "{err}"
        );
        let err = check_bundle(Path::new("/nonexistent"), "coreml").unwrap_err();
        assert!(matches!(err, CheckError::Bundle(_)), "{err:?}");
    }

    #[test]
    fn every_rule_names_an_onnxruntime_source() {
        for r in OP_RULES {
            assert!(
                r.source.starts_with("onnxruntime/core/providers/coreml/"),
                "{}",
                r.op_type
            );
        }
        for r in GENERAL_RULES {
            assert!(r.source.starts_with("onnxruntime/core/providers/coreml/"));
        }
    }
}
