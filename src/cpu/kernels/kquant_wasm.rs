//! wasm simd128 tiles (4 rows x up to TT tokens) for the Q5 types and the K-quants; each returns
//! exactly what kquant_scalar.rs returns. The relaxed-SIMD build runs these too for these types
//! (its i8 x i7 dot could take the 2-6 bit quants against the split activations as relaxed.rs does
//! for Q4; not done yet: the integers, and so the results, would be the same).
//!
//! As in wasm.rs, quants are unpacked with 16-bit lane operations: 16 bytes viewed as 8 u16 lanes
//! give the even elements from the low bytes and the odd ones from the high bytes, shifted and
//! masked in place, which is the order of Acts::qp ([even, odd] of each 16-element half). Each
//! half's `i32x4_dot_i16x8` sums stay apart for the types with a scale per 16 elements; the
//! offsets (q - 16, q - 4, q - 32) are taken off the integer sums as offset * the half's
//! activation sum, and the scales multiply the sums of 4 rows at once.

use core::arch::wasm32::*;

use super::scalar::TT;
use super::wasm::{hsum4, scales as f16x4, update};
use super::{Acts, GgmlType, QMatrix};

const Q5_0: u8 = 0;
const Q5_1: u8 = 1;
const Q2_K: u8 = 2;
const Q3_K: u8 = 3;
const Q4_K: u8 = 4;
const Q5_K: u8 = 5;
const Q6_K: u8 = 6;

/// acc[t-t0][i] = w[row0+i]·x[t], i < 4, for the Q5 and K-quant types.
pub(crate) fn q_tile4(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    // SAFETY: the callers checked the shapes (matmul::check): 4 whole rows from row0, and every
    // activation block the loops read.
    unsafe {
        match w.ty {
            GgmlType::Q5_0 => q5_tile::<Q5_0>(w, row0, acts, t0, t1, acc),
            GgmlType::Q5_1 => q5_tile::<Q5_1>(w, row0, acts, t0, t1, acc),
            GgmlType::Q2_K => k_tile::<Q2_K>(w, row0, acts, t0, t1, acc),
            GgmlType::Q3_K => k_tile::<Q3_K>(w, row0, acts, t0, t1, acc),
            GgmlType::Q4_K => k_tile::<Q4_K>(w, row0, acts, t0, t1, acc),
            GgmlType::Q5_K => k_tile::<Q5_K>(w, row0, acts, t0, t1, acc),
            GgmlType::Q6_K => k_tile::<Q6_K>(w, row0, acts, t0, t1, acc),
            _ => unreachable!("kquant_wasm on {}", w.ty.name()),
        }
    }
}

#[inline(always)]
unsafe fn rd32(p: *const u8) -> u32 {
    (p as *const u32).read_unaligned()
}

/// Byte `off` of the same block in 4 consecutive rows.
#[inline(always)]
unsafe fn rows4(base: *const u8, row_bytes: usize, off: usize) -> [*const u8; 4] {
    [base.add(off), base.add(row_bytes + off), base.add(2 * row_bytes + off), base.add(3 * row_bytes + off)]
}

/// Bits from..from+width of each of the 32 bytes at p, moved to bit `to`, as the 4 vectors of the
/// qp order (the mask clears what a 16-bit shift brings in from the other byte).
#[inline(always)]
unsafe fn fields(p: *const u8, from: u32, width: u32, to: u32) -> [v128; 4] {
    let mask = u16x8_splat((((1u32 << width) - 1) << to) as u16);
    let (a, b) = (v128_load(p as *const v128), v128_load(p.add(16) as *const v128));
    let even = |v: v128| v128_and(if from >= to { u16x8_shr(v, from - to) } else { i16x8_shl(v, to - from) }, mask);
    let odd = |v: v128| v128_and(u16x8_shr(v, 8 + from - to), mask);
    [even(a), odd(a), even(b), odd(b)]
}

#[inline(always)]
fn or4(a: [v128; 4], b: [v128; 4]) -> [v128; 4] {
    [v128_or(a[0], b[0]), v128_or(a[1], b[1]), v128_or(a[2], b[2]), v128_or(a[3], b[3])]
}

