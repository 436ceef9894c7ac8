//! Tensor element types and their block formats (GGUF / ggml definitions), CPU dequantisation
//! and quantisation (for test models and the converter). The 32-element types are here; the
//! Q5 types and the 256-element K-quants (super-blocks of 8 or 16 sub-blocks with their own
//! scales) are in `kquants` (dequantisation) and `kquantize` (ggml's reference quantisers, with
//! their per-group scale searches in `search`); `random` writes valid random blocks of any type
//! for tests. Every quantiser reproduces llama.cpp's bytes (tests/quant.rs runs its library).

mod kquantize;
mod kquants;
mod random;
mod search;

pub use random::random_blocks;

/// ggml tensor types we support. The numeric ids are ggml's.
// why: the names are ggml's (Q4_K, Q6_K), which every GGUF tool and user knows.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    BF16,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl GgmlType {
    pub const ALL: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];
    /// The types written before the K-quants (tests that sweep every float and 32-element type).
    pub const CLASSIC: [GgmlType; 6] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1];
    /// The Q5 and K-quant types.
    pub const K_AND_Q5: [GgmlType; 7] = [GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K];

    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2_K,
            11 => GgmlType::Q3_K,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// Elements per block (1 for plain float types).
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::Q5_1 => 32,
            GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => 256,
        }
    }

    /// Bytes per block in the GGUF file.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,  // f16 d, 16 bytes of nibbles
            GgmlType::Q4_1 => 20,  // f16 d, f16 m, 16 bytes of nibbles
            GgmlType::Q8_0 => 34,  // f16 d, 32 x i8
            GgmlType::Q5_0 => 22,  // f16 d, u32 high bits, 16 bytes of nibbles
            GgmlType::Q5_1 => 24,  // f16 d, f16 m, u32 high bits, 16 bytes of nibbles
            GgmlType::Q2_K => 84,  // 16 scale/min bytes, 64 bytes of 2-bit quants, f16 d, f16 dmin
            GgmlType::Q3_K => 110, // 32 bytes high-bit mask, 64 bytes of 2-bit quants, 12 bytes of 6-bit scales, f16 d
            GgmlType::Q4_K => 144, // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
            GgmlType::Q5_K => 176, // as Q4_K plus 32 bytes of high bits before the nibbles
            GgmlType::Q6_K => 210, // 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 i8 scales, f16 d
        }
    }

    /// Bytes for `n` elements, or None if `n` is not a whole number of blocks or overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bl = self.block_len() as u64;
        if !n.is_multiple_of(bl) {
            return None;
        }
        (n / bl).checked_mul(self.block_bytes() as u64)
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::BF16 => "BF16",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// Float types (one element per "block").
    pub fn is_float(self) -> bool {
        self.block_len() == 1
    }

    /// The 256-element super-block types.
    pub fn is_k_quant(self) -> bool {
        self.block_len() == 256
    }

    pub fn parse_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

