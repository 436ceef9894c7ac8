//! x86_64 AVX2 tiles (4 rows x up to TT tokens) for the Q5 types and the K-quants; each returns
//! exactly what kquant_scalar.rs returns.
//!
//! Per 32-element piece, each row's quants are unpacked to 32 bytes (0..63) in element order by
//! 16-bit shifts and byte masks (whatever a shift moves across a byte boundary is outside the
//! mask), then widened to i16 by `unpacklo/hi_epi8`, which interleave per 128-bit lane:
//! [0..8, 16..24] and [8..16, 24..32]; `Acts::qx` holds the activations in that order. So after
//! `madd_epi16` the low 128-bit lane holds the first 16-element half's partial sums and the high
//! lane the second's, and a hadd tree over 4 rows yields [half 0 of rows 0..3 | half 1 of rows
//! 0..3]: one `mullo_epi32` applies the per-16 scales of Q2_K, Q3_K and Q6_K. The types' offsets
//! (q - 16, q - 4, q - 32) are taken off the integer sums as offset * the half's activation sum;
//! the scales multiply the sums after the tree (once per token, not once per weight).

use std::arch::x86_64::*;

use super::scalar::TT;
use super::{Acts, GgmlType, QMatrix};

const Q5_0: u8 = 0;
const Q5_1: u8 = 1;
const Q2_K: u8 = 2;
const Q3_K: u8 = 3;
const Q4_K: u8 = 4;
const Q5_K: u8 = 5;
const Q6_K: u8 = 6;

/// acc[t-t0][i] = w[row0+i]·x[t], i < 4, for the Q5 and K-quant types.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q_tile4(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    match w.ty {
        GgmlType::Q5_0 => q5_tile::<Q5_0>(w, row0, acts, t0, t1, acc),
        GgmlType::Q5_1 => q5_tile::<Q5_1>(w, row0, acts, t0, t1, acc),
        GgmlType::Q2_K => k_tile::<Q2_K>(w, row0, acts, t0, t1, acc),
        GgmlType::Q3_K => k_tile::<Q3_K>(w, row0, acts, t0, t1, acc),
        GgmlType::Q4_K => k_tile::<Q4_K>(w, row0, acts, t0, t1, acc),
        GgmlType::Q5_K => k_tile::<Q5_K>(w, row0, acts, t0, t1, acc),
        GgmlType::Q6_K => k_tile::<Q6_K>(w, row0, acts, t0, t1, acc),
        _ => unreachable!("kquant_avx2 on {}", w.ty.name()),
    }
}

#[inline(always)]
unsafe fn rd16(p: *const u8) -> i16 {
    (p as *const i16).read_unaligned()
}

#[inline(always)]
unsafe fn rd32(p: *const u8) -> i32 {
    (p as *const i32).read_unaligned()
}

#[inline(always)]
unsafe fn ld(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Byte `off` of the same block in 4 consecutive rows.
#[inline(always)]
unsafe fn rows4(base: *const u8, row_bytes: usize, off: usize) -> [*const u8; 4] {
    [base.add(off), base.add(row_bytes + off), base.add(2 * row_bytes + off), base.add(3 * row_bytes + off)]
}

/// The f16 at byte `off` of 4 blocks, as f32x4.
#[inline(always)]
unsafe fn f16x4(p: &[*const u8; 4], off: usize) -> __m128 {
    _mm_cvtph_ps(_mm_setr_epi16(rd16(p[0].add(off)), rd16(p[1].add(off)), rd16(p[2].add(off)), rd16(p[3].add(off)), 0, 0, 0, 0))
}

/// 32 bytes (0..255) to two i16x16 in the order of Acts::qx.
#[inline(always)]
unsafe fn widen(v: __m256i) -> (__m256i, __m256i) {
    let z = _mm256_setzero_si256();
    (_mm256_unpacklo_epi8(v, z), _mm256_unpackhi_epi8(v, z))
}

/// Bits from..from+width of every byte, moved to bit `to`, the rest cleared (constant arguments:
/// the shifts compile to immediates).
#[inline(always)]
unsafe fn field(v: __m256i, from: usize, width: usize, to: usize) -> __m256i {
    let moved =
        if from >= to { _mm256_srl_epi16(v, _mm_cvtsi32_si128((from - to) as i32)) } else { _mm256_sll_epi16(v, _mm_cvtsi32_si128((to - from) as i32)) };
    _mm256_and_si256(moved, _mm256_set1_epi8((((1 << width) - 1) << to) as i8))
}

/// The 4 rows' piece sums with one token's activations (`xq`: 32 i16 in the Acts::qx order), as
/// [half 0 of rows 0..3 | half 1 of rows 0..3].
#[inline(always)]
unsafe fn halves4(u: &[(__m256i, __m256i); 4], xq: *const i16) -> __m256i {
    let x = xq as *const __m256i;
    let (x0, x1) = (_mm256_loadu_si256(x), _mm256_loadu_si256(x.add(1)));
    let mut s = [_mm256_setzero_si256(); 4];
    for i in 0..4 {
        s[i] = _mm256_add_epi32(_mm256_madd_epi16(u[i].0, x0), _mm256_madd_epi16(u[i].1, x1));
    }
    _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]))
}