/// The 32 quants (0..31) of a Q5 block, from its qh (u32) and qs[16] at `q`, in the qp order.
#[inline(always)]
unsafe fn q5_quants(q: *const u8) -> [v128; 4] {
    let v = v128_load(q.add(4) as *const v128);
    let m = u16x8_splat(15);
    let nib = [v128_and(v, m), v128_and(u16x8_shr(v, 8), m), v128_and(u16x8_shr(v, 4), m), u16x8_shr(v, 12)];
    // Vector 0 holds elements 0, 2, .., 14, whose fifth bits are bits 0, 2, .., 14 of qh; vector
    // 1 the odd ones; vectors 2 and 3 the same for the high 16 bits.
    let qh = rd32(q);
    let (lo, hi) = (u16x8_splat(qh as u16), u16x8_splat((qh >> 16) as u16));
    let even = u16x8(1, 1 << 2, 1 << 4, 1 << 6, 1 << 8, 1 << 10, 1 << 12, 1 << 14);
    let odd = u16x8(1 << 1, 1 << 3, 1 << 5, 1 << 7, 1 << 9, 1 << 11, 1 << 13, 1 << 15);
    let high = |h: v128, bits: v128| v128_and(i16x8_ne(v128_and(h, bits), u16x8_splat(0)), u16x8_splat(16));
    or4(nib, [high(lo, even), high(lo, odd), high(hi, even), high(hi, odd)])
}

/// One token's activation block in the qp order.
#[inline(always)]
unsafe fn acts4(acts: &Acts, t: usize, b: usize) -> [v128; 4] {
    let x = acts.qp.as_ptr().add(t * acts.cols + b * 32) as *const v128;
    [v128_load(x), v128_load(x.add(1)), v128_load(x.add(2)), v128_load(x.add(3))]
}

/// The two halves' integer dots of one row: (elements 0..16, 16..32).
#[inline(always)]
fn dots(u: &[v128; 4], x: &[v128; 4]) -> (v128, v128) {
    (i32x4_add(i32x4_dot_i16x8(u[0], x[0]), i32x4_dot_i16x8(u[1], x[1])), i32x4_add(i32x4_dot_i16x8(u[2], x[2]), i32x4_dot_i16x8(u[3], x[3])))
}

unsafe fn q5_tile<const K: u8>(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    let nb = acts.cols / 32;
    let (bb, rb) = (w.ty.block_bytes(), w.row_bytes());
    let qh_off = if K == Q5_1 { 4 } else { 2 };
    let base = w.data.as_ptr().add(row0 * rb);
    let mut av = [f32x4_splat(0.0); TT];
    for b in 0..nb {
        let p = rows4(base, rb, b * bb);
        let u = p.map(|r| q5_quants(r.add(qh_off)));
        let dw = f16x4(&p, 0);
        let mw = if K == Q5_1 { f16x4(&p, 2) } else { f32x4_splat(0.0) };
        for (t, a) in av.iter_mut().enumerate().take(t1 - t0) {
            let tt = t0 + t;
            let k = tt * nb + b;
            let x = acts4(acts, tt, b);
            let s = u.map(|ui| {
                let (h0, h1) = dots(&ui, &x);
                i32x4_add(h0, h1)
            });
            let mut isum = hsum4(s);
            if K == Q5_0 {
                isum = i32x4_sub(isum, i32x4_splat(16 * *acts.sum.get_unchecked(k)));
            }
            *a = update(*a, dw, *acts.d.get_unchecked(k), isum, mw, *acts.sx.get_unchecked(k), K == Q5_1);
        }
    }
    for (a, v) in acc.iter_mut().zip(&av).take(t1 - t0) {
        v128_store(a.as_mut_ptr() as *mut v128, *v);
    }
}

