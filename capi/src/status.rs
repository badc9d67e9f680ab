//! Status codes and the other integer constants of the C API. Plain integers rather than Rust
//! enums: a C caller may pass any value, which must be an error, never undefined behaviour.

/// What every function returns: `DIA_OK` (0) or one of the `DIA_ERR_*` codes, with the
/// message in `dia_last_error()`.
pub type DiaStatus = i32;

/// Success.
pub const DIA_OK: DiaStatus = 0;
/// A required pointer argument (or a pointer inside an options struct) is NULL.
pub const DIA_ERR_NULL_POINTER: DiaStatus = 1;
/// A string argument is not valid UTF-8.
pub const DIA_ERR_INVALID_UTF8: DiaStatus = 2;
/// A struct's `struct_size` is smaller than its first version or absurdly large, or it sets
/// fields this library does not know.
pub const DIA_ERR_STRUCT_SIZE: DiaStatus = 3;
/// A handle that is not live: freed already, of another kind, or never a handle.
pub const DIA_ERR_INVALID_HANDLE: DiaStatus = 4;
/// An option out of its range, an empty or too long text, a bad voice prompt.
pub const DIA_ERR_INVALID_ARGUMENT: DiaStatus = 5;
/// The bundle could not be loaded (missing directory or files, a bad manifest or graph).
pub const DIA_ERR_LOAD: DiaStatus = 6;
/// The ONNX Runtime library was not found or did not load.
pub const DIA_ERR_ONNXRUNTIME: DiaStatus = 7;
/// Generation failed (ONNX Runtime failed while running).
pub const DIA_ERR_GENERATION: DiaStatus = 8;
/// The callback of `dia_generate` returned 0: generation stopped, nothing returned.
pub const DIA_ERR_STOPPED: DiaStatus = 9;
/// `dia_stream_next` after the chunk with `is_last = 1`.
pub const DIA_ERR_STREAM_ENDED: DiaStatus = 10;
/// The object is in use: a stream used by two threads at once, or (with CUDA graphs) a second
/// generation on a thread whose first one is alive.
pub const DIA_ERR_BUSY: DiaStatus = 11;
/// The bundle has no DAC codec (exported without `--dac`), so it cannot make audio.
pub const DIA_ERR_NO_CODEC: DiaStatus = 12;
/// A bug of this library, caught before it crossed into the caller: please report it.
pub const DIA_ERR_PANIC: DiaStatus = 13;

/// Which execution provider runs the model (`DiaModelOptions.execution_provider`).
pub type DiaExecutionProvider = i32;
/// CoreML on macOS, CUDA where its provider loads, else the CPU.
pub const DIA_EP_AUTO: DiaExecutionProvider = 0;
pub const DIA_EP_CPU: DiaExecutionProvider = 1;
/// NVIDIA GPUs (needs the `onnxruntime-gpu` library); falls back to the CPU if it cannot load.
pub const DIA_EP_CUDA: DiaExecutionProvider = 2;
/// Apple's Core ML; falls back to the CPU if it cannot load.
pub const DIA_EP_COREML: DiaExecutionProvider = 3;

/// Which compute units Core ML may use (`DiaModelOptions.coreml_units`).
pub type DiaCoreMlUnits = i32;
pub const DIA_COREML_ALL: DiaCoreMlUnits = 0;
pub const DIA_COREML_CPU_AND_NEURAL_ENGINE: DiaCoreMlUnits = 1;
pub const DIA_COREML_CPU_AND_GPU: DiaCoreMlUnits = 2;

/// The largest `struct_size` any struct of this API accepts: a bigger value is taken for an
/// uninitialised struct.
pub const DIA_MAX_STRUCT_SIZE: usize = 4096;
