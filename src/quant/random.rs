//! Valid random blocks of any type, for test models and kernel tests: every quant bit random,
//! scales drawn so that elements stay within about ±`amp` (a quantiser would give the same
//! kind of blocks; random bits also reach the corners a quantiser rarely produces, such as
//! negative Q6_K scales or the largest 6-bit K scales).

use super::GgmlType;

/// A small deterministic generator (splitmix64), so tests need no crate for randomness.
pub struct BlockRng(u64);

impl BlockRng {
    pub fn new(seed: u64) -> Self {
        BlockRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn bytes(&mut self, out: &mut Vec<u8>, n: usize) {
        out.extend((0..n).map(|_| self.next_u64() as u8));
    }

    /// An f16 scale in [lo, hi) (positive).
    fn f16(&mut self, out: &mut Vec<u8>, lo: f32, hi: f32) {
        let v = lo + (hi - lo) * self.unit();
        out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
    }
}

/// `n` elements (a whole number of blocks) of type `ty` with random quants and scales, elements
/// within about ±`amp`. Float and classic types quantise random uniform values in [-amp, amp].
pub fn random_blocks(ty: GgmlType, n: usize, amp: f32, seed: u64) -> crate::Result<Vec<u8>> {
    let size = ty
        .bytes_for(n as u64)
        .ok_or_else(|| crate::Error::InvalidArgument(format!("random_blocks {}: {n} is not a whole number of {}-element blocks", ty.name(), ty.block_len())))?
        as usize;
    let mut rng = BlockRng::new(seed ^ ((ty.id() as u64) << 56));
    let mut out = Vec::with_capacity(size);
    let blocks = n / ty.block_len();
    for _ in 0..blocks {
        match ty {
            GgmlType::Q5_0 => {
                rng.f16(&mut out, 0.5 * amp / 16.0, amp / 16.0);
                rng.bytes(&mut out, 20);
            }
            GgmlType::Q5_1 => {
                rng.f16(&mut out, 0.5 * amp / 31.0, amp / 31.0);
                let m = -amp * (0.3 + 0.4 * rng.unit());
                out.extend_from_slice(&half::f16::from_f32(m).to_le_bytes());
                rng.bytes(&mut out, 20);
            }
            GgmlType::Q2_K => {
                rng.bytes(&mut out, 80);
                rng.f16(&mut out, 0.5 * amp / 45.0, amp / 45.0);
                rng.f16(&mut out, 0.25 * amp / 15.0, 0.5 * amp / 15.0);
            }
            GgmlType::Q3_K => {
                rng.bytes(&mut out, 108);
                rng.f16(&mut out, 0.5 * amp / 128.0, amp / 128.0);
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                let levels = if ty == GgmlType::Q4_K { 15.0 } else { 31.0 };
                rng.f16(&mut out, 0.5 * amp / (levels * 63.0), amp / (levels * 63.0));
                rng.f16(&mut out, 0.25 * amp / 63.0, 0.5 * amp / 63.0);
                rng.bytes(&mut out, ty.block_bytes() - 4);
            }
            GgmlType::Q6_K => {
                rng.bytes(&mut out, 208);
                rng.f16(&mut out, 0.5 * amp / (32.0 * 128.0), amp / (32.0 * 128.0));
            }
            _ => {
                let x: Vec<f32> = (0..ty.block_len() * blocks).map(|_| amp * (2.0 * rng.unit() - 1.0)).collect();
                return super::quantize(ty, &x);
            }
        }
    }
    debug_assert_eq!(out.len(), size);
    Ok(out)
}
