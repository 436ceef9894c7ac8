//! GPU layout of the Q5 types and the K-quants (the layout is documented on [`super::GpuLayout`]).
//!
//! Every one of them becomes the 4-bit types' nibble unit (16 bytes = 32 elements, byte j =
//! element j in its low nibble and element j + 16 in its high nibble), so the kernels keep one
//! decoder: bits above the fourth go to "high-bit words" in the scales array, pre-arranged so the
//! kernel spreads them into place with one constant multiply per vec4 (see `high_bits_5` and
//! `high_bits_6`), and the per-sub-block scales go there too, as compact as a one- or two-word
//! read per unit allows.

use crate::quant::GgmlType;

/// Elements per GPU unit (a vec4<u32> of nibbles).
const UNIT: usize = 32;

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u16_at(b: &[u8], i: usize) -> u32 {
    u16::from_le_bytes([b[i], b[i + 1]]) as u32
}

/// The 4 words of a unit's nibbles: byte j = q[j] & 15 | (q[j + 16] & 15) << 4.
fn nibble_words(q: &[u8]) -> [u32; 4] {
    std::array::from_fn(|w| (0..4).map(|j| ((q[4 * w + j] & 15) as u32 | ((q[4 * w + j + 16] & 15) as u32) << 4) << (8 * j)).sum())
}

/// Bit 4 of each quant of a unit, for the kernel's piece p (elements 4p..4p+3 in slot a,
/// 4p+16..4p+19 in slot b) in byte p: bit 8p + j is element 4p + j's, bit 8p + 4 + j element
/// 4p + 16 + j's. Multiplying byte p by 2^(4+7j) (2^(7j)) lands slot a's (b's) bit j at 8j + 4.
fn high_bits_5(q: &[u8]) -> u32 {
    let mut h = 0;
    for p in 0..4 {
        for j in 0..4 {
            h |= ((q[4 * p + j] >> 4) as u32 & 1) << (8 * p + j);
            h |= ((q[4 * p + 16 + j] >> 4) as u32 & 1) << (8 * p + 4 + j);
        }
    }
    h
}

/// Bits 4-5 of each quant of a unit: piece p's 16 bits in half p % 2 of word p / 2, slot a's
/// lane j at bits 4j..4j+1 and slot b's at 4j+2..4j+3 of that half, so that a multiply by
/// 2^(4j+4) (2^(4j+2)) lands them at 8j + 4 for every lane j (all shifts non-negative).
fn high_bits_6(q: &[u8]) -> [u32; 2] {
    let mut h = [0u32; 2];
    for p in 0..4 {
        for j in 0..4 {
            let bits = ((q[4 * p + j] >> 4) as u32 & 3) << (4 * j) | ((q[4 * p + 16 + j] >> 4) as u32 & 3) << (4 * j + 2);
            h[p / 2] |= bits << (16 * (p % 2));
        }
    }
    h
}

/// A Q4_K / Q5_K block's 8 six-bit (scale, min) pairs from its 12 packed bytes (ggml's
/// get_scale_min_k4): pairs 0..4 in the low six bits of bytes j and j + 4; pairs 4..8 take
/// their low four bits from the nibbles of byte j + 4 and their top two bits from the spare top
/// bits of bytes j - 4 (scale) and j (min).
fn k4_scale_mins(s: &[u8]) -> [(u8, u8); 8] {
    std::array::from_fn(|j| if j < 4 { (s[j] & 63, s[j + 4] & 63) } else { ((s[j + 4] & 15) | (s[j - 4] >> 6) << 4, (s[j + 4] >> 4) | (s[j] >> 6) << 4) })
}

