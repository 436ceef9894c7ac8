//! Dequantisation of the Q5 types and the K-quants, bit-exact with ggml's reference
//! (`dequantize_row_*`) and gguf-py's numpy ports (checked in tests/gguf_interop.rs): every
//! element is `scale * q` or `scale * q - min` in f32 with the products formed in the same order
//! (`d * sc` first, then times the quant), never fused.
//!
//! Layouts (ggml's structs, all little-endian):
//! - Q5_0 (22 B / 32): d f16 | qh u32 | qs[16]. Element j (< 16) = low nibble of qs[j] with bit j
//!   of qh as bit 4; element j + 16 = high nibble with bit j + 16. Value (q - 16) * d.
//! - Q5_1 (24 B / 32): d f16 | m f16 | qh u32 | qs[16]; value q * d + m.
//! - Q2_K (84 B / 256): scales[16] (low nibble scale, high nibble min, per 16 elements) |
//!   qs[64] | d f16 | dmin f16. Element 128n + 32j + 16h + l = bits 2j.. of qs[32n + 16h + l].
//! - Q3_K (110 B / 256): hmask[32] | qs[64] | scales[12] (16 six-bit scales, biased by 32) | d.
//!   As Q2_K for the low two bits; the high bit is bit (4n + j) of hmask[16h + l], and a clear
//!   bit subtracts 4.
//! - Q4_K (144 B / 256): d | dmin | scales[12] (8 six-bit scales and 8 six-bit mins) | qs[128].
//!   Sub-block 2i is the low nibbles of qs[32i..32i + 32], sub-block 2i + 1 the high nibbles.
//! - Q5_K (176 B / 256): as Q4_K with qh[32] before qs: bit 2i (2i + 1) of qh[l] is bit 4 of
//!   element l of sub-block 2i (2i + 1).
//! - Q6_K (210 B / 256): ql[128] | qh[64] | scales[16] (i8, per 16 elements) | d. In each half
//!   n (128 elements): element 32k + l has its low nibble from ql[64n + l + 32 (k & 1)] (low
//!   nibble for k < 2, high for k >= 2) and two high bits from bits 2k of qh[32n + l]; value
//!   d * sc * (q - 32).

use super::{f16_at, GgmlType};

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The 6-bit scale and min of sub-block j (0..8) of a Q4_K / Q5_K block's 12 scale bytes:
/// sub-blocks 0..4 in the low six bits of bytes j and j + 4; 4..8 take their low four bits
/// from byte j + 4 and their top two bits from the spare top bits of bytes j - 4 and j.
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// The 16 six-bit scales of a Q3_K block (0..64, still biased by 32): the low four bits from
/// the nibbles of bytes 0..8 (scales 0..8 low nibbles, 8..16 high nibbles), the top two bits
/// from bytes 8..12 (scale i: bits 2 (i / 4) of byte 8 + i % 4).
pub(crate) fn q3k_scales(s: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = if i < 8 { s[i] & 0x0F } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = low | (high << 4);
    }
    out
}

/// Appends the dequantised elements of `data` (whole blocks of `ty`, a Q5 or K-quant type).
pub(super) fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut Vec<f32>) {
    for b in data.chunks_exact(ty.block_bytes()) {
        match ty {
            GgmlType::Q5_0 | GgmlType::Q5_1 => q5(ty, b, out),
            GgmlType::Q2_K => q2_k(b, out),
            GgmlType::Q3_K => q3_k(b, out),
            GgmlType::Q4_K | GgmlType::Q5_K => q45_k(ty, b, out),
            GgmlType::Q6_K => q6_k(b, out),
            _ => unreachable!("dequantize_into: {} is not a Q5 or K-quant type", ty.name()),
        }
    }
}

fn q5(ty: GgmlType, b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let (m, hoff) = if ty == GgmlType::Q5_1 { (Some(f16_at(b, 2)), 4) } else { (None, 2) };
    let qh = u32_at(b, hoff);
    let qs = &b[hoff + 4..hoff + 20];
    let q = |j: usize| -> u32 {
        let nib = if j < 16 { qs[j] & 0x0F } else { qs[j - 16] >> 4 } as u32;
        nib | (((qh >> j) & 1) << 4)
    };
    for j in 0..32 {
        out.push(match m {
            None => (q(j) as i32 - 16) as f32 * d,
            Some(m) => q(j) as f32 * d + m,
        });
    }
}

fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for n in 0..2 {
        for j in 0..4 {
            for h in 0..2 {
                let sc = scales[8 * n + 2 * j + h];
                let dl = d * (sc & 0x0F) as f32;
                let ml = dmin * (sc >> 4) as f32;
                for l in 0..16 {
                    let q = (qs[32 * n + 16 * h + l] >> (2 * j)) & 3;
                    out.push(dl * q as f32 - ml);
                }
            }
        }
    }
}

fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs) = (&b[0..32], &b[32..96]);
    let scales = q3k_scales(&b[96..108]);
    let d = f16_at(b, 108);
    for n in 0..2 {
        for j in 0..4 {
            for h in 0..2 {
                let dl = d * (scales[8 * n + 2 * j + h] as i32 - 32) as f32;
                for l in 0..16 {
                    let low = ((qs[32 * n + 16 * h + l] >> (2 * j)) & 3) as i32;
                    let high_set = hmask[16 * h + l] & (1 << (4 * n + j)) != 0;
                    out.push(dl * (low - if high_set { 0 } else { 4 }) as f32);
                }
            }
        }
    }
}

fn q45_k(ty: GgmlType, b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let (qh, qs) = if ty == GgmlType::Q5_K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
    for sub in 0..8 {
        let (sc, m) = scale_min_k4(sub, scales);
        let (d1, m1) = (d * sc as f32, dmin * m as f32);
        let bytes = &qs[32 * (sub / 2)..][..32];
        for l in 0..32 {
            let mut q = if sub % 2 == 0 { bytes[l] & 0x0F } else { bytes[l] >> 4 };
            if let Some(qh) = qh {
                q |= ((qh[l] >> sub) & 1) << 4;
            }
            out.push(d1 * q as f32 - m1);
        }
    }
}

fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for n in 0..2 {
        for k in 0..4 {
            for l in 0..32 {
                let byte = ql[64 * n + l + 32 * (k & 1)];
                let low = if k < 2 { byte & 0x0F } else { byte >> 4 };
                let high = (qh[32 * n + l] >> (2 * k)) & 3;
                let q = (low | (high << 4)) as i32 - 32;
                let sc = scales[8 * n + 2 * k + l / 16] as i8;
                out.push(d * sc as f32 * q as f32);
            }
        }
    }
}
