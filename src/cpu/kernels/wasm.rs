//! wasm simd128 kernels (compiled in with `-C target-feature=+simd128`). Each mirrors scalar.rs.
//!
//! Quantised tile (4 rows): a block's quants are unpacked with 16-bit lane operations only (wasm
//! has no 8-bit shifts, and its byte-to-i16 extends cost several x86 instructions in V8): viewing
//! 16 bytes as 8 u16 lanes, `v & 15`, `(v >> 8) & 15`, `(v >> 4) & 15` and `v >> 12` are the even
//! and odd elements of 0..16 and 16..32 (Q4); for Q8_0 `(v << 8) >> 8` and `v >> 8` (arithmetic)
//! are the even and odd bytes. The activations are stored in that order (Acts::qp), so
//! `i32x4_dot_i16x8` pairs them up; the integer sums are exact whatever the order.

use core::arch::wasm32::*;

use super::math::{EXP_HI, EXP_LO, EXP_P, LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC};
use super::scalar::{self, TT};
use super::{Acts, GgmlType, QMatrix};

const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q4_1: u8 = 2;

pub(crate) fn q_tile4(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    unsafe {
        match w.ty {
            GgmlType::Q8_0 => q_tile::<Q8_0>(w, row0, acts, t0, t1, acc),
            GgmlType::Q4_0 => q_tile::<Q4_0>(w, row0, acts, t0, t1, acc),
            GgmlType::Q4_1 => q_tile::<Q4_1>(w, row0, acts, t0, t1, acc),
            _ => super::kquant_wasm::q_tile4(w, row0, acts, t0, t1, acc),
        }
    }
}

#[inline(always)]
pub(crate) unsafe fn rd16(p: *const u8) -> u32 {
    (p as *const u16).read_unaligned() as u32
}

/// f16 bits in the low half of each u32 lane -> f32 (exact, subnormals included):
/// bits<<13 reinterpreted is the value * 2^-112 for normals and subnormals alike, so one exact
/// multiplication by 2^112 rebases it; Inf/NaN get the all-ones exponent.
#[inline(always)]
pub(crate) fn f16x4(h: v128) -> v128 {
    let em = v128_and(h, u32x4_splat(0x7fff));
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let f = f32x4_mul(i32x4_shl(em, 13), f32x4_splat(f32::from_bits(0x7780_0000)));
    let special = u32x4_ge(em, u32x4_splat(0x7c00));
    let f = v128_bitselect(v128_or(i32x4_shl(em, 13), u32x4_splat(0x7f80_0000)), f, special);
    v128_or(f, sign)
}

/// The d (offset 0) or m (offset 2) of 4 rows' blocks, as f32x4.
#[inline(always)]
pub(crate) unsafe fn scales(p: &[*const u8; 4], off: usize) -> v128 {
    f16x4(u32x4(rd16(p[0].add(off)), rd16(p[1].add(off)), rd16(p[2].add(off)), rd16(p[3].add(off))))
}

/// [sum(a), sum(b), sum(c), sum(d)] of four i32x4 (a transpose and adds).
#[inline(always)]
pub(crate) fn hsum4(s: [v128; 4]) -> v128 {
    let u = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(s[0], s[1]), i32x4_shuffle::<2, 6, 3, 7>(s[0], s[1]));
    let w = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(s[2], s[3]), i32x4_shuffle::<2, 6, 3, 7>(s[2], s[3]));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(u, w), i32x4_shuffle::<2, 3, 6, 7>(u, w))
}

/// The float update of a tile: a = a + (dw*dx)*isum (+ mw*sx for Q4_1), 4 rows at once.
#[inline(always)]
pub(crate) fn update(a: v128, dw: v128, dx: f32, isum: v128, mw: v128, sx: f32, q4_1: bool) -> v128 {
    let v = f32x4_add(a, f32x4_mul(f32x4_mul(dw, f32x4_splat(dx)), f32x4_convert_i32x4(isum)));
    if q4_1 {
        f32x4_add(v, f32x4_mul(mw, f32x4_splat(sx)))
    } else {
        v
    }
}

