//! The decoder step's and the encoder's input/output contract, derived once from the manifest
//! (target, dtype, lengths). The three targets side by side:
//!
//! | | portable | fused | coreml |
//! |---|---|---|---|
//! | `tokens` | int64 `[2, C]` | int64 `[2, C]` | int32 `[2, C]`, channel c offset by c·V |
//! | `step` | int64 `[1]` | int32 `[2]` (per CFG row) | int32 `[1]` |
//! | self K cache | `[2, KV, d, F]` | `[2, KV, F, d]` | `[2, KV, d, F]` |
//! | cross K | `[2, KV, d, T]` | `[2, KV, T, d]` | `[2, KV, d, T]` |
//! | text mask | bool `cross_mask [2, T]` | bias `cross_bias [2, 1, 1, T]` in the dtype | bias `cross_bias [2, T]` float32 |
//! | self mask | in the graph | in the kernel | bias `self_bias [F]` float32 |
//! | cache update | in place (`present_*` = `self_*`) | in place | new rows `new_k_i`/`new_v_i` returned |
//! | text length T | fixed (`max_text_len`) | dynamic, padded to a bucket | fixed |
//! | encoder input | int64 ids, bool mask, dynamic T | same | int32 ids, float mask, fixed T |

use crate::{Dtype, ElementType, Manifest, Target};

/// How the step's position goes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PositionInput {
    /// int64 `[1]` (portable).
    I64,
    /// int32 `[1]` (coreml).
    I32,
    /// int32 `[2]`, the same position for each CFG row (fused: `GroupQueryAttention`'s
    /// `seqlens_k`).
    I32PerRow,
}

/// How token ids go in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenIds {
    /// int64, the token itself.
    I64,
    /// int32, channel c's token plus c·vocab (one embedding table for all channels; coreml).
    I32ChannelOffset,
}

/// Where K's head dim goes, for the self cache and the cross keys alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KLayout {
    /// `[B, KV, d, len]`: transposed, ready for `Q·K` as a plain MatMul.
    Transposed,
    /// `[B, KV, len, d]`, like V (what the fused attention kernels take).
    LikeV,
}

/// How the step learns which text positions are real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossMask {
    /// `cross_mask`, bool `[2, T]`.
    Bool,
    /// `cross_bias`, float32 `[2, T]`: 0 on text, [`crate::MASK_BIAS`] on padding.
    BiasF32,
    /// `cross_bias`, `[2, 1, 1, T]` in the bundle dtype.
    Bias4d(Dtype),
}

/// How the step updates the self-attention cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheUpdate {
    /// The cache buffers are bound as both `self_*` inputs and `present_*` outputs: the graph
    /// writes its slot in place.
    InPlace,
    /// The step returns the new rows (`new_k_i`, `new_v_i`) and takes a `self_bias` input;
    /// the runtime writes the rows into the cache.
    ReturnedRows,
}

/// The text length the step runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextLength {
    /// Every text is padded to this length.
    Fixed(usize),
    /// The step takes any length up to `max`; texts are padded to the shortest of `min`,
    /// 2·`min`, 4·`min`, ... that holds them (cross-attention reads every padded position each
    /// step, while few lengths keep CUDA graphs and buffers few).
    Bucketed { min: usize, max: usize },
}

impl TextLength {
    /// The length a text of `len` tokens runs at.
    pub fn bucket(self, len: usize) -> usize {
        match self {
            TextLength::Fixed(t) => t,
            TextLength::Bucketed { min, max } => {
                let mut t = min;
                while t < len {
                    t *= 2;
                }
                t.min(max)
            }
        }
    }
}

/// The encoder's inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderLayout {
    pub ids: ElementType,
    pub mask: ElementType,
    /// `Some(T)`: every text is padded to T (coreml); `None`: the text's own length.
    pub fixed_len: Option<usize>,
}

/// Everything about a bundle's step and encoder graphs that differs between targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepLayout {
    pub target: Target,
    pub dtype: Dtype,
    pub tokens: TokenIds,
    pub position: PositionInput,
    pub k_layout: KLayout,
    pub cross_mask: CrossMask,
    pub cache_update: CacheUpdate,
    pub text: TextLength,
    pub encoder: EncoderLayout,
    /// Cache slots: the most frames one generation can have.
    pub max_frames: usize,
}

