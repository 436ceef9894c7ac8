//! wasm relaxed-SIMD quantised tiles (cargo feature `relaxed-simd`): the block dot products use
//! `i32x4_relaxed_dot_i8x16_i7x16_add`, which is deterministic only when its second operand is in
//! 0..127 (x86 lowers it to pmaddubsw, ARM to sdot). The results equal the simd128 and scalar
//! ones exactly (integers):
//! - Q4: the nibbles (0..15) are the i7 operand; the activation q = 128*hi + lo with hi a signed
//!   byte and lo in 0..127 (15-bit q), so dot(q, n) = 128*dot(hi, n) + dot(lo, n). Pairs stay
//!   within i16 in the pmaddubsw lowering: 2 * 128 * 15.
//! - Q8_0: the signed weights are the i8 operand, so the activations must be 0..127: with
//!   u = q + 16384 in 0..32767 = 16384*a + 128*b + c, q = 128*b + c - 16384*(1 - a), so
//!   dot(w, q) = 128*dot(w, b) + dot(w, c) - 16384*dot(w, na), na = 1 - a in {0, 1}
//!   (2 * 128 * 127 < 32768: no saturation either).
//!
//! The float part (scales, 4-row reduction, accumulation) is the simd128 code.

use core::arch::wasm32::*;

use super::scalar::TT;
use super::wasm::{hsum4, scales, update};
use super::{Acts, GgmlType, QMatrix};

pub(crate) fn q_tile4(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    unsafe {
        match w.ty {
            GgmlType::Q8_0 => q_tile::<0>(w, row0, acts, t0, t1, acc),
            GgmlType::Q4_0 => q_tile::<1>(w, row0, acts, t0, t1, acc),
            GgmlType::Q4_1 => q_tile::<2>(w, row0, acts, t0, t1, acc),
            // The Q5 types and the K-quants: the simd128 tiles (see kquant_wasm.rs).
            _ => super::kquant_wasm::q_tile4(w, row0, acts, t0, t1, acc),
        }
    }
}

#[inline(always)]
fn rdot(a: v128, b: v128, c: v128) -> v128 {
    // SAFETY: the relaxed-simd feature is compiled in (this module only exists with it).
    unsafe { dot_add(a, b, c) }
}

#[target_feature(enable = "relaxed-simd")]
unsafe fn dot_add(a: v128, b: v128, c: v128) -> v128 {
    i32x4_relaxed_dot_i8x16_i7x16_add(a, b, c)
}

#[target_feature(enable = "relaxed-simd")]
unsafe fn q_tile<const K: u8>(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    let (nb, bb, rb) = (acts.cols / 32, w.ty.block_bytes(), w.row_bytes());
    let qoff = if K == 2 { 4 } else { 2 };
    let base = w.data.as_ptr().add(row0 * rb);
    let nt = t1 - t0;
    let zero = i32x4_splat(0);
    let mut av = [f32x4_splat(0.0); TT];
    for b in 0..nb {
        let p = [base.add(b * bb), base.add(rb + b * bb), base.add(2 * rb + b * bb), base.add(3 * rb + b * bb)];
        // Per row two vectors: Q4 nibbles of elements 0..16 and 16..32; Q8_0 bytes 0..16, 16..32.
        let mut u = [[zero; 2]; 4];
        for i in 0..4 {
            let q = p[i].add(qoff);
            u[i] = if K == 0 {
                [v128_load(q as *const v128), v128_load(q.add(16) as *const v128)]
            } else {
                let v = v128_load(q as *const v128);
                let m = u8x16_splat(15);
                [v128_and(v, m), v128_and(u16x8_shr(v, 4), m)]
            };
        }
        let dw = scales(&p, 0);
        let mw = if K == 2 { scales(&p, 2) } else { f32x4_splat(0.0) };
        for (t, a) in av.iter_mut().enumerate().take(nt) {
            let tt = t0 + t;
            let mut s = [zero; 4];
            if K == 0 {
                let x = acts.r8.as_ptr().add((tt * nb + b) * 96) as *const v128;
                let x = [v128_load(x), v128_load(x.add(1)), v128_load(x.add(2)), v128_load(x.add(3)), v128_load(x.add(4)), v128_load(x.add(5))];
                for i in 0..4 {
                    let sb = rdot(u[i][1], x[1], rdot(u[i][0], x[0], zero));
                    let sc = rdot(u[i][1], x[3], rdot(u[i][0], x[2], zero));
                    let sn = rdot(u[i][1], x[5], rdot(u[i][0], x[4], zero));
                    s[i] = i32x4_sub(i32x4_add(i32x4_shl(sb, 7), sc), i32x4_shl(sn, 14));
                }
            } else {
                let x = acts.r4.as_ptr().add((tt * nb + b) * 64) as *const v128;
                let x = [v128_load(x), v128_load(x.add(1)), v128_load(x.add(2)), v128_load(x.add(3))];
                for i in 0..4 {
                    let sh = rdot(x[1], u[i][1], rdot(x[0], u[i][0], zero));
                    let sl = rdot(x[3], u[i][1], rdot(x[2], u[i][0], zero));
                    s[i] = i32x4_add(i32x4_shl(sh, 7), sl);
                }
            }
            let mut isum = hsum4(s);
            let k = tt * nb + b;
            if K == 1 {
                isum = i32x4_sub(isum, i32x4_splat(8 * *acts.sum.get_unchecked(k)));
            }
            *a = update(*a, dw, *acts.d.get_unchecked(k), isum, mw, *acts.sx.get_unchecked(k), K == 2);
        }
    }
    for t in 0..nt {
        v128_store(acc[t].as_mut_ptr() as *mut v128, av[t]);
    }
}
