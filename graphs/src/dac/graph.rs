//! The codec's two graphs, [`build_dac_decoder`] and [`build_dac_encoder`], one function per
//! module of transformers' `DacModel`, and [`DacWeights`], which puts the checkpoint's
//! parameters into them. Always float32.

use dia_bundle::names::dac as names;

use super::checkpoint::{l2_norm, DacCheckpoint, DacError};
use super::config::DacConfig;
use crate::builder::{Builder, Conv1d, DType, Value, DYN};
use crate::tensor::{encode_f32, Tensor};
use crate::weights::module_path;

/// Dilations of the three residual units of every block.
const DILATIONS: [i64; 3] = [1, 3, 9];
/// `F.normalize`'s default eps.
const NORMALIZE_EPS: f32 = 1e-12;

// ---------------------------------------------------------------------------------------------
// Weights into the graph
// ---------------------------------------------------------------------------------------------

/// Puts DAC parameters into a graph, addressed by transformers module paths under a prefix
/// (`w.pp("decoder").pp("block.0")`), like [`crate::weights::Weights`]. Always float32.
#[derive(Clone)]
pub struct DacWeights<'a> {
    ckpt: &'a DacCheckpoint,
    prefix: String,
}

impl<'a> DacWeights<'a> {
    pub fn new(ckpt: &'a DacCheckpoint) -> Self {
        Self {
            ckpt,
            prefix: String::new(),
        }
    }