#[inline(always)]
unsafe fn add_halves(v: __m256i) -> __m128i {
    _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1))
}

/// The 32 quants (0..31) of a Q5 block in element order, from its qh (u32) and qs[16] at `q`.
#[inline(always)]
unsafe fn q5_bytes(q: *const u8) -> __m256i {
    let qs = _mm_loadu_si128(q.add(4) as *const __m128i);
    let nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(15));
    // Byte j of `spread` is byte j/8 of qh, whose bit j%8 is element j's fifth bit.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(rd32(q)),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
    _mm256_or_si256(nibbles, high)
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn q5_tile<const K: u8>(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    let (cols, nb) = (acts.cols, acts.cols / 32);
    let (bb, rb) = (w.ty.block_bytes(), w.row_bytes());
    let qh_off = if K == Q5_1 { 4 } else { 2 };
    let base = w.data.as_ptr().add(row0 * rb);
    let mut av = [_mm_setzero_ps(); TT];
    for b in 0..nb {
        let p = rows4(base, rb, b * bb);
        let mut u = [(_mm256_setzero_si256(), _mm256_setzero_si256()); 4];
        for i in 0..4 {
            u[i] = widen(q5_bytes(p[i].add(qh_off)));
        }
        let dw = f16x4(&p, 0);
        let mw = if K == Q5_1 { f16x4(&p, 2) } else { _mm_setzero_ps() };
        for (t, a) in av.iter_mut().enumerate().take(t1 - t0) {
            let tt = t0 + t;
            let k = tt * nb + b;
            let mut isum = add_halves(halves4(&u, acts.qx.as_ptr().add(tt * cols + b * 32)));
            if K == Q5_0 {
                isum = _mm_sub_epi32(isum, _mm_set1_epi32(16 * *acts.sum.get_unchecked(k)));
            }
            let dx = _mm_set1_ps(*acts.d.get_unchecked(k));
            let mut v = _mm_add_ps(*a, _mm_mul_ps(_mm_mul_ps(dw, dx), _mm_cvtepi32_ps(isum)));
            if K == Q5_1 {
                v = _mm_add_ps(v, _mm_mul_ps(mw, _mm_set1_ps(*acts.sx.get_unchecked(k))));
            }
            *a = v;
        }
    }
    for (a, v) in acc.iter_mut().zip(&av).take(t1 - t0) {
        _mm_storeu_ps(a.as_mut_ptr(), *v);
    }
}

/// A super-block's scales for 4 rows: D and Dmin, and the integer scales and mins of its pieces
/// transposed so that one load gives a piece's: Q4_K/Q5_K bytes [piece][row], the per-16 types
/// bytes [piece][half][row] (so piece j's 8 bytes widen to [half 0 rows | half 1 rows]).
struct Scales {
    d: __m128,
    dmin: __m128,
    s: [i8; 64],
    m: [i8; 64],
}