#[inline(always)]
unsafe fn unpack<const K: u8>(q: *const u8) -> [v128; 4] {
    if K == Q8_0 {
        let (a, b) = (v128_load(q as *const v128), v128_load(q.add(16) as *const v128));
        [i16x8_shr(i16x8_shl(a, 8), 8), i16x8_shr(a, 8), i16x8_shr(i16x8_shl(b, 8), 8), i16x8_shr(b, 8)]
    } else {
        let v = v128_load(q as *const v128);
        let m = u16x8_splat(15);
        [v128_and(v, m), v128_and(u16x8_shr(v, 8), m), v128_and(u16x8_shr(v, 4), m), u16x8_shr(v, 12)]
    }
}

unsafe fn q_tile<const K: u8>(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    let (cols, nb) = (acts.cols, acts.cols / 32);
    let (bb, rb) = (w.ty.block_bytes(), w.row_bytes());
    let qoff = if K == Q4_1 { 4 } else { 2 };
    let base = w.data.as_ptr().add(row0 * rb);
    let nt = t1 - t0;
    let mut av = [f32x4_splat(0.0); TT];
    for b in 0..nb {
        let p = [base.add(b * bb), base.add(rb + b * bb), base.add(2 * rb + b * bb), base.add(3 * rb + b * bb)];
        let u = [unpack::<K>(p[0].add(qoff)), unpack::<K>(p[1].add(qoff)), unpack::<K>(p[2].add(qoff)), unpack::<K>(p[3].add(qoff))];
        let dw = scales(&p, 0);
        let mw = if K == Q4_1 { scales(&p, 2) } else { f32x4_splat(0.0) };
        for (t, a) in av.iter_mut().enumerate().take(nt) {
            let tt = t0 + t;
            let xq = acts.qp.as_ptr().add(tt * cols + b * 32) as *const v128;
            let x = [v128_load(xq), v128_load(xq.add(1)), v128_load(xq.add(2)), v128_load(xq.add(3))];
            let mut s = [u32x4_splat(0); 4];
            for i in 0..4 {
                s[i] = i32x4_add(
                    i32x4_add(i32x4_dot_i16x8(u[i][0], x[0]), i32x4_dot_i16x8(u[i][1], x[1])),
                    i32x4_add(i32x4_dot_i16x8(u[i][2], x[2]), i32x4_dot_i16x8(u[i][3], x[3])),
                );
            }
            let mut isum = hsum4(s);
            if K == Q4_0 {
                isum = i32x4_sub(isum, i32x4_splat(8 * *acts.sum.get_unchecked(tt * nb + b)));
            }
            let k = tt * nb + b;
            *a = update(*a, dw, *acts.d.get_unchecked(k), isum, mw, *acts.sx.get_unchecked(k), K == Q4_1);
        }
    }
    for t in 0..nt {
        v128_store(acc[t].as_mut_ptr() as *mut v128, av[t]);
    }
}

/// 4 consecutive elements (c..c+4) of a float row as f32x4.
#[inline(always)]
unsafe fn load4<const T: u8>(w: *const u8, c: usize) -> v128 {
    match T {
        0 => v128_load(w.add(4 * c) as *const v128),
        1 => f16x4(u32x4_load_extend_u16x4(w.add(2 * c) as *const u16)),
        _ => i32x4_shl(u32x4_load_extend_u16x4(w.add(2 * c) as *const u16), 16),
    }
}

fn code(ty: GgmlType) -> u8 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        _ => 2,
    }
}

pub(crate) fn dot(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    assert!(w.len() >= x.len() * if ty == GgmlType::F32 { 4 } else { 2 });
    unsafe {
        match code(ty) {
            0 => dot_t::<0>(ty, w, x),
            1 => dot_t::<1>(ty, w, x),
            _ => dot_t::<2>(ty, w, x),
        }
    }
}

