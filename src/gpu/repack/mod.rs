//! One-time repack of GGUF tensor bytes into the 4-byte-word layout the WGSL kernels read.

mod kquant;

use crate::quant::GgmlType;
use crate::{Error, Result};

/// The GPU layout of a weight matrix `[rows, cols]` (cols contiguous), made once at upload.
/// Every buffer is an array of 4-byte words so WGSL can read it as `array<u32>`/`array<vec4<u32>>`.
///
/// `data` is read by the kernels in *units* of one `vec4<u32>` (16 bytes), so every row is a whole
/// number of units (`row_words` is a multiple of 4):
/// - F32: f32 bits, 4 elements per unit. Rows are padded with zeros to a multiple of 4 elements.
/// - F16 / BF16: two halves per u32 (element 2i in the low half), 8 elements per unit. Rows are
///   padded with zeros to a multiple of 8 elements.
/// - Q8_0: the 32 i8 quants of a block as 8 u32 (byte order as in the file), a unit is half a block.
/// - Every other type: the *nibble unit*, 32 elements = 16 bytes: byte j holds element j in its
///   low nibble and element j + 16 in its high nibble (ggml's Q4_0 / Q4_1 order, which those two
///   keep as they are). The elements' low four bits, that is, of the *raw* quant: the unsigned
///   integer with element = d * raw + off, every bias folded into the unit's off (Q5_0: raw =
///   q + 16, off = -16 d; Q6_K: off = -32 d sc; Q3_K: raw = the 2 low bits + 4 * the hmask bit,
///   off = -4 d sc). Q4_K / Q5_K / Q6_K sub-blocks are reordered into units (ggml interleaves
///   them in 64-element groups). Q2_K and Q3_K keep their 2- and 3-bit quants in nibbles: one
///   decoder for all types, at 16 data bytes per 32 elements where the file has 8 (Q2_K) or 12
///   (Q3_K).
///
/// `scales` (blocks numbered row-major over the whole matrix, `g = row * (cols / 32) + unit` for
/// units; f16 values as the file's bits, which WGSL decodes with `unpack2x16float`, exact and
/// with no f16 support needed):
/// - Q8_0 / Q4_0: `d` of block g in half `g % 2` (0 = low) of word `g / 2`.
/// - Q4_1: word g holds `d` in the low half and `m` in the high half.
/// - float types: a single 0 word (kernels bind it anyway, so one bind group layout fits all).
///
/// Bits 4 and 5 of the raw quants live in *high-bit words*, arranged so the kernel moves them to
/// bit 8j + 4 of lane j with a constant multiply (kquant.rs: `high_bits_5`, `high_bits_6`):
/// 5-bit types one word per unit (piece p's 8 bits in byte p), Q6_K two. The other types' scales
/// array is up to three regions, each indexed by the unit number g (or g / 2, g / 8) plus a
/// constant offset (N = rows * cols / 32 units), so that a kernel's index arithmetic is what the
/// unit's data load already computed:
/// - Q5_0: d as Q4_0 (ceil(N / 2) words), then the high bits (word g).
/// - Q5_1: `[d | m << 16]` as Q4_1 (N words), then the high bits.
/// - Q4_K: `[d | dmin << 16]` per block (word g / 8; N / 8 words), then the six-bit scale and
///   min of units 2k, 2k + 1 as bytes `[sc | m << 8 | sc' << 16 | m' << 24]` (word g / 2; N / 2
///   words). The kernel forms d * sc and dmin * m in f32 as ggml does (both exact).
/// - Q5_K: Q4_K's two regions, then the high bits (N words).
/// - Q2_K: `[d | dmin << 16]` per block, then the file's 16 scale bytes per block (scale in the low
///   nibble, min in the high; unit g's two halves in half g % 2 of word g / 2).
/// - Q6_K: `[d | sc_a << 16 | sc_b << 24]` per unit (i8 scales of its elements 0..15, 16..31),
///   then two high-bit words per unit (words 2g, 2g + 1).
/// - Q3_K: `[d | (sc_a - 32) << 16 | (sc_b - 32) << 24]` per unit (i8).
///
/// Bytes per weight on the GPU (file): Q5_0 0.6875 (0.6875), Q5_1 0.75 (0.75), Q4_K 0.578 (0.5625),
/// Q5_K 0.703 (0.6875), Q6_K 0.875 (0.820), Q3_K 0.625 (0.430), Q2_K 0.578 (0.328).
pub struct GpuLayout {
    pub data: Vec<u32>,
    pub scales: Vec<u32>,
    /// u32 words per row in `data` (a multiple of 4).
    pub row_words: usize,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

pub fn repack_for_gpu(ty: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Result<GpuLayout> {
    let bad = |msg: String| Error::UnsupportedModel(format!("{} [{rows}, {cols}]: {msg}", ty.name()));
    if rows == 0 || cols == 0 {
        return Err(bad("empty matrix".into()));
    }
    let n = (rows as u64).checked_mul(cols as u64).ok_or_else(|| bad("size overflows".into()))?;
    let want = ty.bytes_for(n).filter(|_| cols.is_multiple_of(ty.block_len()));
    match want {
        Some(w) if w == data.len() as u64 => {}
        Some(w) => return Err(bad(format!("{} bytes of data, expected {w}", data.len()))),
        None => return Err(bad(format!("cols must be a multiple of {}", ty.block_len()))),
    }

    let (data, scales, row_words) = match ty {
        GgmlType::F32 => {
            let row_words = cols.next_multiple_of(4);
            let mut out = vec![0u32; rows * row_words];
            for r in 0..rows {
                for c in 0..cols {
                    out[r * row_words + c] = u32_at(data, 4 * (r * cols + c));
                }
            }
            (out, vec![0], row_words)
        }
        GgmlType::F16 | GgmlType::BF16 => {
            // Both are 16-bit patterns; only the kernels' decoding differs.
            let row_words = cols.next_multiple_of(8) / 2;
            let mut out = vec![0u32; rows * row_words];
            for r in 0..rows {
                for c in 0..cols {
                    let h = u16_at(data, 2 * (r * cols + c)) as u32;
                    out[r * row_words + c / 2] |= h << (16 * (c % 2));
                }
            }
            (out, vec![0], row_words)
        }
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let blocks = rows * cols / 32;
            let bb = ty.block_bytes();
            // Offset of the quants in a block, and their u32 count.
            let (qoff, qwords) = match ty {
                GgmlType::Q8_0 => (2, 8),
                GgmlType::Q4_0 => (2, 4),
                _ => (4, 4),
            };
            let mut out = Vec::with_capacity(blocks * qwords);
            let mut scales = if ty == GgmlType::Q4_1 { vec![0u32; blocks] } else { vec![0u32; blocks.div_ceil(2)] };
            for g in 0..blocks {
                let b = &data[g * bb..(g + 1) * bb];
                for k in 0..qwords {
                    out.push(u32_at(b, qoff + 4 * k));
                }
                if ty == GgmlType::Q4_1 {
                    scales[g] = u32_at(b, 0); // d low, m high: the file's order already
                } else {
                    scales[g / 2] |= (u16_at(b, 0) as u32) << (16 * (g % 2));
                }
            }
            (out, scales, cols / 32 * qwords)
        }
        _ => {
            let (out, scales) = kquant::repack_blocks(ty, data);
            (out, scales, cols / 8)
        }
    };
    Ok(GpuLayout { data, scales, row_words })
}

/// A bound on the larger of the two GPU buffers of a tensor of `file_bytes` bytes of type `ty`
/// (checked against the device's limits before anything is uploaded).
pub fn largest_buffer_bytes(ty: GgmlType, file_bytes: u64) -> u64 {
    if GgmlType::K_AND_Q5.contains(&ty) {
        // Nibble units: 16 bytes per 32 elements, more than the scales (at most 12 per 32).
        let blocks = file_bytes / ty.block_bytes() as u64;
        return blocks * (ty.block_len() as u64 / 2);
    }
    // Float rows padded to whole units, scales widened to whole words: at most 4/3 of the file.
    file_bytes.saturating_mul(4) / 3 + 64
}

/// Bytes of one row of a [rows, cols] tensor of type `ty` in its GGUF layout.
fn row_bytes(ty: GgmlType, cols: usize) -> Result<usize> {
    ty.bytes_for(cols as u64)
        .filter(|_| cols.is_multiple_of(ty.block_len()))
        .map(|b| b as usize)
        .ok_or_else(|| Error::UnsupportedModel(format!("{} rows of {cols} columns are not whole blocks", ty.name())))
}

/// GGUF bytes of the matrices `parts` (same type and column count, each [rows_i, cols]) stacked
/// into one [sum rows_i, cols] matrix: Q, K and V become one product.
pub fn concat_rows(ty: GgmlType, cols: usize, parts: &[&[u8]]) -> Result<Vec<u8>> {
    let rb = row_bytes(ty, cols)?;
    if parts.iter().any(|p| !p.len().is_multiple_of(rb)) {
        return Err(Error::UnsupportedModel(format!("concat_rows: a part is not whole {} rows of {cols}", ty.name())));
    }
    Ok(parts.concat())
}

/// GGUF bytes of [2 rows, cols] with row 2i = a's row i and row 2i + 1 = b's row i (a, b:
/// [rows, cols] of one type): gate and up become one product whose adjacent outputs pair up.
pub fn interleave_rows(ty: GgmlType, cols: usize, a: &[u8], b: &[u8]) -> Result<Vec<u8>> {
    let rb = row_bytes(ty, cols)?;
    if a.len() != b.len() || !a.len().is_multiple_of(rb) {
        return Err(Error::UnsupportedModel(format!("interleave_rows: {} and {} bytes are not equal whole rows", a.len(), b.len())));
    }
    let mut out = Vec::with_capacity(2 * a.len());
    for (ra, rb) in a.chunks_exact(rb).zip(b.chunks_exact(rb)) {
        out.extend_from_slice(ra);
        out.extend_from_slice(rb);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_float_rows_to_whole_units() {
        let vals: Vec<f32> = (0..6).map(|i| i as f32).collect(); // [2, 3]
        let l = repack_for_gpu(GgmlType::F32, 2, 3, bytemuck::cast_slice(&vals)).unwrap();
        assert_eq!(l.row_words, 4);
        assert_eq!(l.data, [0.0f32, 1., 2., 0., 3., 4., 5., 0.].map(f32::to_bits));
        let h: Vec<u16> = (1..=3).collect(); // [1, 3] of raw halves
        let l = repack_for_gpu(GgmlType::F16, 1, 3, bytemuck::cast_slice(&h)).unwrap();
        assert_eq!(l.row_words, 4);
        assert_eq!(l.data, [1 | 2 << 16, 3, 0, 0]);
    }

    #[test]
    fn splits_blocks_into_quants_and_packed_scales() {
        // Three Q4_1 blocks: d = 0x1111 * g, m = 0x2222, nibble bytes = g.
        let mut bytes = Vec::new();
        for g in 1..=3u16 {
            bytes.extend((0x1111 * g).to_le_bytes());
            bytes.extend(0x2222u16.to_le_bytes());
            bytes.extend([g as u8; 16]);
        }
        let l = repack_for_gpu(GgmlType::Q4_1, 3, 32, &bytes).unwrap();
        assert_eq!((l.row_words, l.data.len()), (4, 12));
        assert_eq!(l.data[4], 0x0202_0202);
        assert_eq!(l.scales, [0x2222_1111, 0x2222_2222, 0x2222_3333]);
        // Q8_0: the scales of blocks 0 and 1 share a word.
        let mut bytes = Vec::new();
        for g in 1..=3u16 {
            bytes.extend(g.to_le_bytes());
            bytes.extend([g as u8; 32]);
        }
        let l = repack_for_gpu(GgmlType::Q8_0, 1, 96, &bytes).unwrap();
        assert_eq!((l.row_words, l.data.len()), (24, 24));
        assert_eq!(l.scales, [1 | 2 << 16, 3]);
    }

    #[test]
    fn stacks_and_interleaves_whole_rows() {
        let a: Vec<u8> = (0..8).collect(); // two F16 rows of 2
        let b: Vec<u8> = (10..18).collect();
        assert_eq!(interleave_rows(GgmlType::F16, 2, &a, &b).unwrap(), [0, 1, 2, 3, 10, 11, 12, 13, 4, 5, 6, 7, 14, 15, 16, 17]);
        assert_eq!(concat_rows(GgmlType::F16, 2, &[&a, &b[..4]]).unwrap().len(), 12);
        assert!(concat_rows(GgmlType::F16, 2, &[&a[..3]]).is_err());
        assert!(interleave_rows(GgmlType::Q8_0, 32, &[0; 34], &[0; 68]).is_err());
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(repack_for_gpu(GgmlType::Q8_0, 1, 48, &[0; 51]).is_err());
        assert!(repack_for_gpu(GgmlType::F32, 2, 2, &[0; 12]).is_err());
        // K-quant rows are whole 256-element blocks; a short buffer is an error, not a panic.
        assert!(repack_for_gpu(GgmlType::Q4_K, 2, 128, &[0; 144]).is_err());
        assert!(repack_for_gpu(GgmlType::Q6_K, 1, 256, &[0; 209]).is_err());
    }

    #[test]
    fn buffer_bound_covers_the_layout() {
        for ty in GgmlType::ALL {
            let (rows, cols) = (3, 512);
            let bytes = crate::quant::random_blocks(ty, rows * cols, 1.0, 1).unwrap();
            let l = repack_for_gpu(ty, rows, cols, &bytes).unwrap();
            let largest = 4 * l.data.len().max(l.scales.len()) as u64;
            assert!(largest <= largest_buffer_bytes(ty, bytes.len() as u64), "{}", ty.name());
        }
    }
}