/// A super-block's scales for 4 rows: D, Dmin and 4 words of scale bytes per row (lane r = row
/// r): Q4_K/Q5_K [scales 0..4, 4..8, mins 0..4, 4..8] (kquant_scalar::k4_scale_words), Q3_K the
/// 16 biased scales (k3_scale_words), Q2_K and Q6_K their 16 scale bytes as stored.
struct Scales {
    d: v128,
    dmin: v128,
    words: [v128; 4],
}

impl Scales {
    #[inline(always)]
    unsafe fn new<const K: u8>(p: &[*const u8; 4]) -> Self {
        let word = |off: usize| u32x4(rd32(p[0].add(off)), rd32(p[1].add(off)), rd32(p[2].add(off)), rd32(p[3].add(off)));
        let c = u32x4_splat;
        let zero = f32x4_splat(0.0);
        match K {
            Q2_K => Scales { d: f16x4(p, 80), dmin: f16x4(p, 82), words: [word(0), word(4), word(8), word(12)] },
            Q3_K => {
                let w = [word(96), word(100), word(104)];
                let low = |v: v128, shift: u32| v128_and(u32x4_shr(v, shift), c(0x0f0f_0f0f));
                let top = |shift: u32| i32x4_shl(v128_and(u32x4_shr(w[2], shift), c(0x0303_0303)), 4);
                let words = [v128_or(low(w[0], 0), top(0)), v128_or(low(w[1], 0), top(2)), v128_or(low(w[0], 4), top(4)), v128_or(low(w[1], 4), top(6))];
                Scales { d: f16x4(p, 108), dmin: zero, words }
            }
            Q4_K | Q5_K => {
                let w = [word(4), word(8), word(12)];
                let (low4, low6, top2) = (c(0x0f0f_0f0f), c(0x3f3f_3f3f), c(0x0303_0303));
                let top = |v: v128| i32x4_shl(v128_and(u32x4_shr(v, 6), top2), 4);
                let words = [
                    v128_and(w[0], low6),
                    v128_or(v128_and(w[2], low4), top(w[0])),
                    v128_and(w[1], low6),
                    v128_or(v128_and(u32x4_shr(w[2], 4), low4), top(w[1])),
                ];
                Scales { d: f16x4(p, 0), dmin: f16x4(p, 2), words }
            }
            _ => Scales { d: f16x4(p, 208), dmin: zero, words: [word(192), word(196), word(200), word(204)] },
        }
    }

    /// Byte i (0..16) of every row, unsigned.
    #[inline(always)]
    fn byte(&self, i: usize) -> v128 {
        v128_and(u32x4_shr(self.words[i / 4], 8 * (i % 4) as u32), u32x4_splat(255))
    }

    /// Byte i of every row, as a signed byte.
    #[inline(always)]
    fn signed_byte(&self, i: usize) -> v128 {
        i32x4_shr(i32x4_shl(self.words[i / 4], 24 - 8 * (i % 4) as u32), 24)
    }
}

/// The 32 quants of piece J of a K-quant super-block at p, in the qp order (kquant_scalar::piece
/// without the offsets).
#[inline(always)]
unsafe fn k_quants<const K: u8, const J: usize>(p: *const u8) -> [v128; 4] {
    let (n, k, j) = (J / 4, (J % 4) as u32, J as u32);
    match K {
        Q2_K => fields(p.add(16 + 32 * n), 2 * k, 2, 0),
        Q3_K => or4(fields(p.add(32 + 32 * n), 2 * k, 2, 0), fields(p, j, 1, 2)),
        Q4_K => fields(p.add(16 + 32 * (J / 2)), 4 * (j % 2), 4, 0),
        Q5_K => or4(fields(p.add(48 + 32 * (J / 2)), 4 * (j % 2), 4, 0), fields(p.add(16), j, 1, 4)),
        _ => or4(fields(p.add(64 * n + 32 * (J % 2)), 4 * (k / 2), 4, 0), fields(p.add(128 + 32 * n), 2 * k, 2, 4)),
    }
}

