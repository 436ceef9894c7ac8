//! Tensor element types and their block formats (GGUF / ggml definitions), CPU dequantisation,
//! quantisation (for test models and the converter), and the one-time repack into the
//! 4-byte-aligned layout the GPU kernels read (see [`GpuLayout`]).

/// ggml tensor types we support. The numeric ids are ggml's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    BF16,
}

impl GgmlType {
    pub const ALL: [GgmlType; 6] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1];

    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
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
            GgmlType::Q8_0 => 8,
            GgmlType::BF16 => 30,
        }
    }

    /// Elements per block (1 for plain float types).
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => 32,
        }
    }

    /// Bytes per block in the GGUF file.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18, // f16 d, 16 bytes of nibbles
            GgmlType::Q4_1 => 20, // f16 d, f16 m, 16 bytes of nibbles
            GgmlType::Q8_0 => 34, // f16 d, 32 x i8
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
        }
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
    }
    debug_assert_eq!(out.len() as u64, size);
    Ok(out)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
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

/// C's `(int8_t)f` for the in-range values the quantisers produce: truncation toward zero.
fn trunc_i8(f: f32) -> i32 {
    f as i8 as i32
}

/// quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d) (half away from zero).
fn quantize_block_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
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
        let lo = trunc_i8(x[j] * id + 8.5).min(15);
        let hi = trunc_i8(x[j + 16] * id + 8.5).min(15);
        out.push((lo | (hi << 4)) as u8);
    }
}

/// quantize_row_q4_1_ref: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
fn quantize_block_q4_1(x: &[f32], out: &mut Vec<u8>) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    put_f16(out, min);
    for j in 0..16 {
        let lo = trunc_i8((x[j] - min) * id + 0.5).min(15);
        let hi = trunc_i8((x[j + 16] - min) * id + 0.5).min(15);
        out.push((lo | (hi << 4)) as u8);
    }
}
