//! Quantisers for the Q5 types and the K-quants, byte for byte llama.cpp's reference rounding
//! (`quantize_row_*_ref` in ggml-quants.c, what `llama-quantize` uses without an importance
//! matrix; checked against llama.cpp's own library in tests/quant.rs). Block layouts
//! are documented in `kquants`; the per-group scale searches are in `search`.
//!
//! Every K-quant works the same way: each sub-block (16 or 32 elements) gets a float scale (and
//! for the affine types a min) from a search, those are quantised to 4, 6 or 8 bits against the
//! block's largest, which becomes the f16 super-scale, and the elements are then re-quantised
//! against the scales as they will be decoded (so the quants fit the rounded scales).

use super::kquants::{q3k_scales, scale_min_k4};
use super::search::{affine_scale, nearest_int, symmetric_scale, symmetric_scale_refined, ScaleGrid, GROUP_MAX_EPS};
use super::{c_float_to_i8, f16_at, put_f16, GgmlType};

/// Appends the quantised blocks of `x` (whole blocks of `ty`, a Q5 or K-quant type).
pub(super) fn quantize_into(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
    for block in x.chunks_exact(ty.block_len()) {
        match ty {
            GgmlType::Q5_0 => q5_0(block, out),
            GgmlType::Q5_1 => q5_1(block, out),
            GgmlType::Q2_K => q2_k(block, out),
            GgmlType::Q3_K => q3_k(block, out),
            GgmlType::Q4_K => q45_k(block, out, Q4K_SEARCH),
            GgmlType::Q5_K => q45_k(block, out, Q5K_SEARCH),
            GgmlType::Q6_K => q6_k(block, out),
            _ => unreachable!("kquantize: {} is not a Q5 or K-quant type", ty.name()),
        }
    }
}

/// The 32 five-bit quants of a Q5 block: low nibbles of elements j and j + 16 share byte j, the
/// fifth bits go to bit j of `qh`.
fn put_q5(q: impl Fn(usize) -> u8, out: &mut Vec<u8>) {
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for (j, byte) in qs.iter_mut().enumerate() {
        let (lo, hi) = (q(j), q(j + 16));
        *byte = (lo & 0x0F) | ((hi & 0x0F) << 4);
        qh |= (((lo >> 4) & 1) as u32) << j;
        qh |= (((hi >> 4) & 1) as u32) << (j + 16);
    }
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

/// quantize_row_q5_0_ref: d = max / -16 (`max` the value of largest magnitude, sign kept),
/// q = min(31, trunc(x / d + 16.5)).
fn q5_0(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    put_q5(|j| c_float_to_i8(x[j] * id + 16.5).min(31) as u8, out);
}

/// quantize_row_q5_1_ref: d = (max - min) / 31, m = min, q = trunc((x - min) / d + 0.5).
fn q5_1(x: &[f32], out: &mut Vec<u8>) {
    let (min, max) = super::block_min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    put_f16(out, min);
    put_q5(|j| c_float_to_i8((x[j] - min) * id + 0.5) as u8, out);
}

/// Packs 256 two-bit values: in each half n, byte 32n + l holds elements 128n + l + 32k at bits 2k.
fn pack_2bit(levels: &[u8; 256]) -> [u8; 64] {
    let mut qs = [0u8; 64];
    for (n, half) in levels.chunks_exact(128).enumerate() {
        for l in 0..32 {
            qs[32 * n + l] = half[l] | (half[l + 32] << 2) | (half[l + 64] << 4) | (half[l + 96] << 6);
        }
    }
    qs
}

/// The largest of the group scales (only positive ones count: all zero gives 0).
fn positive_max(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, &s| if s > m { s } else { m })
}