/// Dequantise `n` elements of type `ty` from `data` (exactly `ty.bytes_for(n)` bytes) into f32,
/// bit-exact with ggml's reference dequantisation.
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> crate::Result<Vec<f32>> {
    let want = ty.bytes_for(n as u64);
    if want != Some(data.len() as u64) {
        return Err(crate::Error::InvalidArgument(format!(
            "dequantize {}: {} bytes for {n} elements (expected {})",
            ty.name(),
            data.len(),
            want.map_or_else(|| "a whole number of blocks".to_string(), |w| w.to_string())
        )));
    }
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(data.chunks_exact(2).map(|b| f16_at(b, 0))),
        GgmlType::BF16 => out.extend(data.chunks_exact(2).map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))),
        GgmlType::Q8_0 => {
            for b in data.chunks_exact(34) {
                let d = f16_at(b, 0);
                out.extend(b[2..].iter().map(|&q| q as i8 as f32 * d));
            }
        }
        GgmlType::Q4_0 => {
            for b in data.chunks_exact(18) {
                let d = f16_at(b, 0);
                let qs = &b[2..];
                // Low nibbles are elements 0..15, high nibbles 16..31.
                out.extend(qs.iter().map(|&q| ((q & 0x0F) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        GgmlType::Q4_1 => {
            for b in data.chunks_exact(20) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                let qs = &b[4..];
                out.extend(qs.iter().map(|&q| (q & 0x0F) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
        }
        _ => kquants::dequantize_into(ty, data, &mut out),
    }
    Ok(out)
}

/// Quantise f32 values into type `ty` (ggml's reference quantisers); `x.len()` must be a whole
/// number of blocks. Used to build test models and by the converter.
pub fn quantize(ty: GgmlType, x: &[f32]) -> crate::Result<Vec<u8>> {
    let size = ty.bytes_for(x.len() as u64).ok_or_else(|| {
        crate::Error::InvalidArgument(format!("quantize {}: {} values are not a whole number of {}-element blocks", ty.name(), x.len(), ty.block_len()))
    })?;
    let mut out = Vec::with_capacity(size as usize);
    match ty {
        GgmlType::F32 => x.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => x.iter().for_each(|&v| out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())),
        GgmlType::BF16 => x.iter().for_each(|&v| out.extend_from_slice(&f32_to_bf16(v).to_le_bytes())),
        GgmlType::Q8_0 => x.chunks_exact(32).for_each(|b| quantize_block_q8_0(b, &mut out)),
        GgmlType::Q4_0 => x.chunks_exact(32).for_each(|b| quantize_block_q4_0(b, &mut out)),
        GgmlType::Q4_1 => x.chunks_exact(32).for_each(|b| quantize_block_q4_1(b, &mut out)),
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
            kquantize::quantize_into(ty, x, &mut out)
        }
    }
    debug_assert_eq!(out.len() as u64, size);
    Ok(out)
}

pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn put_f16(out: &mut Vec<u8>, v: f32) {
    // half rounds to nearest even, as GGML_FP32_TO_FP16 does.
    out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// ggml_compute_fp32_to_bf16: round to nearest even; NaNs are kept quiet.
pub fn f32_to_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// C's `(int8_t)f` as x86-64 compiles it (cvttss2si to a 32-bit integer, then the low byte):
/// in-range values truncate toward zero; NaN and values past ±2^31 become 0x80000000, so 0.
/// ggml's reference quantisers rely on it only for degenerate blocks (a subnormal maximum makes
/// 1/d infinite), where C leaves the result undefined: this is what llama.cpp's x86 builds give.
pub(super) fn c_float_to_i8(f: f32) -> i8 {
    if f.is_nan() || f.abs() >= 2_147_483_648.0 {
        0
    } else {
        f as i32 as i8
    }
}

/// quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d) (half away from zero).
fn quantize_block_q8_0(x: &[f32], out: &mut Vec<u8>) {
    // C's MAX(a, b) = a > b ? a : b, so a NaN takes over (then yields to the next value) as in ggml.
    let amax = x.iter().fold(0f32, |a, v| if a > v.abs() { a } else { v.abs() });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    out.extend(x.iter().map(|&v| c_float_to_i8((v * id).round()) as u8));
}

/// quantize_row_q4_0_ref: d = max / -8 with `max` the value of largest magnitude (sign kept),
/// q = min(15, trunc(x / d + 8.5)).
fn quantize_block_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    for j in 0..16 {
        let lo = c_float_to_i8(x[j] * id + 8.5).min(15) as u8;
        let hi = c_float_to_i8(x[j + 16] * id + 8.5).min(15) as u8;
        out.push(lo | (hi << 4));
    }
}

/// The block's (min, max) as ggml's Q4_1 / Q5_1 reference loops find them: strict comparisons
/// from (FLT_MAX, -FLT_MAX), so a NaN never replaces either.
pub(super) fn block_min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// quantize_row_q4_1_ref: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
fn quantize_block_q4_1(x: &[f32], out: &mut Vec<u8>) {
    let (min, max) = block_min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    put_f16(out, min);
    for j in 0..16 {
        let lo = c_float_to_i8((x[j] - min) * id + 0.5).min(15) as u8;
        let hi = c_float_to_i8((x[j + 16] - min) * id + 0.5).min(15) as u8;
        out.push(lo | (hi << 4));
    }
}
