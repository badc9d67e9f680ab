//! `dia-run` as a library: load a Dia ONNX bundle once with [`DiaModel::load`], then
//! [`DiaModel::generate`] audio codes from text as many times as needed, from any thread.
//!
//! Modules: [`onnxruntime`] finds and loads the ONNX Runtime library; [`tokenizer`] turns
//! text into byte tokens; [`delay`] applies and reverts the delay pattern; [`sampler`] does
//! CFG, filtering and sampling; [`kv_cache`] and [`decoder`] hold an utterance's state;
//! [`generate`] is the loop.

pub mod audio;
pub mod cuda_copy;
pub mod decoder;
pub mod delay;
pub mod error;
pub mod generate;
pub mod kv_cache;
pub mod model;
pub mod npy;
pub mod onnxruntime;
pub mod providers;
pub mod sampler;
pub mod tokenizer;

pub use error::RuntimeError;
pub use generate::{GenerateOptions, Generation, Progress};
pub use model::{DiaModel, ModelOptions};
pub use providers::ExecutionProvider;
