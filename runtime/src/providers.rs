//! Choosing the execution provider: `auto` takes CoreML on macOS, CUDA where its provider
//! loads, else the CPU. A provider that was asked for by name but cannot load falls back to
//! the CPU with a warning that says why.

use ort::ep;
use ort::session::builder::SessionBuilder;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutionProvider {
    #[default]
    Auto,
    Cpu,
    Cuda,
    CoreMl,
}

impl ExecutionProvider {
    pub fn name(self) -> &'static str {
        match self {
            ExecutionProvider::Auto => "auto",
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
            ExecutionProvider::CoreMl => "coreml",
        }
    }

    /// The providers to try in order for this choice (the CPU is always the last resort).
    fn candidates(self) -> Vec<ExecutionProvider> {
        match self {
            ExecutionProvider::Auto if cfg!(target_os = "macos") => vec![ExecutionProvider::CoreMl],
            ExecutionProvider::Auto => vec![ExecutionProvider::Cuda],
            ExecutionProvider::Cpu => vec![],
            other => vec![other],
        }
    }
}

impl std::str::FromStr for ExecutionProvider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "coreml" => Ok(Self::CoreMl),
            _ => Err(format!(
                "unknown execution provider `{s}` (auto, cpu, cuda, coreml)"
            )),
        }
    }
}

/// Registers the first provider of `wanted` that loads. Returns the builder, the provider in
/// use and, when a provider asked for by name could not load, a warning saying why.
/// Which Apple compute units CoreML may use (`MLComputeUnits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CoreMlUnits {
    #[default]
    All,
    CpuAndNeuralEngine,
    CpuAndGpu,
}

impl std::str::FromStr for CoreMlUnits {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "cpu-and-ne" => Ok(Self::CpuAndNeuralEngine),
            "cpu-and-gpu" => Ok(Self::CpuAndGpu),
            _ => Err(format!(
                "unknown CoreML compute units `{s}` (all, cpu-and-ne, cpu-and-gpu)"
            )),
        }
    }
}

/// How cuDNN picks convolution algorithms (the codec's convolutions; CUDA only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvSearch {
    /// ONNX Runtime's default: time every algorithm for each new input shape, about 0.5 s
    /// per shape for the codec, and every utterance length or streamed window is a new shape
    /// (`benchmarks/streaming.md`, GPU run 15).
    Exhaustive,
    /// cuDNN's heuristics, no timing: no first-call cost per shape.
    #[default]
    Heuristic,
}

impl std::str::FromStr for ConvSearch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exhaustive" => Ok(Self::Exhaustive),
            "heuristic" => Ok(Self::Heuristic),
            _ => Err(format!(
                "unknown cuDNN convolution search `{s}` (exhaustive, heuristic)"
            )),
        }
    }
}

/// Provider settings beyond the choice of provider.
#[derive(Clone, Debug, Default)]
pub struct ProviderOptions {
    /// CUDA: capture the step as a CUDA graph.
    pub cuda_graph: bool,
    /// CUDA: the GPU.
    pub cuda_device_id: i32,
    /// CUDA: cuDNN's convolution algorithm search.
    pub conv_search: ConvSearch,
    /// CUDA: run 1-D convolutions as ONNX Runtime's default `[N, C, L, 1]` instead of
    /// `[N, C, 1, L]` (cuDNN's faster path for long 1-D inputs, which we use by default).
    pub conv1d_ncl1: bool,
    /// CoreML: compute units.
    pub coreml_units: CoreMlUnits,
    /// CoreML: where compiled models are cached, so the second start is fast.
    pub coreml_cache_dir: Option<std::path::PathBuf>,
}

fn coreml(opts: &ProviderOptions) -> ep::ExecutionProviderDispatch {
    let units = match opts.coreml_units {
        CoreMlUnits::All => ep::coreml::ComputeUnits::All,
        CoreMlUnits::CpuAndNeuralEngine => ep::coreml::ComputeUnits::CPUAndNeuralEngine,
        CoreMlUnits::CpuAndGpu => ep::coreml::ComputeUnits::CPUAndGPU,
    };
    let mut p = ep::CoreML::default()
        .with_model_format(ep::coreml::ModelFormat::MLProgram)
        .with_compute_units(units)
        .with_static_input_shapes(true);
    if let Some(dir) = &opts.coreml_cache_dir {
        p = p.with_model_cache_dir(dir.display());
    }
    p.build()
}

pub fn register(
    mut builder: SessionBuilder,
    wanted: ExecutionProvider,
    opts: &ProviderOptions,
) -> (SessionBuilder, ExecutionProvider, Option<String>) {
    let mut warning = None;
    for ep in wanted.candidates() {
        let dispatch = match ep {
            ExecutionProvider::Cuda => ep::CUDA::default()
                .with_device_id(opts.cuda_device_id)
                .with_cuda_graph(opts.cuda_graph)
                .with_conv_algorithm_search(match opts.conv_search {
                    ConvSearch::Exhaustive => ep::cuda::ConvAlgorithmSearch::Exhaustive,
                    ConvSearch::Heuristic => ep::cuda::ConvAlgorithmSearch::Heuristic,
                })
                .with_conv1d_pad_to_nc1d(!opts.conv1d_ncl1)
                .build(),
            ExecutionProvider::CoreMl => coreml(opts),
            _ => continue,
        }
        .error_on_failure();
        match builder.with_execution_providers([dispatch]) {
            Ok(b) => return (b, ep, None),
            Err(e) => {
                let why = e.to_string();
                builder = e.recover();
                if wanted != ExecutionProvider::Auto {
                    warning = Some(format!(
                        "the {} execution provider could not be loaded ({why}); running on the CPU",
                        ep.name()
                    ));
                } else {
                    tracing::info!(provider = ep.name(), %why, "not available; using the CPU");
                }
            }
        }
    }
    (builder, ExecutionProvider::Cpu, warning)
}