/// The shortest text bucket of fused bundles.
pub const MIN_TEXT_BUCKET: usize = 32;

impl StepLayout {
    pub fn new(target: Target, dtype: Dtype, max_text_len: usize, max_frames: usize) -> Self {
        let dynamic_encoder = EncoderLayout {
            ids: ElementType::Int64,
            mask: ElementType::Bool,
            fixed_len: None,
        };
        match target {
            Target::Portable => Self {
                target,
                dtype,
                tokens: TokenIds::I64,
                position: PositionInput::I64,
                k_layout: KLayout::Transposed,
                cross_mask: CrossMask::Bool,
                cache_update: CacheUpdate::InPlace,
                text: TextLength::Fixed(max_text_len),
                encoder: dynamic_encoder,
                max_frames,
            },
            Target::Fused => Self {
                target,
                dtype,
                tokens: TokenIds::I64,
                position: PositionInput::I32PerRow,
                k_layout: KLayout::LikeV,
                cross_mask: CrossMask::Bias4d(dtype),
                cache_update: CacheUpdate::InPlace,
                text: TextLength::Bucketed {
                    min: MIN_TEXT_BUCKET.min(max_text_len),
                    max: max_text_len,
                },
                encoder: dynamic_encoder,
                max_frames,
            },
            Target::CoreMl => Self {
                target,
                dtype,
                tokens: TokenIds::I32ChannelOffset,
                position: PositionInput::I32,
                k_layout: KLayout::Transposed,
                cross_mask: CrossMask::BiasF32,
                cache_update: CacheUpdate::ReturnedRows,
                text: TextLength::Fixed(max_text_len),
                encoder: EncoderLayout {
                    ids: ElementType::Int32,
                    mask: ElementType::Float32,
                    fixed_len: Some(max_text_len),
                },
                max_frames,
            },
        }
    }

    pub fn of(m: &Manifest) -> Self {
        Self::new(m.target, m.dtype, m.max_text_len, m.max_frames)
    }

    /// The name of the text-mask input.
    pub fn cross_mask_name(&self) -> &'static str {
        match self.cross_mask {
            CrossMask::Bool => crate::names::step::CROSS_MASK,
            CrossMask::BiasF32 | CrossMask::Bias4d(_) => crate::names::step::CROSS_BIAS,
        }
    }

    /// Shape of a K tensor of `len` positions for a batch of `b` (in any integer type: sizes
    /// for buffers, manifest dims where -1 is dynamic).
    pub fn k_shape<T: Copy>(&self, b: T, heads: T, head_dim: T, len: T) -> [T; 4] {
        match self.k_layout {
            KLayout::Transposed => [b, heads, head_dim, len],
            KLayout::LikeV => [b, heads, len, head_dim],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double_from_the_minimum_up_to_the_maximum() {
        let t = TextLength::Bucketed { min: 32, max: 100 };
        assert_eq!(
            [1, 32, 33, 64, 65, 99, 100].map(|n| t.bucket(n)),
            [32, 32, 64, 64, 100, 100, 100]
        );
        assert_eq!(TextLength::Fixed(64).bucket(3), 64);
        // A bundle whose text window is shorter than the minimum bucket.
        let small = StepLayout::new(Target::Fused, Dtype::Float32, 16, 40);
        assert_eq!(small.text.bucket(5), 16);
    }

    #[test]
    fn each_target_has_its_own_contract() {
        let p = StepLayout::new(Target::Portable, Dtype::Float32, 64, 40);
        let f = StepLayout::new(Target::Fused, Dtype::Float16, 64, 40);
        let c = StepLayout::new(Target::CoreMl, Dtype::Float16, 64, 40);
        assert_eq!(p.k_shape(2, 4, 16, 40), [2, 4, 16, 40]);
        assert_eq!(f.k_shape(2, 4, 16, 40), [2, 4, 40, 16]);
        assert_eq!(
            (
                p.cross_mask_name(),
                f.cross_mask_name(),
                c.cross_mask_name()
            ),
            ("cross_mask", "cross_bias", "cross_bias")
        );
        assert_eq!(f.cross_mask, CrossMask::Bias4d(Dtype::Float16));
        assert_eq!(c.cache_update, CacheUpdate::ReturnedRows);
        assert_eq!(c.encoder.fixed_len, Some(64));
        assert_eq!(p.encoder.fixed_len, None);
    }
}
