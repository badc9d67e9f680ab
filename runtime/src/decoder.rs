//! One utterance's decoder state: the encoder's cross K/V, the self-attention cache and the
//! step inputs/outputs, all bound once to the decoder-step session with IO binding, so a step
//! only writes the new tokens and step index, runs, and reads the logits.

use ort::memory::Allocator;
use ort::session::IoBinding;
use ort::value::{DynValue, Tensor};

use crate::error::RuntimeError;
use crate::kv_cache::KvCache;
use crate::model::DiaModel;

pub struct Utterance<'m> {
    model: &'m DiaModel,
    binding: IoBinding,
    tokens: Tensor<i64>,
    step: Tensor<i64>,
    logits: Tensor<f32>,
    cache: KvCache,
    /// Encoder outputs kept alive for the binding (cross K/V, masks).
    _held: Vec<DynValue>,
    _mask: Tensor<bool>,
}

impl<'m> Utterance<'m> {
    /// Runs the encoder on the CFG pair for `text` (conditional tokens, unpadded) and prepares
    /// a fresh decoder state.
    pub fn new(model: &'m DiaModel, text: &[i64]) -> Result<Self, RuntimeError> {
        let m = model.manifest();
        let cfg = &m.config;
        let d = &cfg.decoder_config;
        let t = m.max_text_len;
        if text.len() > t {
            return Err(RuntimeError::TextTooLong {
                tokens: text.len(),
                max: t,
            });
        }
        // Row 0 unconditional (all pad), row 1 conditional; both use the conditional mask.
        let mut tok = vec![0i64; 2 * t];
        tok[t..t + text.len()].copy_from_slice(text);
        let mask: Vec<bool> = (0..2 * t).map(|i| tok[t + i % t] != 0).collect();
        let mut enc_out = model.run_encoder(tok, mask.clone())?;

        let alloc = Allocator::default();
        let decoder = model.decoder_session();
        let mut binding = decoder.create_binding()?;
        let tokens = Tensor::<i64>::new(&alloc, [2usize, d.num_channels])?;
        let mut step = Tensor::<i64>::new(&alloc, [1usize])?;
        step.extract_tensor_mut().1[0] = 0;
        let mask_t = Tensor::<bool>::from_array(([2usize, t], mask))?;
        let mut logits = Tensor::<f32>::new(&alloc, [2usize, d.num_channels, d.vocab_size])?;
        let mut cache = KvCache::new(
            d.num_hidden_layers,
            2,
            d.num_key_value_heads,
            d.head_dim,
            m.max_frames,
        )?;
        binding.bind_input("tokens", &tokens)?;
        binding.bind_input("step", &step)?;
        binding.bind_input("cross_mask", &mask_t)?;
        let mut held = Vec::new();
        for (i, l) in cache.layers.iter_mut().enumerate() {
            binding.bind_input(format!("self_k_{i}"), &l.k)?;
            binding.bind_input(format!("self_v_{i}"), &l.v)?;
            for kind in ["cross_k", "cross_v"] {
                let name = format!("{kind}_{i}");
                let v = enc_out
                    .remove(&name)
                    .ok_or_else(|| RuntimeError::GraphMismatch {
                        graph: "encoder".into(),
                        kind: "output",
                        name: name.clone(),
                    })?;
                binding.bind_input(&name, &v)?;
                held.push(v);
            }
            binding.bind_output(format!("new_k_{i}"), &mut l.new_k)?;
            binding.bind_output(format!("new_v_{i}"), &mut l.new_v)?;
        }
        binding.bind_output("logits", &mut logits)?;
        drop(decoder);
        Ok(Self {
            model,
            binding,
            tokens,
            step,
            logits,
            cache,
            _held: held,
            _mask: mask_t,
        })
    }

    /// Runs one decoder step at `position` with this frame's `tokens` (one per channel, the
    /// same for both CFG rows); returns the logits `[2, C, V]` (unconditional, conditional).
    pub fn step(&mut self, tokens: &[i64], position: usize) -> Result<&[f32], RuntimeError> {
        {
            let buf = self.tokens.extract_tensor_mut().1;
            let c = tokens.len();
            buf[..c].copy_from_slice(tokens);
            buf[c..].copy_from_slice(tokens);
        }
        self.step.extract_tensor_mut().1[0] = position as i64;
        {
            let mut session = self.model.decoder_session();
            session.run_binding(&self.binding)?;
        }
        self.cache.commit(position);
        Ok(self.logits.extract_tensor().1)
    }
}