/// A Q3_K block's 16 six-bit scales (still biased by 32) from its 12 packed bytes: low four bits
/// from the nibbles of bytes 0..8, top two from bytes 8..12.
fn q3k_scales(s: &[u8]) -> [u8; 16] {
    std::array::from_fn(|i| {
        let low = if i < 8 { s[i] & 15 } else { s[i - 8] >> 4 };
        low | ((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4
    })
}

/// The block's quants as unsigned integers in element order (what the kernel decodes as "raw":
/// the element is d * raw + off, with off absorbing every bias).
fn raw_quants(ty: GgmlType, b: &[u8], q: &mut [u8]) {
    match ty {
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let at = if ty == GgmlType::Q5_0 { 2 } else { 4 };
            let qh = u32_at(b, at);
            for (j, v) in q.iter_mut().enumerate() {
                let nibble = if j < 16 { b[at + 4 + j] & 15 } else { b[at + 4 + j - 16] >> 4 };
                *v = nibble | (((qh >> j) & 1) as u8) << 4;
            }
        }
        GgmlType::Q2_K | GgmlType::Q3_K => {
            // Element 128n + 32j + 16h + l: bits 2j of qs[32n + 16h + l] (Q3_K: plus 4 when bit
            // 4n + j of hmask[16h + l] is set; its value is raw - 4).
            let qs = if ty == GgmlType::Q2_K { &b[16..80] } else { &b[32..96] };
            for (e, v) in q.iter_mut().enumerate() {
                let (n, j, h, l) = (e / 128, (e / 32) % 4, (e / 16) % 2, e % 16);
                *v = (qs[32 * n + 16 * h + l] >> (2 * j)) & 3;
                if ty == GgmlType::Q3_K && (b[16 * h + l] >> (4 * n + j)) & 1 == 1 {
                    *v += 4;
                }
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            // Sub-block s: the low (even s) or high (odd s) nibbles of qs[32 (s / 2)..][..32];
            // Q5_K's bit 4 is bit s of qh[l].
            let qs = if ty == GgmlType::Q4_K { &b[16..144] } else { &b[48..176] };
            for (e, v) in q.iter_mut().enumerate() {
                let (s, l) = (e / 32, e % 32);
                *v = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
                if ty == GgmlType::Q5_K {
                    *v |= ((b[16 + l] >> s) & 1) << 4;
                }
            }
        }
        GgmlType::Q6_K => {
            // Half n, element 32k + l: low nibble of ql[64n + l + 32 (k & 1)] (high nibble for
            // k >= 2), top two bits from bits 2k of qh[32n + l]; value raw - 32.
            let (ql, qh) = (&b[0..128], &b[128..192]);
            for (e, v) in q.iter_mut().enumerate() {
                let (n, k, l) = (e / 128, (e / 32) % 4, e % 32);
                let low = (ql[64 * n + l + 32 * (k & 1)] >> (4 * (k / 2))) & 15;
                *v = low | ((qh[32 * n + l] >> (2 * k)) & 3) << 4;
            }
        }
        _ => unreachable!("raw_quants: {} is not a Q5 or K-quant type", ty.name()),
    }
}

/// The scales array, built as up to three regions (concatenated in this order) so that the
/// kernels index each with the unit's own number g (or g / 2, g / 8) plus a constant: per-block
/// or per-pair words, per-unit scale words, high-bit words.
#[derive(Default)]
struct ScaleRegions {
    first: Vec<u32>,
    units: Vec<u32>,
    high: Vec<u32>,
}

impl ScaleRegions {
    /// Adds block `i` (its bytes `b`, its raw quants `q`).
    fn push_block(&mut self, ty: GgmlType, i: usize, b: &[u8], q: &[u8]) {
        let units = q.chunks_exact(UNIT);
        match ty {
            GgmlType::Q5_0 => {
                // d of block g in half g % 2 of word g / 2 (as Q4_0).
                if i.is_multiple_of(2) {
                    self.first.push(u16_at(b, 0));
                } else {
                    *self.first.last_mut().expect("the pair's word") |= u16_at(b, 0) << 16;
                }
                self.high.push(high_bits_5(q));
            }
            GgmlType::Q5_1 => {
                self.first.push(u32_at(b, 0)); // d low, m high (as Q4_1)
                self.high.push(high_bits_5(q));
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                // [d | dmin]; sub-blocks 2k and 2k + 1's six-bit (scale, min) as the bytes of
                // the block's word k.
                self.first.push(u32_at(b, 0));
                let sm = k4_scale_mins(&b[4..16]);
                self.units.extend(sm.chunks_exact(2).map(|p| p[0].0 as u32 | (p[0].1 as u32) << 8 | (p[1].0 as u32) << 16 | (p[1].1 as u32) << 24));
                if ty == GgmlType::Q5_K {
                    self.high.extend(units.map(high_bits_5));
                }
            }
            GgmlType::Q6_K => {
                // Per unit: [d | i8 scale of its elements 0..15 | of 16..31]; two high-bit words.
                let (scales, d) = (&b[192..208], u16_at(b, 208));
                for (u, q) in units.enumerate() {
                    self.units.push(d | (scales[2 * u] as u32) << 16 | (scales[2 * u + 1] as u32) << 24);
                    self.high.extend(high_bits_6(q));
                }
            }
            GgmlType::Q3_K => {
                // Per unit: [d | (scale - 32) of its elements 0..15 | of 16..31] (i8s).
                let (scales, d) = (q3k_scales(&b[96..108]), u16_at(b, 108));
                let signed = |s: u8| (s as i8 - 32) as u8 as u32;
                self.units.extend((0..8).map(|u| d | signed(scales[2 * u]) << 16 | signed(scales[2 * u + 1]) << 24));
            }
            GgmlType::Q2_K => {
                // [d | dmin]; the file's 16 scale bytes (scale in the low nibble, min in the high;
                // bytes 2u and 2u + 1 for unit u's halves).
                self.first.push(u32_at(b, 80));
                self.units.extend((0..4).map(|k| u32_at(b, 4 * k)));
            }
            _ => unreachable!("push_block: {} is not a Q5 or K-quant type", ty.name()),
        }
    }

    fn into_words(self) -> Vec<u32> {
        [self.first, self.units, self.high].concat()
    }
}

/// (data, scales) of whole blocks of `ty` (a Q5 or K-quant type) in row-major order: units are
/// numbered over the whole matrix, and no block straddles two rows.
pub(super) fn repack_blocks(ty: GgmlType, data: &[u8]) -> (Vec<u32>, Vec<u32>) {
    let (bb, bl) = (ty.block_bytes(), ty.block_len());
    let mut out = Vec::with_capacity(data.len() / bb * bl / 8);
    let mut regions = ScaleRegions::default();
    let mut q = vec![0u8; bl];
    for (i, b) in data.chunks_exact(bb).enumerate() {
        raw_quants(ty, b, &mut q);
        out.extend(q.chunks_exact(UNIT).flat_map(nibble_words));
        regions.push_block(ty, i, b, &q);
    }
    (out, regions.into_words())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::random_blocks;

    /// Unit g's raw quants read back from the layout as the kernels do (weights.wgsl): nibbles,
    /// then bits 4-5 from the high-bit words (at word `high_at`, one or two per unit).
    fn unpack_unit(data: &[u32], high: &[u32], g: usize, high_words: usize) -> [u8; 32] {
        std::array::from_fn(|e| {
            let (slot_b, p, j) = (e / 16, (e % 16) / 4, e % 4);
            let byte = (data[4 * g + p] >> (8 * j)) as u8;
            let nibble = if slot_b == 1 { byte >> 4 } else { byte & 15 };
            let top = match high_words {
                1 => (high[g] >> (8 * p + 4 * slot_b + j)) & 1,
                2 => (high[2 * g + p / 2] >> (16 * (p % 2) + 4 * j + 2 * slot_b)) & 3,
                _ => 0,
            };
            nibble | (top as u8) << 4
        })
    }

    #[test]
    fn units_hold_every_raw_quant_and_the_scales_take_the_documented_words() {
        for ty in GgmlType::K_AND_Q5 {
            let blocks = 3; // an odd count: Q5_0's last d word is half used
            let n = blocks * ty.block_len();
            let bytes = random_blocks(ty, n, 1.0, 7).unwrap();
            let (data, scales) = repack_blocks(ty, &bytes);
            let units = n / UNIT;
            assert_eq!(data.len(), 4 * units, "{}", ty.name());
            // (words before the high-bit region, high-bit words per unit), as GpuLayout documents.
            let (head, high_words) = match ty {
                GgmlType::Q5_0 => (units.div_ceil(2), 1),
                GgmlType::Q5_1 => (units, 1),
                GgmlType::Q4_K | GgmlType::Q2_K => (units / 8 + units / 2, 0),
                GgmlType::Q5_K => (units / 8 + units / 2, 1),
                GgmlType::Q6_K => (units, 2),
                _ => (units, 0),
            };
            assert_eq!(scales.len(), head + high_words * units, "{}", ty.name());
            let mut q = vec![0u8; ty.block_len()];
            for (b, block) in bytes.chunks_exact(ty.block_bytes()).enumerate() {
                raw_quants(ty, block, &mut q);
                for (k, want) in q.chunks_exact(UNIT).enumerate() {
                    let g = b * ty.block_len() / UNIT + k;
                    assert_eq!(unpack_unit(&data, &scales[head..], g, high_words), want, "{} unit {g}", ty.name());
                }
            }
        }
    }

    #[test]
    fn raw_quants_stay_in_range() {
        // 5 bits for the Q5 types and Q5_K, 6 for Q6_K, 3 for Q3_K, 2 for Q2_K, 4 for Q4_K.
        for (ty, bits) in
            [(GgmlType::Q5_0, 5), (GgmlType::Q5_1, 5), (GgmlType::Q2_K, 2), (GgmlType::Q3_K, 3), (GgmlType::Q4_K, 4), (GgmlType::Q5_K, 5), (GgmlType::Q6_K, 6)]
        {
            let bytes = random_blocks(ty, ty.block_len(), 1.0, 3).unwrap();
            let mut q = vec![0u8; ty.block_len()];
            raw_quants(ty, &bytes, &mut q);
            assert!(q.iter().all(|&v| v < 1 << bits), "{}", ty.name());
            assert!(q.iter().any(|&v| v >= 1 << (bits - 1)), "{}: the top bit is never set", ty.name());
        }
    }
}
