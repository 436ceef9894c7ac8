//! Random weights of every type and the worst-case rounding bounds the product kernels are held to.
//!
//! Bounds (u32 = 2^-24, u16 = 2^-11 unit roundoffs). The decode path computes each unit of a row
//! as d * sum(raw * x) + off * sum(x) in f32 (shaders/weights.wgsl), so its error is bounded by
//! gamma_(cols+2) * S, where S = sum_c |x_c| * (|d q_c| + |off|) >= sum_c |x_c w_c| (for float
//! types |w_c| itself; Q8_0 is decoded as q + 128 with off = -128 d): [`magnitudes`] gives
//! |d q_c| + |off| per element. The f16 tile path also
//! rounds x and w to f16 (2 u16), each product (1 u16) and each 4-term dot (3 u16) before its f32
//! accumulation, plus f16 underflow (<= 2^-25 per operation, 5 per element).
#![allow(dead_code)]

use half::{bf16, f16};
use mobilellm_web::quant::{dequantize, random_blocks, GgmlType};

use super::Rng;

pub const U32: f32 = 1.0 / (1u32 << 24) as f32;
pub const U16: f32 = 1.0 / 2048.0;

/// Random GGUF bytes for a [rows, cols] tensor: any bit pattern of quants is valid, scales are
/// kept in a realistic range (weights of order 0.1).
pub fn random_tensor(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    let mut out = Vec::with_capacity(ty.bytes_for(n as u64).unwrap() as usize);
    let scale = |rng: &mut Rng, s: f32| f16::from_f32(rng.uniform() * s).to_le_bytes();
    match ty {
        GgmlType::F32 => (0..n).for_each(|_| out.extend(rng.uniform().to_le_bytes())),
        GgmlType::F16 => (0..n).for_each(|_| out.extend(f16::from_f32(rng.uniform()).to_le_bytes())),
        GgmlType::BF16 => (0..n).for_each(|_| out.extend(bf16::from_f32(rng.uniform()).to_le_bytes())),
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => {
            for _ in 0..n / 32 {
                let d = if ty == GgmlType::Q8_0 { 0.002 } else { 0.03 };
                out.extend(scale(rng, d));
                if ty == GgmlType::Q4_1 {
                    out.extend(scale(rng, 0.2));
                }
                let nq = if ty == GgmlType::Q8_0 { 32 } else { 16 };
                out.extend((0..nq).map(|_| rng.next_u64() as u8));
            }
        }
        // The Q5 types and K-quants: random quants and scales, elements within about ±0.25.
        _ => out = random_blocks(ty, n, 0.25, rng.next_u64()).expect("whole blocks"),
    }
    out
}

/// The tensor as f32, by the library's dequantiser (ggml's reference arithmetic).
pub fn dequant(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    dequantize(ty, bytes, n).expect("dequantize")
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// |d q_c| + |off| per element (|w_c| for float types): the terms the decode path's rounding
/// error scales with (see the module comment).
pub fn magnitudes(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => return dequant(ty, bytes, n).iter().map(|v| v.abs()).collect(),
        GgmlType::Q8_0 => {
            // Decoded as the unsigned q + 128 with offset -128 d.
            for b in bytes.chunks_exact(34) {
                let d = f16_at(b, 0);
                out.extend(b[2..].iter().map(|&q| ((q as i8 as f32 + 128.0) * d).abs() + (128.0 * d).abs()));
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let bb = ty.block_bytes();
            for b in bytes.chunks_exact(bb) {
                let d = f16_at(b, 0);
                let off = if ty == GgmlType::Q4_1 { f16_at(b, 2) } else { -8.0 * d };
                let qs = &b[bb - 16..];
                out.extend(qs.iter().map(|&q| ((q & 15) as f32 * d).abs() + off.abs()));
                out.extend(qs.iter().map(|&q| ((q >> 4) as f32 * d).abs() + off.abs()));
            }
        }
        _ => {
            // Decoded as d * raw + off with an unsigned raw quant (every bias in off), so off is
            // the element whose quant bits are all zero: |e - off| + |off|.
            let e = dequant(ty, bytes, n);
            let mut zeroed = bytes.to_vec();
            let quants = quant_bytes(ty);
            zeroed.chunks_exact_mut(ty.block_bytes()).for_each(|b| b[quants.clone()].fill(0));
            let off = dequant(ty, &zeroed, n);
            out.extend(e.iter().zip(&off).map(|(e, o)| (e - o).abs() + o.abs()));
        }
    }
    out
}

/// The bytes of a Q5 or K-quant block that hold quant bits (with them all zero, Q3_K's clear
/// hmask bits subtract 4: its raw quant is 0 too).
fn quant_bytes(ty: GgmlType) -> std::ops::Range<usize> {
    match ty {
        GgmlType::Q5_0 => 2..22,
        GgmlType::Q5_1 => 4..24,
        GgmlType::Q2_K => 16..80,
        GgmlType::Q3_K => 0..96,
        GgmlType::Q4_K => 16..144,
        GgmlType::Q5_K => 16..176,
        GgmlType::Q6_K => 0..192,
        _ => unreachable!("quant_bytes: {}", ty.name()),
    }
}

/// sum_c |x[t, c]| * mag[r, c] for every output [t, r].
pub fn abs_dots(x: &[f32], mag: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    mobilellm_web::cpu::ops::matmul(&ax, mag, rows, cols)
}

/// Bound on |gpu - reference| for one product of `cols` terms with magnitude sum `s`, computed
/// in f32 (`low` = false) or with f16 operands (`low` = true, the f16 tile path).
pub fn product_bound(cols: usize, s: f32, reference: f32, low: bool) -> f32 {
    let f32_part = (cols as f32 + 2.0) * U32 * s + 2.0 * U32 * reference.abs() + 1e-30;
    if low {
        f32_part + 6.0 * U16 * s + 5.0 * cols as f32 * 2f32.powi(-25)
    } else {
        f32_part
    }
}

/// Asserts |got - want| <= tol elementwise, naming the first offender.
pub fn check(what: &str, got: &[f32], want: &[f32], tol: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.len() {
        let err = (got[i] - want[i]).abs();
        assert!(err <= tol[i], "{what}: index {i} got {} want {} (|err| {err} > bound {})", got[i], want[i], tol[i]);
    }
}