unsafe fn dot_t<const T: u8>(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    let n16 = x.len() / 16 * 16;
    let mut a = [f32x4_splat(0.0); 4];
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    for c in (0..n16).step_by(16) {
        for (j, aj) in a.iter_mut().enumerate() {
            *aj = f32x4_add(*aj, f32x4_mul(load4::<T>(wp, c + 4 * j), v128_load(xp.add(c + 4 * j) as *const v128)));
        }
    }
    let mut l = [0f32; 16];
    for (j, aj) in a.iter().enumerate() {
        v128_store(l.as_mut_ptr().add(4 * j) as *mut v128, *aj);
    }
    scalar::dot_lanes(ty, w, x, n16, &mut l);
    scalar::reduce16(&l)
}

pub(crate) fn axpy(ty: GgmlType, a: f32, v: &[u8], acc: &mut [f32]) {
    assert!(v.len() >= acc.len() * if ty == GgmlType::F32 { 4 } else { 2 });
    let n4 = acc.len() / 4 * 4;
    let av = f32x4_splat(a);
    let (vp, op) = (v.as_ptr(), acc.as_mut_ptr());
    unsafe {
        for c in (0..n4).step_by(4) {
            let x = match code(ty) {
                0 => load4::<0>(vp, c),
                1 => load4::<1>(vp, c),
                _ => load4::<2>(vp, c),
            };
            let o = op.add(c) as *mut v128;
            v128_store(o, f32x4_add(v128_load(o), f32x4_mul(av, x)));
        }
    }
    scalar::axpy_from(ty, a, v, acc, n4);
}

/// exp of 4 lanes, operation for operation math::exp_f32.
#[inline(always)]
fn exp4(x: v128) -> v128 {
    // x < LO (false for NaN) gives 0 at the end; pmax(x, LO) = x < LO ? LO : x and
    // pmin(x, HI) = HI < x ? HI : x: NaN passes through, as in scalar.
    let under = f32x4_lt(x, f32x4_splat(EXP_LO));
    let x = f32x4_pmin(f32x4_pmax(x, f32x4_splat(EXP_LO)), f32x4_splat(EXP_HI));
    let magic = f32x4_splat(ROUND_MAGIC);
    let n = f32x4_sub(f32x4_add(f32x4_mul(x, f32x4_splat(LOG2E)), magic), magic);
    let r = f32x4_sub(f32x4_sub(x, f32x4_mul(n, f32x4_splat(LN2_HI))), f32x4_mul(n, f32x4_splat(LN2_LO)));
    let mut p = f32x4_splat(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = f32x4_add(f32x4_mul(p, r), f32x4_splat(c));
    }
    let e = f32x4_add(f32x4_add(f32x4_mul(p, f32x4_mul(r, r)), r), f32x4_splat(1.0));
    let ni = i32x4_trunc_sat_f32x4(n);
    let n1 = i32x4_shr(ni, 1);
    let n2 = i32x4_sub(ni, n1);
    let s1 = i32x4_shl(i32x4_add(n1, i32x4_splat(127)), 23);
    let s2 = i32x4_shl(i32x4_add(n2, i32x4_splat(127)), 23);
    v128_andnot(f32x4_mul(f32x4_mul(e, s1), s2), under)
}

pub(crate) fn exp_sub(xs: &mut [f32], m: f32) {
    let n4 = xs.len() / 4 * 4;
    let mv = f32x4_splat(m);
    let p = xs.as_mut_ptr();
    unsafe {
        for c in (0..n4).step_by(4) {
            let o = p.add(c) as *mut v128;
            v128_store(o, exp4(f32x4_sub(v128_load(o), mv)));
        }
    }
    scalar::exp_sub(&mut xs[n4..], m);
}