/// 16 bytes of each of 4 rows to [byte index][row]: 4 vectors of 4 indices each.
#[inline(always)]
unsafe fn transpose_bytes(r: [__m128i; 4]) -> [__m128i; 4] {
    let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(r[0], r[1]), _mm_unpackhi_epi8(r[0], r[1]));
    let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(r[2], r[3]), _mm_unpackhi_epi8(r[2], r[3]));
    [_mm_unpacklo_epi16(ab_lo, cd_lo), _mm_unpackhi_epi16(ab_lo, cd_lo), _mm_unpacklo_epi16(ab_hi, cd_hi), _mm_unpackhi_epi16(ab_hi, cd_hi)]
}

/// Lane r holding the 4 bytes of row r -> [byte index][row].
#[inline(always)]
unsafe fn transpose_words(v: __m128i) -> __m128i {
    _mm_shuffle_epi8(v, _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15))
}

#[inline(always)]
unsafe fn store4(out: &mut [i8; 64], v: [__m128i; 4]) {
    for (i, x) in v.iter().enumerate() {
        _mm_storeu_si128(out.as_mut_ptr().add(16 * i) as *mut __m128i, *x);
    }
}

impl Scales {
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn new<const K: u8>(p: &[*const u8; 4]) -> Self {
        let mut sc = Scales { d: _mm_setzero_ps(), dmin: _mm_setzero_ps(), s: [0; 64], m: [0; 64] };
        let c = |v: u32| _mm_set1_epi32(v as i32);
        // Word k (bytes 4k..4k+4 from `off`) of each row's scale bytes, row r in lane r.
        let words =
            |off: usize| [0, 4, 8].map(|k| _mm_setr_epi32(rd32(p[0].add(off + k)), rd32(p[1].add(off + k)), rd32(p[2].add(off + k)), rd32(p[3].add(off + k))));
        let rows16 = |off: usize| p.map(|r| _mm_loadu_si128(r.add(off) as *const __m128i));
        match K {
            Q2_K => {
                let t = transpose_bytes(rows16(0));
                store4(&mut sc.s, t.map(|v| _mm_and_si128(v, _mm_set1_epi8(15))));
                store4(&mut sc.m, t.map(|v| _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15))));
                (sc.d, sc.dmin) = (f16x4(p, 80), f16x4(p, 82));
            }
            Q3_K => {
                // kquant_scalar::k3_scale_words on 4 rows at once, then minus the bias 32.
                let w = words(96);
                let low = |v: __m128i, shift: i32| _mm_and_si128(_mm_srl_epi32(v, _mm_cvtsi32_si128(shift)), c(0x0f0f_0f0f));
                let top = |shift: i32| _mm_slli_epi32(_mm_and_si128(_mm_srl_epi32(w[2], _mm_cvtsi32_si128(shift)), c(0x0303_0303)), 4);
                let v = [low(w[0], 0), low(w[1], 0), low(w[0], 4), low(w[1], 4)];
                let v = [0, 1, 2, 3].map(|i| _mm_sub_epi8(transpose_words(_mm_or_si128(v[i], top(2 * i as i32))), _mm_set1_epi8(32)));
                store4(&mut sc.s, v);
                sc.d = f16x4(p, 108);
            }
            Q4_K | Q5_K => {
                // kquant_scalar::k4_scale_words on 4 rows at once: [scales 0..4, 4..8, mins 0..4, 4..8].
                let w = words(4);
                let (low4, low6, top2) = (c(0x0f0f_0f0f), c(0x3f3f_3f3f), c(0x0303_0303));
                let top = |v: __m128i| _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(v, 6), top2), 4);
                let s = [_mm_and_si128(w[0], low6), _mm_or_si128(_mm_and_si128(w[2], low4), top(w[0]))];
                let m = [_mm_and_si128(w[1], low6), _mm_or_si128(_mm_and_si128(_mm_srli_epi32(w[2], 4), low4), top(w[1]))];
                let z = _mm_setzero_si128();
                store4(&mut sc.s, [transpose_words(s[0]), transpose_words(s[1]), z, z]);
                store4(&mut sc.m, [transpose_words(m[0]), transpose_words(m[1]), z, z]);
                (sc.d, sc.dmin) = (f16x4(p, 0), f16x4(p, 2));
            }
            _ => {
                store4(&mut sc.s, transpose_bytes(rows16(192)));
                sc.d = f16x4(p, 208);
            }
        }
        sc
    }
}

