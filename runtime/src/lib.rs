//! `dia-run` as a library: load a Dia ONNX bundle once with [`DiaModel::load`], then
//! [`DiaModel::generate`] audio codes from text as many times as needed, from any thread, or
//! drive a [`Generator`] step by step to get frames as they are decoded.
//!
//! The data flow, one module each: [`tokenizer`] (text to byte tokens), [`encoder`] (tokens to
//! the decoder's cross-attention inputs), [`decoder`] (the step session and its pool of
//! states; [`kv_cache`] is where they live), [`sampler`] (CFG, filtering and sampling),
//! [`eos`] (the EOS countdown), [`delay`] (the delay pattern), [`generator`] (one step at a
//! time), [`codec`] (codes to audio and back), [`stream`] (audio while it is generated), [`audio`] and [`npy`] (files). [`model`] puts
//! the parts together; [`session`], [`providers`] and [`onnxruntime`] open ONNX Runtime.

pub mod audio;
pub mod batch;
pub mod codec;
pub mod crossfade;
pub mod cuda_copy;
pub mod decoder;
pub mod delay;
pub mod encoder;
pub mod eos;
pub mod error;
pub mod generate;
pub mod generator;
pub mod kv_cache;
pub mod model;
pub mod npy;
pub mod onnxruntime;
pub mod providers;
pub mod sampler;
pub mod script;
pub mod segmenter;
pub mod sequence;
pub mod session;
pub mod stream;
pub mod tokenizer;

pub use error::RuntimeError;
pub use generate::{GenerateOptions, Generation, Progress};
pub use generator::Generator;
pub use model::{DiaModel, ModelOptions};
pub use providers::ExecutionProvider;
pub use stream::AudioStream;
