//! One-time repack of GGUF tensor bytes into the 4-byte-word layout the WGSL kernels read.

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
/// - Q4_0 / Q4_1: the 16 nibble bytes of a block as 4 u32 = one unit (ggml order: byte j holds
///   element j in its low nibble and element j+16 in its high nibble).
///
/// `scales` keeps the file's f16 bits (exact, and as compact as the file; WGSL decodes them with
/// `unpack2x16float`, which needs no f16 support). Blocks are numbered row-major over the whole
/// matrix, `g = row * (cols / 32) + block`:
/// - Q8_0 / Q4_0: `d` of block g in half `g % 2` (0 = low) of word `g / 2`.
/// - Q4_1: word g holds `d` in the low half and `m` in the high half.
/// - float types: a single 0 word (kernels bind it anyway, so one bind group layout fits all).
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
    let want = ty.bytes_for(n).filter(|_| cols % ty.block_len() == 0);
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
    };
    Ok(GpuLayout { data, scales, row_words })
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
    fn rejects_bad_shapes() {
        assert!(repack_for_gpu(GgmlType::Q8_0, 1, 48, &[0; 51]).is_err());
        assert!(repack_for_gpu(GgmlType::F32, 2, 2, &[0; 12]).is_err());
    }
}