/// The 32 quants of piece J of a K-quant super-block at p, in element order (kquant_scalar::piece
/// without the offsets).
#[inline(always)]
unsafe fn k_bytes<const K: u8, const J: usize>(p: *const u8) -> __m256i {
    let (n, k) = (J / 4, J % 4);
    match K {
        Q2_K => field(ld(p.add(16 + 32 * n)), 2 * k, 2, 0),
        Q3_K => _mm256_or_si256(field(ld(p.add(32 + 32 * n)), 2 * k, 2, 0), field(ld(p), J, 1, 2)),
        Q4_K => field(ld(p.add(16 + 32 * (J / 2))), 4 * (J % 2), 4, 0),
        Q5_K => _mm256_or_si256(field(ld(p.add(48 + 32 * (J / 2))), 4 * (J % 2), 4, 0), field(ld(p.add(16)), J, 1, 4)),
        _ => _mm256_or_si256(field(ld(p.add(64 * n + 32 * (k % 2))), 4 * (k / 2), 4, 0), field(ld(p.add(128 + 32 * n)), 2 * k, 2, 4)),
    }
}

/// Piece J of super-block sb for every token of the tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn piece<const K: u8, const J: usize>(p: &[*const u8; 4], sc: &Scales, acts: &Acts, sb: usize, t0: usize, t1: usize, av: &mut [__m128; TT]) {
    let (cols, nb) = (acts.cols, acts.cols / 32);
    let b = sb * 8 + J;
    let mut u = [(_mm256_setzero_si256(), _mm256_setzero_si256()); 4];
    for i in 0..4 {
        u[i] = widen(k_bytes::<K, J>(p[i]));
    }
    let per32 = K == Q4_K || K == Q5_K;
    let (s4, m4) =
        (_mm_cvtepi8_epi32(_mm_loadu_si32(sc.s.as_ptr().add(4 * J) as *const u8)), _mm_cvtepi8_epi32(_mm_loadu_si32(sc.m.as_ptr().add(4 * J) as *const u8)));
    let (s8, m8) = (
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(sc.s.as_ptr().add(8 * J) as *const __m128i)),
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(sc.m.as_ptr().add(8 * J) as *const __m128i)),
    );
    for (t, a) in av.iter_mut().enumerate().take(t1 - t0) {
        let tt = t0 + t;
        let k = tt * nb + b;
        let h = halves4(&u, acts.qx.as_ptr().add(tt * cols + b * 32));
        let sum = *acts.sum.get_unchecked(k);
        let (int, mins) = if per32 {
            (_mm_mullo_epi32(add_halves(h), s4), _mm_mullo_epi32(m4, _mm_set1_epi32(sum)))
        } else {
            let sum0 = *acts.sum16.get_unchecked(k);
            let sums = _mm256_set_m128i(_mm_set1_epi32(sum - sum0), _mm_set1_epi32(sum0));
            let h = match K {
                Q3_K => _mm256_sub_epi32(h, _mm256_slli_epi32(sums, 2)),
                Q6_K => _mm256_sub_epi32(h, _mm256_slli_epi32(sums, 5)),
                _ => h,
            };
            let mins = if K == Q2_K { add_halves(_mm256_mullo_epi32(m8, sums)) } else { _mm_setzero_si128() };
            (add_halves(_mm256_mullo_epi32(h, s8)), mins)
        };
        let dx = _mm_set1_ps(*acts.d.get_unchecked(k));
        let mut v = _mm_add_ps(*a, _mm_mul_ps(_mm_mul_ps(sc.d, dx), _mm_cvtepi32_ps(int)));
        if K == Q2_K || per32 {
            v = _mm_sub_ps(v, _mm_mul_ps(_mm_mul_ps(sc.dmin, dx), _mm_cvtepi32_ps(mins)));
        }
        *a = v;
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn k_tile<const K: u8>(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    let rb = w.row_bytes();
    let base = w.data.as_ptr().add(row0 * rb);
    let mut av = [_mm_setzero_ps(); TT];
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
        _mm_storeu_ps(a.as_mut_ptr(), *v);
    }
}
