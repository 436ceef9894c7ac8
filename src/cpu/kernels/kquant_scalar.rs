//! The canonical arithmetic of the Q5 types (Q5_0, Q5_1) and the K-quants (Q2_K .. Q6_K), in
//! plain scalar code; kquant_avx2.rs and kquant_wasm.rs return exactly these bits. Block layouts:
//! src/quant/kquants.rs.
//!
//! The activations come in blocks of 32 (acts.rs); a K-quant super-block of 256 is 8 of them, so
//! every activation block b meets one 32-element piece of one weight block. Per piece:
//! - unpack the 32 quants to integers w (Q5_0: q - 16; Q5_1, Q2_K, Q4_K, Q5_K: q; Q3_K: the 3-bit
//!   q minus 4 where its hmask bit is clear; Q6_K: q - 32) and take the integer scale s_h of each
//!   16-element half h (Q2_K: the low nibble; Q3_K: the 6-bit scale - 32; Q4_K, Q5_K: the 6-bit
//!   scale of the 32-element sub-block, for both halves; Q6_K: the i8 scale; Q5: 1);
//! - I = s_0 * dot(w[0..16], x[0..16]) + s_1 * dot(w[16..32], x[16..32]), exactly, in i32;
//! - acc = acc + (D * d_x[b]) * (I as f32), D the block's f16 scale;
//! - the min terms: Q5_1 as Q4_1, acc = acc + m * sx[b]; Q2_K, Q4_K, Q5_K with the integer mins
//!   m_h of the halves (Q4_K, Q5_K: the sub-block's 6-bit min for both), M = m_0 * sum_0 +
//!   m_1 * sum_1 (the halves' activation sums), acc = acc - (Dmin * d_x[b]) * (M as f32).
//!
//! I fits in i32 for every type, with |x| <= 16383 (w, s at their extremes, 32 elements):
//! Q5_0 16 * 16383 * 32 = 2^23; Q5_1 31 * 16383 * 32 < 2^24; Q2_K 15 * 3 * 16383 * 32 < 2^25;
//! Q3_K 32 * 4 * 16383 * 32 < 2^26; Q4_K 63 * 15 * 16383 * 32 < 2^29; Q5_K 63 * 31 * 16383 * 32
//! < 2^30; Q6_K 128 * 32 * 16383 * 32 = 16383 * 2^17 = 2^31 - 2^17. M <= 63 * 16383 * 32 < 2^25.
//! The SIMD kernels may form I as s_h * (dot(q) - offset * sum_h) (same integer; every partial
//! value is within these bounds too).

use super::{Acts, GgmlType};

