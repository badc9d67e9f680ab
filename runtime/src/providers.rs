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
pub fn register(
    mut builder: SessionBuilder,
    wanted: ExecutionProvider,
    cuda_graph: bool,
) -> (SessionBuilder, ExecutionProvider, Option<String>) {
    let mut warning = None;
    for ep in wanted.candidates() {
        let dispatch = match ep {
            ExecutionProvider::Cuda => ep::CUDA::default().with_cuda_graph(cuda_graph).build(),
            ExecutionProvider::CoreMl => ep::CoreML::default().build(),
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