/// Piece J of super-block sb for every token of the tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn piece<const K: u8, const J: usize>(p: &[*const u8; 4], sc: &Scales, acts: &Acts, sb: usize, t0: usize, t1: usize, av: &mut [v128; TT]) {
    let nb = acts.cols / 32;
    let b = sb * 8 + J;
    let u = p.map(|r| k_quants::<K, J>(r));
    let per32 = K == Q4_K || K == Q5_K;
    // Integer scales and mins of the two halves, 4 rows each.
    let (s, m) = match K {
        Q2_K => {
            let (b0, b1) = (sc.byte(2 * J), sc.byte(2 * J + 1));
            let low = |v: v128| v128_and(v, u32x4_splat(15));
            ([low(b0), low(b1)], [u32x4_shr(b0, 4), u32x4_shr(b1, 4)])
        }
        Q3_K => ([i32x4_sub(sc.byte(2 * J), i32x4_splat(32)), i32x4_sub(sc.byte(2 * J + 1), i32x4_splat(32))], [i32x4_splat(0); 2]),
        Q4_K | Q5_K => ([sc.byte(J); 2], [sc.byte(8 + J); 2]),
        _ => ([sc.signed_byte(2 * J), sc.signed_byte(2 * J + 1)], [i32x4_splat(0); 2]),
    };
    for (t, a) in av.iter_mut().enumerate().take(t1 - t0) {
        let tt = t0 + t;
        let k = tt * nb + b;
        let x = acts4(acts, tt, b);
        let d = u.map(|ui| dots(&ui, &x));
        let sum = *acts.sum.get_unchecked(k);
        let (int, mins) = if per32 {
            let isum = hsum4(d.map(|(h0, h1)| i32x4_add(h0, h1)));
            (i32x4_mul(isum, s[0]), i32x4_mul(m[0], i32x4_splat(sum)))
        } else {
            let (mut h0, mut h1) = (hsum4(d.map(|h| h.0)), hsum4(d.map(|h| h.1)));
            let sum0 = *acts.sum16.get_unchecked(k);
            let offset = match K {
                Q3_K => 4,
                Q6_K => 32,
                _ => 0,
            };
            if offset != 0 {
                h0 = i32x4_sub(h0, i32x4_splat(offset * sum0));
                h1 = i32x4_sub(h1, i32x4_splat(offset * (sum - sum0)));
            }
            let mins = i32x4_add(i32x4_mul(m[0], i32x4_splat(sum0)), i32x4_mul(m[1], i32x4_splat(sum - sum0)));
            (i32x4_add(i32x4_mul(h0, s[0]), i32x4_mul(h1, s[1])), mins)
        };
        let dx = *acts.d.get_unchecked(k);
        let mut v = update(*a, sc.d, dx, int, sc.dmin, 0.0, false);
        if K == Q2_K || per32 {
            v = f32x4_sub(v, f32x4_mul(f32x4_mul(sc.dmin, f32x4_splat(dx)), f32x4_convert_i32x4(mins)));
        }
        *a = v;
    }
}

unsafe fn k_tile<const K: u8>(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    let rb = w.row_bytes();
    let base = w.data.as_ptr().add(row0 * rb);
    let mut av = [f32x4_splat(0.0); TT];
    for sb in 0..acts.cols / 256 {
        let p = rows4(base, rb, sb * w.ty.block_bytes());
        let sc = Scales::new::<K>(&p);
        piece::<K, 0>(&p, &sc, acts, sb, t0, t1, &mut av);
        piece::<K, 1>(&p, &sc, acts, sb, t0, t1, &mut av);
        piece::<K, 2>(&p, &sc, acts, sb, t0, t1, &mut av);
        piece::<K, 3>(&p, &sc, acts, sb, t0, t1, &mut av);
        piece::<K, 4>(&p, &sc, acts, sb, t0, t1, &mut av);
        piece::<K, 5>(&p, &sc, acts, sb, t0, t1, &mut av);
        piece::<K, 6>(&p, &sc, acts, sb, t0, t1, &mut av);
        piece::<K, 7>(&p, &sc, acts, sb, t0, t1, &mut av);
    }
    for (a, v) in acc.iter_mut().zip(&av).take(t1 - t0) {
        v128_store(a.as_mut_ptr() as *mut v128, *v);
    }
}