/// One 32-element piece of a weight row, as integers (see the module comment).
pub(crate) struct Piece {
    pub w: [i32; 32],
    /// Integer scale of each 16-element half.
    pub s: [i32; 2],
    /// Integer min of each half (Q2_K, Q4_K, Q5_K; 0 otherwise).
    pub m: [i32; 2],
    /// The block's f16 scale D.
    pub d: f32,
    /// Q5_1: the f16 m; Q2_K, Q4_K, Q5_K: the f16 Dmin; 0 otherwise.
    pub min: f32,
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    super::math::f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

#[inline]
pub(crate) fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

const LOW4: u32 = 0x0f0f_0f0f;
const LOW6: u32 = 0x3f3f_3f3f;
const TOP2: u32 = 0x0303_0303;

/// Q4_K / Q5_K: the 12 scale bytes (as 3 little-endian words) to 4 words whose bytes are
/// [scales 0..4], [scales 4..8], [mins 0..4], [mins 4..8]. Sub-blocks 0..4 keep their scale and
/// min in the low 6 bits of bytes j and j + 4; 4..8 take the low 4 bits from the nibbles of byte
/// j + 4 and the top 2 bits from the spare top bits of bytes j - 4 (scale) and j (min). Written
/// on whole words so that the SIMD kernels run the same operations on four rows at once.
#[inline]
pub(crate) fn k4_scale_words(w: [u32; 3]) -> [u32; 4] {
    [w[0] & LOW6, (w[2] & LOW4) | (((w[0] >> 6) & TOP2) << 4), w[1] & LOW6, ((w[2] >> 4) & LOW4) | (((w[1] >> 6) & TOP2) << 4)]
}

/// Q3_K: the 12 scale bytes (3 words) to 4 words holding the 16 six-bit scales (biased by 32) in
/// order: low 4 bits from the nibbles of bytes 0..8 (scales 0..8 low nibbles, 8..16 high
/// nibbles), top 2 bits from bits 2 (i / 4) of byte 8 + i % 4.
#[inline]
pub(crate) fn k3_scale_words(w: [u32; 3]) -> [u32; 4] {
    let top = |shift: u32| ((w[2] >> shift) & TOP2) << 4;
    [(w[0] & LOW4) | top(0), (w[1] & LOW4) | top(2), ((w[0] >> 4) & LOW4) | top(4), ((w[1] >> 4) & LOW4) | top(6)]
}

#[inline]
fn byte_of(words: &[u32; 4], i: usize) -> u8 {
    (words[i / 4] >> (8 * (i % 4))) as u8
}

/// Piece b (0..8 for K-quants, 0 for Q5) of the weight block `blk` of type `ty`.
pub(crate) fn piece(ty: GgmlType, blk: &[u8], b: usize) -> Piece {
    let mut p = Piece { w: [0; 32], s: [1, 1], m: [0, 0], d: 0.0, min: 0.0 };
    // Super-block pieces come in groups of 4 sharing bytes: half n = b / 4, index k = b % 4.
    let (n, k) = (b / 4, b % 4);
    match ty {
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let q5_1 = ty == GgmlType::Q5_1;
            let off = if q5_1 { 4 } else { 2 };
            let qh = u32_at(blk, off);
            let qs = &blk[off + 4..off + 20];
            for (e, w) in p.w.iter_mut().enumerate() {
                let nib = if e < 16 { qs[e] & 15 } else { qs[e - 16] >> 4 } as i32;
                let q = nib | (((qh >> e) & 1) << 4) as i32;
                *w = if q5_1 { q } else { q - 16 };
            }
            p.d = f16_at(blk, 0);
            p.min = if q5_1 { f16_at(blk, 2) } else { 0.0 };
        }
        GgmlType::Q2_K => {
            for (e, w) in p.w.iter_mut().enumerate() {
                *w = ((blk[16 + 32 * n + e] >> (2 * k)) & 3) as i32;
            }
            for h in 0..2 {
                let sc = blk[2 * b + h];
                (p.s[h], p.m[h]) = ((sc & 15) as i32, (sc >> 4) as i32);
            }
            (p.d, p.min) = (f16_at(blk, 80), f16_at(blk, 82));
        }
        GgmlType::Q3_K => {
            for (e, w) in p.w.iter_mut().enumerate() {
                let low = ((blk[32 + 32 * n + e] >> (2 * k)) & 3) as i32;
                let high = ((blk[e] >> b) & 1) as i32;
                *w = low + 4 * high - 4;
            }
            let words = k3_scale_words([u32_at(blk, 96), u32_at(blk, 100), u32_at(blk, 104)]);
            p.s = [byte_of(&words, 2 * b) as i32 - 32, byte_of(&words, 2 * b + 1) as i32 - 32];
            p.d = f16_at(blk, 108);
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let q5 = ty == GgmlType::Q5_K;
            let qs = &blk[if q5 { 48 } else { 16 } + 32 * (b / 2)..][..32];
            for (e, w) in p.w.iter_mut().enumerate() {
                let nib = (qs[e] >> (4 * (b % 2))) & 15;
                let high = if q5 { (blk[16 + e] >> b) & 1 } else { 0 };
                *w = (nib | (high << 4)) as i32;
            }
            let words = k4_scale_words([u32_at(blk, 4), u32_at(blk, 8), u32_at(blk, 12)]);
            let (sc, m) = (byte_of(&words, b) as i32, byte_of(&words, 8 + b) as i32);
            (p.s, p.m) = ([sc, sc], [m, m]);
            (p.d, p.min) = (f16_at(blk, 0), f16_at(blk, 2));
        }
        GgmlType::Q6_K => {
            for (e, w) in p.w.iter_mut().enumerate() {
                let low = (blk[64 * n + 32 * (k % 2) + e] >> (4 * (k / 2))) & 15;
                let high = (blk[128 + 32 * n + e] >> (2 * k)) & 3;
                *w = (low | (high << 4)) as i32 - 32;
            }
            p.s = [blk[192 + 2 * b] as i8 as i32, blk[193 + 2 * b] as i8 as i32];
            p.d = f16_at(blk, 208);
        }
        _ => unreachable!("kquant_scalar::piece on {}", ty.name()),
    }
    p
}

/// The dot product of one weight row (of a Q5 or K-quant type) with token t of `acts`.
pub(crate) fn q_dot(ty: GgmlType, row: &[u8], acts: &Acts, t: usize) -> f32 {
    let nb = acts.cols / 32;
    let q = &acts.q[t * acts.cols..][..acts.cols];
    let k = t * nb;
    let per_block = ty.block_len() / 32;
    let mut acc = 0f32;
    for b in 0..nb {
        let blk = &row[b / per_block * ty.block_bytes()..][..ty.block_bytes()];
        let p = piece(ty, blk, b % per_block);
        let x = &q[b * 32..][..32];
        let half = |h: usize| -> i32 { (16 * h..16 * h + 16).map(|e| p.w[e] * x[e] as i32).sum() };
        let int = p.s[0] * half(0) + p.s[1] * half(1);
        let dx = acts.d[k + b];
        acc += (p.d * dx) * int as f32;
        match ty {
            GgmlType::Q5_1 => acc += p.min * acts.sx[k + b],
            GgmlType::Q2_K | GgmlType::Q4_K | GgmlType::Q5_K => {
                let sum0 = acts.sum16[k + b];
                let mins = p.m[0] * sum0 + p.m[1] * (acts.sum[k + b] - sum0);
                acc -= (p.min * dx) * mins as f32;
            }
            _ => {}
        }
    }
    acc
}