/// quantize_row_q2_K_ref: 16 groups of 16 with affine scales (absolute-error search), scales
/// and mins quantised to 4 bits against the largest of each.
fn q2_k(x: &[f32], out: &mut Vec<u8>) {
    const GRID: ScaleGrid = ScaleGrid { rmin: -0.5, rdelta: 0.1, steps: 15, use_mad: true };
    let mut levels = [0u8; 256];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    for (j, group) in x.chunks_exact(16).enumerate() {
        let weights: [f32; 16] = std::array::from_fn(|l| group[l].abs());
        (scales[j], mins[j]) = affine_scale(group, &weights, 3, &GRID, &mut levels[16 * j..16 * j + 16]);
    }
    let (max_scale, max_min) = (positive_max(&scales), positive_max(&mins));
    let mut packed = [0u8; 16];
    let d = if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (p, &s) in packed.iter_mut().zip(&scales) {
            *p = nearest_int(iscale * s) as u8;
        }
        max_scale / 15.0
    } else {
        0.0
    };
    let dmin = if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (p, &m) in packed.iter_mut().zip(&mins) {
            *p |= (nearest_int(iscale * m) << 4) as u8;
        }
        max_min / 15.0
    } else {
        0.0
    };
    let mut tail = Vec::with_capacity(4);
    put_f16(&mut tail, d);
    put_f16(&mut tail, dmin);
    let (d, dmin) = (f16_at(&tail, 0), f16_at(&tail, 2));
    for (j, group) in x.chunks_exact(16).enumerate() {
        let dl = d * (packed[j] & 0x0F) as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin * (packed[j] >> 4) as f32;
        for (o, &v) in levels[16 * j..16 * j + 16].iter_mut().zip(group) {
            *o = nearest_int((v + ml) / dl).clamp(0, 3) as u8;
        }
    }
    out.extend_from_slice(&packed);
    out.extend_from_slice(&pack_2bit(&levels));
    out.extend_from_slice(&tail);
}

/// quantize_row_q3_K_ref: 16 groups of 16 with symmetric scales, quantised to 6 bits (biased by
/// 32) against the scale of largest magnitude; quants -4..3 stored as 2 low bits plus a high bit
/// in `hmask` (bit j / 32 of byte j % 32).
fn q3_k(x: &[f32], out: &mut Vec<u8>) {
    let mut levels = [0u8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0f32, 0f32);
    for (j, group) in x.chunks_exact(16).enumerate() {
        scales[j] = symmetric_scale_refined(group, 4, &mut levels[16 * j..16 * j + 16]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    let mut packed = [0u8; 12];
    let mut d = 0f32;
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            let l = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
            if j < 8 {
                packed[j] = l & 0x0F;
            } else {
                packed[j - 8] |= (l & 0x0F) << 4;
            }
            packed[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
        }
        d = 1.0 / iscale;
    }
    let mut d_bytes = Vec::with_capacity(2);
    put_f16(&mut d_bytes, d);
    let d = f16_at(&d_bytes, 0);
    for (j, (group, &sc)) in x.chunks_exact(16).zip(&q3k_scales(&packed)).enumerate() {
        let dl = d * (sc as i32 - 32) as f32;
        if dl == 0.0 {
            continue;
        }
        for (o, &v) in levels[16 * j..16 * j + 16].iter_mut().zip(group) {
            *o = (nearest_int(v / dl).clamp(-4, 3) + 4) as u8;
        }
    }
    let mut hmask = [0u8; 32];
    for (j, l) in levels.iter_mut().enumerate() {
        if *l > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            *l -= 4;
        }
    }
    out.extend_from_slice(&hmask);
    out.extend_from_slice(&pack_2bit(&levels));
    out.extend_from_slice(&packed);
    out.extend_from_slice(&d_bytes);
}

/// The differences between quantize_row_q4_K_ref and quantize_row_q5_K_ref.
#[derive(Clone, Copy)]
struct Q45Search {
    nmax: i32,
    grid: ScaleGrid,
}

const Q4K_SEARCH: Q45Search = Q45Search { nmax: 15, grid: ScaleGrid { rmin: -1.0, rdelta: 0.1, steps: 20, use_mad: false } };
const Q5K_SEARCH: Q45Search = Q45Search { nmax: 31, grid: ScaleGrid { rmin: -0.5, rdelta: 0.1, steps: 15, use_mad: false } };