    pub fn pp(&self, name: impl AsRef<str>) -> Self {
        Self {
            ckpt: self.ckpt,
            prefix: self.path(name.as_ref()),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn path(&self, name: &str) -> String {
        module_path(&self.prefix, name)
    }

    fn add(&self, b: &mut Builder, name: &str, t: &Tensor) -> Value {
        b.initializer(
            &self.path(name),
            DType::F32,
            &t.shape_i64(),
            &encode_f32(&t.data, DType::F32),
        )
    }

    /// Parameter `<prefix>.<name>` as float32 (weight norm folded).
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor, DacError> {
        self.ckpt.get(&self.path(name), shape)
    }

    /// Conv `<prefix>.<name>`: its weight (`shape`) and bias (`[bias_len]`) as initializers.
    pub fn conv(
        &self,
        b: &mut Builder,
        name: &str,
        shape: [usize; 3],
        bias_len: usize,
    ) -> Result<(Value, Value), DacError> {
        let w = self.tensor(&format!("{name}.weight"), &shape)?;
        let bias = self.tensor(&format!("{name}.bias"), &[bias_len])?;
        Ok((
            self.add(b, &format!("{name}.weight"), &w),
            self.add(b, &format!("{name}.bias"), &bias),
        ))
    }

    /// Snake `<prefix>.<name>` of `channels`: alpha `[1, C, 1]` and `1 / (alpha + 1e-9)`,
    /// computed here in float32 exactly as the reference computes it at run time.
    pub fn snake(
        &self,
        b: &mut Builder,
        name: &str,
        channels: usize,
    ) -> Result<(Value, Value), DacError> {
        let alpha = self.tensor(&format!("{name}.alpha"), &[1, channels, 1])?;
        let inv = Tensor::new(
            alpha.shape.clone(),
            alpha.data.iter().map(|&a| (a + 1e-9f32).recip()).collect(),
        );
        Ok((
            self.add(b, &format!("{name}.alpha"), &alpha),
            self.add(b, &format!("{name}.inv_alpha"), &inv),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks (one per transformers module)
// ---------------------------------------------------------------------------------------------

/// `Snake1d`: `x + (alpha + 1e-9)^-1 · sin(alpha · x)²`, alpha per channel.
pub fn snake(b: &mut Builder, w: &DacWeights, name: &str, x: &Value) -> Result<Value, DacError> {
    let (alpha, inv) = w.snake(b, name, x.shape[1] as usize)?;
    Ok(b.scoped(&w.path(name), |b| {
        let ax = b.mul(&alpha, x);
        let s = b.sin(&ax);
        let s2 = b.mul(&s, &s);
        let t = b.mul(&inv, &s2);
        b.add(x, &t)
    }))
}

/// A stride-1 conv's parameters, `padding` on each side.
fn padded(padding: i64) -> Conv1d {
    Conv1d {
        padding,
        ..Default::default()
    }
}

/// The strided convs' parameters (kernel 2·stride): padding `ceil(stride / 2)`.
fn strided(stride: usize) -> Conv1d {
    Conv1d {
        stride: stride as i64,
        padding: stride.div_ceil(2) as i64,
        ..Default::default()
    }
}

/// A weight-normed `Conv1d` `<prefix>.<name>` from `x`'s channels to `out` (kernel `k`).
fn conv(
    b: &mut Builder,
    w: &DacWeights,
    name: &str,
    x: &Value,
    out: usize,
    k: usize,
    p: Conv1d,
) -> Result<Value, DacError> {
    let cin = x.shape[1] as usize;
    let (wt, bias) = w.conv(b, name, [out, cin, k], out)?;
    Ok(b.scoped(&w.path(name), |b| b.conv1d(x, &wt, Some(&bias), p)))
}

/// `DacResidualUnit`: Snake -> conv k7 (dilated, same length) -> Snake -> conv k1, plus the
/// input (centre-cropped if the branch came out shorter, which it never does with these pads).
pub fn residual_unit(
    b: &mut Builder,
    w: &DacWeights,
    x: &Value,
    dilation: i64,
) -> Result<Value, DacError> {
    let dim = x.shape[1] as usize;
    let pad = (7 - 1) * dilation / 2;
    let h = snake(b, w, "snake1", x)?;
    let h = conv(
        b,
        w,
        "conv1",
        &h,
        dim,
        7,
        Conv1d {
            padding: pad,
            dilation,
            ..Default::default()
        },
    )?;
    let h = snake(b, w, "snake2", &h)?;
    let h = conv(b, w, "conv2", &h, dim, 1, Conv1d::default())?;
    // The branch is shorter than the input by `(K-1)·d - 2·pad` samples, whatever the length.
    let crop = ((7 - 1) * dilation - 2 * pad) / 2;
    Ok(b.scoped(w.prefix(), |b| {
        let x = if crop > 0 {
            b.slice(x, -1, crop, -crop)
        } else {
            x.clone()
        };
        b.add(&x, &h)
    }))
}

fn residual_units(b: &mut Builder, w: &DacWeights, x: &Value) -> Result<Value, DacError> {
    let mut h = x.clone();
    for (r, &d) in DILATIONS.iter().enumerate() {
        h = residual_unit(b, &w.pp(format!("res_unit{}", r + 1)), &h, d)?;
    }
    Ok(h)
}

/// `DacDecoderBlock`: Snake -> ConvTranspose (kernel 2·stride, up by `stride`, channels
/// halved) -> three residual units (dilations 1, 3, 9).
pub fn decoder_block(
    b: &mut Builder,
    w: &DacWeights,
    x: &Value,
    stride: usize,
) -> Result<Value, DacError> {
    let din = x.shape[1] as usize;
    let dout = din / 2;
    let h = snake(b, w, "snake1", x)?;
    let (wt, bias) = w.conv(b, "conv_t1", [din, dout, 2 * stride], dout)?;
    let h = b.scoped(&w.path("conv_t1"), |b| {
        b.conv_transpose1d(&h, &wt, Some(&bias), strided(stride))
    });
    residual_units(b, w, &h)
}

/// `DacEncoderBlock`: three residual units -> Snake -> conv (kernel 2·stride, down by
/// `stride`, channels doubled).
pub fn encoder_block(
    b: &mut Builder,
    w: &DacWeights,
    x: &Value,
    stride: usize,
) -> Result<Value, DacError> {
    let dim = x.shape[1] as usize * 2;
    let h = residual_units(b, w, x)?;
    let h = snake(b, w, "snake1", &h)?;
    conv(b, w, "conv1", &h, dim, 2 * stride, strided(stride))
}

/// `DacDecoder`: latent `[1, hidden, frames]` -> waveform `[1, 1, samples]`.
pub fn decoder(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    latent: &Value,
) -> Result<Value, DacError> {
    let mut h = conv(b, w, "conv1", latent, cfg.decoder_hidden_size, 7, padded(3))?;
    for (i, &s) in cfg.upsampling_ratios.iter().enumerate() {
        h = decoder_block(b, &w.pp(format!("block.{i}")), &h, s)?;
    }
    let h = snake(b, w, "snake1", &h)?;
    let h = conv(b, w, "conv2", &h, 1, 7, padded(3))?;
    Ok(b.scoped(w.prefix(), |b| b.tanh(&h)))
}

/// `DacEncoder`: waveform `[1, 1, samples]` -> latent `[1, hidden, frames]`.
pub fn encoder(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    audio: &Value,
) -> Result<Value, DacError> {
    let mut h = conv(b, w, "conv1", audio, cfg.encoder_hidden_size, 7, padded(3))?;
    for (i, &s) in cfg.downsampling_ratios.iter().enumerate() {
        h = encoder_block(b, &w.pp(format!("block.{i}")), &h, s)?;
    }
    let h = snake(b, w, "snake1", &h)?;
    conv(b, w, "conv2", &h, cfg.hidden_size, 3, padded(1))
}

/// `DacResidualVectorQuantizer.from_codes`: codes `[1, n_codebooks, frames]` -> latent
/// `[1, hidden, frames]`, the sum over codebooks of `out_proj(codebook[code])`, in order.
pub fn from_codes(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    codes: &Value,
) -> Result<Value, DacError> {
    let mut latent: Option<Value> = None;
    for i in 0..cfg.n_codebooks {
        let q = w.pp(format!("quantizers.{i}"));
        let table = q.tensor("codebook.weight", &[cfg.codebook_size, cfg.codebook_dim])?;
        let table = q.add(b, "codebook.weight", &table);
        let (ow, ob) = q.conv(
            b,
            "out_proj",
            [cfg.hidden_size, cfg.codebook_dim, 1],
            cfg.hidden_size,
        )?;
        let y = b.scoped(q.prefix(), |b| {
            let idx = b.const_i64(&[i as i64], &[]);
            let c = b.gather(codes, &idx, 1); // [1, F]
            let e = b.gather(&table, &c, 0); // [1, F, D]
            let e = b.transpose(&e, &[0, 2, 1]); // [1, D, F]
            b.conv1d(&e, &ow, Some(&ob), Conv1d::default())
        });
        latent = Some(match latent {
            None => y,
            Some(acc) => b.scoped(w.prefix(), |b| b.add(&acc, &y)),
        });
    }
    Ok(latent.expect("at least one codebook"))
}

/// `DacVectorQuantize.forward` of codebook `<prefix>` on `residual` `[1, hidden, F]`:
/// returns (codes `[1, F]`, the quantized latent `[1, hidden, F]` to subtract).
/// Nearest neighbour by cosine similarity: encodings and codebook L2-normalised, then the
/// reference's score `-(‖e‖² - 2·e·c) + ‖c‖²`, its first maximum.
pub fn vector_quantize(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    residual: &Value,
    coreml: bool,
) -> Result<(Value, Value), DacError> {
    let (n, d) = (cfg.codebook_size, cfg.codebook_dim);
    let (iw, ib) = w.conv(b, "in_proj", [d, cfg.hidden_size, 1], d)?;
    let (ow, ob) = w.conv(b, "out_proj", [cfg.hidden_size, d, 1], cfg.hidden_size)?;
    let table = w.tensor("codebook.weight", &[n, d])?;
    // F.normalize of the codebook and its squared norms, once, at export.
    let mut normed_t = vec![0f32; n * d];
    let mut sq = vec![0f32; n];
    for (r, row) in table.data.chunks_exact(d).enumerate() {
        let norm = l2_norm(row).max(NORMALIZE_EPS);
        let mut s = 0f64;
        for (j, &x) in row.iter().enumerate() {
            let y = x / norm;
            normed_t[j * n + r] = y;
            s += f64::from(y) * f64::from(y);
        }
        sq[r] = s as f32;
    }
    let table = w.add(b, "codebook.weight", &table);
    let normed_t = w.add(
        b,
        "codebook.normalized_t",
        &Tensor::new(vec![d, n], normed_t),
    );
    let sq = w.add(b, "codebook.sq_norm", &Tensor::new(vec![n], sq));
    Ok(b.scoped(w.prefix(), |b| {
        let z = b.conv1d(residual, &iw, Some(&ib), Conv1d::default()); // [1, D, F]
        let e = b.transpose(&z, &[0, 2, 1]); // [1, F, D]
        let norm = if coreml {
            // Core ML has no ReduceL2.
            let e2 = b.mul(&e, &e);
            let s = b.reduce_sum(&e2, &[-1], true);
            b.sqrt(&s)
        } else {
            b.reduce_l2(&e, &[-1], true)
        };
        let eps = b.scalar(NORMALIZE_EPS, DType::F32);
        let norm = b.max(&norm, &eps);
        let e = b.div(&e, &norm);
        let l2 = {
            let e2 = b.mul(&e, &e);
            b.reduce_sum(&e2, &[-1], true) // [1, F, 1]
        };
        let two = b.scalar(2.0, DType::F32);
        let e2x = b.mul(&two, &e);
        let dot = b.matmul(&e2x, &normed_t); // [1, F, N]

        // -(|e|² - 2e·c + |c|²): the reference's negated distance (no Neg: Core ML has none).
        let dist = b.sub(&dot, &l2);
        let dist = b.sub(&dist, &sq);
        let codes = b.argmax(&dist, -1, false); // [1, F]

        // Core ML: ArgMax may feed only one node, a Cast to int32.
        let codes = if coreml {
            b.cast(&codes, DType::I32)
        } else {
            codes
        };
        let q = b.gather(&table, &codes, 0); // [1, F, D]
        let q = b.transpose(&q, &[0, 2, 1]); // [1, D, F]

        // The straight-through estimator as the reference writes it: z + (q - z).
        let diff = b.sub(&q, &z);
        let zq = b.add(&z, &diff);
        let out = b.conv1d(&zq, &ow, Some(&ob), Conv1d::default());
        (codes, out)
    }))
}

/// `DacResidualVectorQuantizer.forward` (inference): latent `[1, hidden, F]` -> codes
/// `[1, n_codebooks, F]`, each codebook quantizing what the previous ones left.
pub fn quantize(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    latent: &Value,
    coreml: bool,
) -> Result<Value, DacError> {
    let mut residual = latent.clone();
    let mut codes = Vec::new();
    for i in 0..cfg.n_codebooks {
        let q = w.pp(format!("quantizers.{i}"));
        let (c, out) = vector_quantize(b, &q, cfg, &residual, coreml)?;
        residual = b.scoped(q.prefix(), |b| b.sub(&residual, &out));
        // Core ML stacks only float tensors: codes < 1024 are exact in float32.
        let c = if coreml { b.cast(&c, DType::F32) } else { c };
        codes.push(b.scoped(q.prefix(), |b| b.unsqueeze(&c, &[1])));
    }
    let refs: Vec<&Value> = codes.iter().collect();
    Ok(b.scoped(w.prefix(), |b| {
        let all = b.concat(&refs, 1);
        b.cast(&all, DType::I64)
    }))
}

// ---------------------------------------------------------------------------------------------
// Graphs
// ---------------------------------------------------------------------------------------------

/// The decoder graph: `codes` int64 `[1, n_codebooks, frames]` -> `audio` float32
/// `[1, 1, samples]`. `frames` fixes the frame count (static shapes, for Core ML; the runtime
/// then decodes in overlapping chunks); `None` leaves it dynamic.
pub fn build_dac_decoder(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    frames: Option<usize>,
) -> Result<(), DacError> {
    let shape = [1, cfg.n_codebooks as i64, frames.map_or(DYN, |f| f as i64)];
    let dims: &[&str] = if frames.is_some() { &[] } else { &["samples"] };
    let codes = if frames.is_some() {
        b.input(names::CODES, DType::I64, &shape)
    } else {
        b.input_dyn(names::CODES, DType::I64, &shape, &["frames"])
    };
    let latent = from_codes(b, &w.pp("quantizer"), cfg, &codes)?;
    let audio = decoder(b, &w.pp("decoder"), cfg, &latent)?;
    b.output_dyn(&audio, names::AUDIO, dims);
    Ok(())
}

/// The encoder graph: `audio` float32 `[1, 1, samples]` (zero-padded on the right to a
/// multiple of `hop_length` by the caller) -> `codes` int64 `[1, n_codebooks, frames]`.
/// `frames` fixes the length (static shapes and Core ML's ops, for Core ML; the runtime then
/// encodes in overlapping chunks); `None` leaves it dynamic.
pub fn build_dac_encoder(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    frames: Option<usize>,
) -> Result<(), DacError> {
    let audio = match frames {
        Some(f) => b.input(
            names::AUDIO,
            DType::F32,
            &[1, 1, (f * cfg.hop_length) as i64],
        ),
        None => b.input_dyn(names::AUDIO, DType::F32, &[1, 1, DYN], &["samples"]),
    };
    let latent = encoder(b, &w.pp("encoder"), cfg, &audio)?;
    let codes = quantize(b, &w.pp("quantizer"), cfg, &latent, frames.is_some())?;
    let dims: &[&str] = if frames.is_some() { &[] } else { &["frames"] };
    b.output_dyn(&codes, names::CODES, dims);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dac::checkpoint::tests::write_ckpt;
    use crate::dac::checkpoint::DacLayout;

    #[test]
    fn graphs_have_dynamic_io() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = write_ckpt(tmp.path(), DacLayout::Transformers, &|_| "plain");
        let ckpt = DacCheckpoint::open(&dir).unwrap();
        let w = DacWeights::new(&ckpt);
        let mut b = Builder::new("dac_decoder", None);
        build_dac_decoder(&mut b, &w, &ckpt.config, None).unwrap();
        assert_eq!(b.inputs()[0].shape, vec![1, 9, DYN]);
        assert_eq!(
            (b.outputs()[0].name.as_str(), b.outputs()[0].shape.clone()),
            ("audio", vec![1, 1, DYN])
        );
        let mut b = Builder::new("dac_encoder", None);
        build_dac_encoder(&mut b, &w, &ckpt.config, None).unwrap();
        assert_eq!(b.inputs()[0].shape, vec![1, 1, DYN]);
        assert_eq!(b.outputs()[0].dtype, DType::I64);
        assert_eq!(b.outputs()[0].shape, vec![1, 9, DYN]);
        let (model, _) = b.finish("", &[]).unwrap();
        let g = model.graph.unwrap();
        let dim = |vi: &crate::onnx::ValueInfoProto, i: usize| {
            vi.r#type
                .as_ref()
                .unwrap()
                .tensor_type
                .as_ref()
                .unwrap()
                .shape
                .as_ref()
                .unwrap()
                .dim[i]
                .value
                .clone()
        };
        use crate::onnx::DimensionValue;
        assert_eq!(
            dim(&g.input[0], 2),
            Some(DimensionValue::DimParam("samples".into()))
        );
        assert_eq!(
            dim(&g.output[0], 2),
            Some(DimensionValue::DimParam("frames".into()))
        );
        assert_eq!(dim(&g.output[0], 1), Some(DimensionValue::DimValue(9)));
    }
}
