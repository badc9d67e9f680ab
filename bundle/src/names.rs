//! The names of every graph input and output, written once for the graph builders and the
//! runtime. Per-layer names take the layer index.

/// `encoder.onnx`.
pub mod encoder {
    /// Text token ids of the CFG pair, `[2, T]`.
    pub const TEXT_TOKENS: &str = "text_tokens";
    /// Which text positions are real, `[2, T]` (bool, or float 0/1 for coreml).
    pub const TEXT_MASK: &str = "text_mask";
    /// The encoder's output states, float32 `[2, T, E]`.
    pub const STATES: &str = "encoder_states";
    /// Layer `i`'s cross-attention keys, computed once per utterance.
    pub fn cross_k(i: usize) -> String {
        format!("cross_k_{i}")
    }
    /// Layer `i`'s cross-attention values.
    pub fn cross_v(i: usize) -> String {
        format!("cross_v_{i}")
    }
}

/// `decoder_step.onnx` (see [`crate::StepLayout`] for what each target takes).
pub mod step {
    pub const TOKENS: &str = "tokens";
    /// The step's position (the number of filled cache slots).
    pub const STEP: &str = "step";
    /// Bool mask of the text positions (portable).
    pub const CROSS_MASK: &str = "cross_mask";
    /// Additive bias of the text positions (fused and coreml).
    pub const CROSS_BIAS: &str = "cross_bias";
    /// Additive bias of the cache slots (coreml).
    pub const SELF_BIAS: &str = "self_bias";
    pub const LOGITS: &str = "logits";
    pub fn self_k(i: usize) -> String {
        format!("self_k_{i}")
    }
    pub fn self_v(i: usize) -> String {
        format!("self_v_{i}")
    }
    pub fn cross_k(i: usize) -> String {
        super::encoder::cross_k(i)
    }
    pub fn cross_v(i: usize) -> String {
        super::encoder::cross_v(i)
    }
    /// The updated cache (bound to the same buffer as `self_k_{i}`: updated in place).
    pub fn present_k(i: usize) -> String {
        format!("present_k_{i}")
    }
    pub fn present_v(i: usize) -> String {
        format!("present_v_{i}")
    }
    /// The step's new cache row (coreml: the runtime writes it into the cache).
    pub fn new_k(i: usize) -> String {
        format!("new_k_{i}")
    }
    pub fn new_v(i: usize) -> String {
        format!("new_v_{i}")
    }
}

/// `dac_decoder.onnx` and `dac_encoder.onnx`.
pub mod dac {
    /// Codes `[1, n_codebooks, frames]` (int64).
    pub const CODES: &str = "codes";
    /// Waveform `[1, 1, samples]` (float32).
    pub const AUDIO: &str = "audio";
}