/// quantize_row_q4_K_ref / quantize_row_q5_K_ref: 8 groups of 32 with affine scales (squared
/// error weighted by rms + |x|), scales and mins quantised to 6 bits against the largest of
/// each; Q5_K adds a fifth bit per quant in `qh`.
fn q45_k(x: &[f32], out: &mut Vec<u8>, search: Q45Search) {
    let mut levels = [0u8; 256];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    for (j, group) in x.chunks_exact(32).enumerate() {
        let mut sum_x2 = 0f32;
        for &v in group {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|l| av_x + group[l].abs());
        (scales[j], mins[j]) = affine_scale(group, &weights, search.nmax, &search.grid, &mut levels[32 * j..32 * j + 32]);
    }
    let (max_scale, max_min) = (positive_max(&scales), positive_max(&mins));
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let mut head = Vec::with_capacity(16);
    put_f16(&mut head, max_scale / 63.0);
    put_f16(&mut head, max_min / 63.0);
    let (d, dmin) = (f16_at(&head, 0), f16_at(&head, 2));
    head.extend_from_slice(&packed);
    for (j, group) in x.chunks_exact(32).enumerate() {
        let (sc, m) = scale_min_k4(j, &packed);
        let dl = d * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin * m as f32;
        for (o, &v) in levels[32 * j..32 * j + 32].iter_mut().zip(group) {
            *o = nearest_int((v + ml) / dl).clamp(0, search.nmax) as u8;
        }
    }
    out.extend_from_slice(&head);
    // Each 64 elements share 32 bytes: the first 32 in the low nibbles, the next 32 in the high;
    // for Q5_K their fifth bits are bits 2i and 2i + 1 of qh (i the 64-element chunk).
    let mut qh = [0u8; 32];
    let mut qs = [0u8; 128];
    for (i, chunk) in levels.chunks_exact(64).enumerate() {
        for l in 0..32 {
            let (lo, hi) = (chunk[l], chunk[l + 32]);
            qs[32 * i + l] = (lo & 0x0F) | ((hi & 0x0F) << 4);
            qh[l] |= ((lo >> 4) << (2 * i)) | ((hi >> 4) << (2 * i + 1));
        }
    }
    if search.nmax > 15 {
        out.extend_from_slice(&qh);
    }
    out.extend_from_slice(&qs);
}

/// quantize_row_q6_K_ref: 16 groups of 16 with symmetric scales (x²-weighted search), scales
/// quantised to i8 against the scale of largest magnitude (-128 for it); quants -32..31 as a
/// low nibble in `ql` and two high bits in `qh`.
fn q6_k(x: &[f32], out: &mut Vec<u8>) {
    let mut levels = [0u8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs) = (0f32, 0f32);
    for (j, group) in x.chunks_exact(16).enumerate() {
        scales[j] = symmetric_scale(group, 32, &mut levels[16 * j..16 * j + 16]);
        if scales[j].abs() > max_abs {
            max_abs = scales[j].abs();
            max_scale = scales[j];
        }
    }
    if max_abs < GROUP_MAX_EPS {
        out.extend_from_slice(&[0u8; 210]);
        return;
    }
    let iscale = -128.0 / max_scale;
    let mut d_bytes = Vec::with_capacity(2);
    put_f16(&mut d_bytes, 1.0 / iscale);
    let d = f16_at(&d_bytes, 0);
    let packed: [i8; 16] = std::array::from_fn(|j| nearest_int(iscale * scales[j]).min(127) as i8);
    for (j, group) in x.chunks_exact(16).enumerate() {
        let dl = d * packed[j] as f32;
        if dl == 0.0 {
            continue;
        }
        for (o, &v) in levels[16 * j..16 * j + 16].iter_mut().zip(group) {
            *o = (nearest_int(v / dl).clamp(-32, 31) + 32) as u8;
        }
    }
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for (n, half) in levels.chunks_exact(128).enumerate() {
        for l in 0..32 {
            let q = |k: usize| half[l + 32 * k];
            ql[64 * n + l] = (q(0) & 0x0F) | ((q(2) & 0x0F) << 4);
            ql[64 * n + l + 32] = (q(1) & 0x0F) | ((q(3) & 0x0F) << 4);
            qh[32 * n + l] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(packed.iter().map(|&s| s as u8));
    out.extend_from_slice(&d_bytes);
}
