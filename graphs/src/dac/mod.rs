//! The Descript Audio Codec (DAC, 44.1 kHz) as two ONNX graphs: `dac_decoder.onnx` (codes ->
//! waveform, to hear what Dia generates) and `dac_encoder.onnx` (waveform -> codes, for voice
//! prompts). The reference is `transformers`' `DacModel` (`models/dac/modeling_dac.py`); every
//! block below mirrors one of its modules and is named after it.
//!
//! # Graphs
//!
//! - decoder: `codes` int64 `[1, n_codebooks, frames]` -> `audio` float32 `[1, 1, samples]`,
//!   `samples = frames · hop_length` (512), as `DacModel.decode(audio_codes=codes)` (which
//!   returns `[1, samples]`: it squeezes the channel). Codes must lie in `0..codebook_size`.
//! - encoder: `audio` float32 `[1, 1, samples]` -> `codes` int64 `[1, n_codebooks, frames]`,
//!   as `DacModel.encode(audio).audio_codes`. The graph pads nothing: like `DacModel.encode`,
//!   it runs the convolutions on what it gets, and `frames = samples / hop_length` exactly when
//!   `samples` is a multiple of `hop_length` (otherwise the strided convolutions floor). The
//!   reference pipeline (`DacFeatureExtractor`) right-pads the waveform with zeros to the next
//!   multiple of `hop_length` (`pad_to_multiple_of=hop_length`, padding value 0.0): callers do
//!   the same before running the graph.
//!
//! `frames` and `samples` are dynamic dims (ONNX `dim_param`s; -1 in the manifest).
//!
//! # Checkpoints
//!
//! A directory with `model.safetensors` (or a single other `*.safetensors` file) and, optionally,
//! `config.json` (without one, the 44.1 kHz codec's hyper-parameters are assumed). Two layouts:
//!
//! - **transformers**: what `DacModel.save_pretrained` writes (the Hub's `descript/dac_44khz`):
//!   `decoder.block.0.conv_t1.weight`, `quantizer.quantizers.3.codebook.weight`, ...
//! - **descript**: the state dict of descript-audio-codec's `dac.DAC` (its `weights.pth`, which
//!   is a pickle, converted to safetensors by the user): `decoder.model.1.block.1.weight_v`, ...
//!   [`descript_module`] maps module paths, once; it is the inverse of `transformers`'
//!   `convert_dac_checkpoint.py`.
//!
//! The config may use transformers' keys (`encoder_hidden_size`, `downsampling_ratios`, ...) or
//! descript's (`encoder_dim`, `encoder_rates`, ..., the `metadata.kwargs` of `weights.pth`).
//! A descript `weights.pth` becomes such a directory with:
//!
//! ```text
//! python -c "import torch, json; from safetensors.torch import save_file
//! d = torch.load('weights.pth', map_location='cpu', weights_only=True)
//! save_file({k: v.contiguous() for k, v in d['state_dict'].items()}, 'model.safetensors')
//! json.dump(d['metadata']['kwargs'], open('config.json', 'w'))"
//! ```
//!
//! Weight norm is folded at export, whatever form the file stores: a plain `weight`; descript's
//! `weight_g` / `weight_v`; or torch parametrizations (`parametrizations.weight.original0` = g,
//! `original1` = v, what `save_pretrained` writes for a model with weight norm applied). Then
//! `w = g · v / ‖v‖`, the norm over all dims but dim 0 (for the transposed convolutions, whose
//! weight is `[in, out, k]`, dim 0 is the input channel, as torch's `weight_norm(dim=0)` does).
//! The DAC graphs are always float32.
//!
//! # Modules
//!
//! `config` ([`DacConfig`]) <- `checkpoint` ([`DacCheckpoint`]: files, layouts, names, weight
//! norm; [`DacError`]) <- `graph` ([`build_dac_decoder`], [`build_dac_encoder`], one function
//! per block; [`DacWeights`]). Everything public is re-exported here.

mod checkpoint;
mod config;
mod graph;

pub use checkpoint::{
    descript_module, expected_tensors, fold_weight_norm, DacCheckpoint, DacError, DacLayout,
};
pub use config::{DacConfig, DacConfigError};
pub use graph::{
    build_dac_decoder, build_dac_encoder, decoder, decoder_block, encoder, encoder_block,
    from_codes, quantize, residual_unit, snake, vector_quantize, DacWeights,
};
