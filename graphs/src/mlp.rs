//! The gated MLP: `wo(silu(gate) * up)` with gate and up from one fused kernel.

use crate::builder::{Builder, Value};
use crate::checkpoint::CheckpointError;
use crate::weights::Weights;

pub fn mlp(
    b: &mut Builder,
    w: &Weights,
    x: &Value,
    hidden: usize,
    intermediate: usize,
) -> Result<Value, CheckpointError> {
    // wi_fused is [hidden, 2, I] with index 0 = gate and 1 = up, so as a [hidden, 2I] matrix
    // the gate is the first I columns.
    let wi = w.linear(b, "wi_fused", &[hidden, 2, intermediate], 1)?;
    let wo = w.linear(b, "wo", &[intermediate, hidden], 1)?;
    Ok(b.scoped(w.prefix(), |b| {
        let h = wi.apply(b, x);
        let i = intermediate as i64;
        let gu = b.split(&h, -1, &[i, i]);
        let sig = b.sigmoid(&gu[0]);
        let silu = b.mul(&gu[0], &sig);
        let act = b.mul(&silu, &gu[1]);
        wo.apply(b, &act)
    }))
}
