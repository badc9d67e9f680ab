//! Opening a bundle graph as an ONNX Runtime session, checked against the manifest: every
//! input the manifest lists must be in the graph with the same element type and shape.

use std::path::{Path, PathBuf};

use dia_bundle::manifest::dims_fit;
use dia_bundle::{ElementType, GraphSpec};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorElementType;

use crate::error::RuntimeError;
use crate::onnxruntime;
use crate::providers::{self, CoreMlUnits, ExecutionProvider};

/// What every session of a model is opened with.
#[derive(Clone, Debug, Default)]
pub struct SessionSettings {
    pub threads: Option<usize>,
    pub provider: ExecutionProvider,
    pub cuda_graph: bool,
    pub coreml_units: CoreMlUnits,
    pub coreml_cache_dir: Option<PathBuf>,
    pub cuda_device_id: i32,
    pub profile: Option<PathBuf>,
    pub conv_search: providers::ConvSearch,
    pub conv1d_ncl1: bool,
}

/// An opened session and the provider it runs on (with a warning if that is not the one
/// asked for).
pub struct Opened {
    pub session: Session,
    pub provider: ExecutionProvider,
    pub warning: Option<String>,
}

/// The ONNX Runtime element type of a manifest's element type.
pub fn ort_type(t: ElementType) -> TensorElementType {
    match t {
        ElementType::Float32 => TensorElementType::Float32,
        ElementType::Float16 => TensorElementType::Float16,
        ElementType::Bfloat16 => TensorElementType::Bfloat16,
        ElementType::Int64 => TensorElementType::Int64,
        ElementType::Int32 => TensorElementType::Int32,
        ElementType::Bool => TensorElementType::Bool,
        ElementType::Uint8 => TensorElementType::Uint8,
    }
}

/// Opens graph `role` of the bundle in `dir`. `profile` and `cuda_graph` apply to the
/// decoder step only.
pub fn open(
    dir: &Path,
    role: &str,
    spec: &GraphSpec,
    s: &SessionSettings,
    step: bool,
) -> Result<Opened, RuntimeError> {
    let path = dir.join(&spec.file);
    let env = onnxruntime::environment()?;
    let mut b = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort::Error::from)?;
    if let Some(n) = s.threads {
        b = b.with_intra_threads(n).map_err(ort::Error::from)?;
    }
    if !step {
        // The encoder and the codec run now and then between decoder steps (the codec every
        // chunk when streaming): their idle threads must not spin-wait on the cores the
        // decoder step needs. The step's own threads keep spinning (benchmarks/cpu.md).
        b = b.with_intra_op_spinning(false).map_err(ort::Error::from)?;
    }
    if let Some(prefix) = &s.profile {
        // One profile per graph: PREFIX_decoder_step_<time>.json, PREFIX_dac_decoder_...
        let mut p = prefix.clone().into_os_string();
        p.push(format!("_{role}"));
        b = b
            .with_profiling(PathBuf::from(p))
            .map_err(ort::Error::from)?;
    }
    let popts = providers::ProviderOptions {
        cuda_graph: s.cuda_graph && step,
        cuda_device_id: s.cuda_device_id,
        conv_search: s.conv_search,
        conv1d_ncl1: s.conv1d_ncl1,
        coreml_units: s.coreml_units,
        coreml_cache_dir: Some(
            s.coreml_cache_dir
                .clone()
                .unwrap_or_else(|| dir.join("coreml-cache")),
        ),
    };
    let (mut b, provider, warning) = providers::register(b, s.provider, &popts);
    let session = b.commit_from_file(&path)?;
    check_inputs(&session, role, spec)?;
    Ok(Opened {
        session,
        provider,
        warning,
    })
}

/// Every manifest input is a graph input of the same type and shape (-1 is dynamic).
fn check_inputs(session: &Session, role: &str, spec: &GraphSpec) -> Result<(), RuntimeError> {
    for t in &spec.inputs {
        let Some(got) = session.inputs().iter().find(|i| i.name() == t.name) else {
            return Err(RuntimeError::GraphMismatch {
                graph: role.into(),
                kind: "input",
                name: t.name.clone(),
            });
        };
        let ty = got.dtype().tensor_type();
        let shape: Option<Vec<i64>> = got.dtype().tensor_shape().map(|s| s.to_vec());
        let fits =
            ty == Some(ort_type(t.dtype)) && shape.as_ref().is_some_and(|s| dims_fit(s, &t.shape));
        if !fits {
            return Err(RuntimeError::GraphSpecMismatch {
                graph: role.into(),
                name: t.name.clone(),
                manifest: format!("{} {:?}", t.dtype, t.shape),
                graph_has: format!("{ty:?} {shape:?}"),
            });
        }
    }
    Ok(())
}
