//! x86_64 AVX2 + F16C kernels (chosen at run time by `Isa::best`). Each mirrors scalar.rs.
//!
//! Quantised tile (4 rows): a block's 32 quants are widened to two vectors of 16 i16 (Q4 nibbles
//! 0..15, the -8 of Q4_0 is applied to the integer sum), `madd_epi16` against the i16
//! activations gives 8 exact i32 partial sums per row, a hadd tree turns the 4 rows' partials
//! into one i32x4 of block sums, and the float update runs on the 4 rows at once.

use std::arch::x86_64::*;

use super::math::{EXP_HI, EXP_LO, EXP_P, LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC};
use super::scalar::{self, TT};
use super::{Acts, GgmlType, QMatrix};

const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q4_1: u8 = 2;

/// acc[t-t0][i] = w[row0+i]·x[t], i < 4.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn q_tile4(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    match w.ty {
        GgmlType::Q8_0 => q_tile::<Q8_0>(w, row0, acts, t0, t1, acc),
        GgmlType::Q4_0 => q_tile::<Q4_0>(w, row0, acts, t0, t1, acc),
        GgmlType::Q4_1 => q_tile::<Q4_1>(w, row0, acts, t0, t1, acc),
        _ => super::kquant_avx2::q_tile4(w, row0, acts, t0, t1, acc),
    }
}

#[inline(always)]
unsafe fn rd16(p: *const u8) -> i16 {
    (p as *const i16).read_unaligned()
}

/// The 32 quants of a block as i16: (elements 0..16, elements 16..32).
#[inline(always)]
unsafe fn unpack<const K: u8>(q: *const u8) -> (__m256i, __m256i) {
    if K == Q8_0 {
        (_mm256_cvtepi8_epi16(_mm_loadu_si128(q as *const __m128i)), _mm256_cvtepi8_epi16(_mm_loadu_si128(q.add(16) as *const __m128i)))
    } else {
        let z = _mm256_cvtepu8_epi16(_mm_loadu_si128(q as *const __m128i));
        (_mm256_and_si256(z, _mm256_set1_epi16(15)), _mm256_srli_epi16(z, 4))
    }
}

/// [sum(a), sum(b), sum(c), sum(d)] of four i32x8.
#[inline(always)]
unsafe fn hsum4(s: [__m256i; 4]) -> __m128i {
    let ab = _mm256_hadd_epi32(s[0], s[1]);
    let cd = _mm256_hadd_epi32(s[2], s[3]);
    let abcd = _mm256_hadd_epi32(ab, cd);
    _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1))
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn q_tile<const K: u8>(w: &QMatrix, row0: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    let (cols, nb) = (acts.cols, acts.cols / 32);
    let bb = w.ty.block_bytes();
    let rb = w.row_bytes();
    let qoff = if K == Q4_1 { 4 } else { 2 };
    let base = w.data.as_ptr().add(row0 * rb);
    let nt = t1 - t0;
    let mut av = [_mm_setzero_ps(); TT];
    for b in 0..nb {
        let p = [base.add(b * bb), base.add(rb + b * bb), base.add(2 * rb + b * bb), base.add(3 * rb + b * bb)];
        let mut lo = [_mm256_setzero_si256(); 4];
        let mut hi = [_mm256_setzero_si256(); 4];
        for i in 0..4 {
            (lo[i], hi[i]) = unpack::<K>(p[i].add(qoff));
        }
        let dw = _mm_cvtph_ps(_mm_setr_epi16(rd16(p[0]), rd16(p[1]), rd16(p[2]), rd16(p[3]), 0, 0, 0, 0));
        let mw = if K == Q4_1 {
            _mm_cvtph_ps(_mm_setr_epi16(rd16(p[0].add(2)), rd16(p[1].add(2)), rd16(p[2].add(2)), rd16(p[3].add(2)), 0, 0, 0, 0))
        } else {
            _mm_setzero_ps()
        };
        for (t, a) in av.iter_mut().enumerate().take(nt) {
            let tt = t0 + t;
            let xq = acts.q.as_ptr().add(tt * cols + b * 32) as *const __m256i;
            let (x0, x1) = (_mm256_loadu_si256(xq), _mm256_loadu_si256(xq.add(1)));
            let mut s = [_mm256_setzero_si256(); 4];
            for i in 0..4 {
                s[i] = _mm256_add_epi32(_mm256_madd_epi16(lo[i], x0), _mm256_madd_epi16(hi[i], x1));
            }
            let mut isum = hsum4(s);
            if K == Q4_0 {
                isum = _mm_sub_epi32(isum, _mm_set1_epi32(8 * *acts.sum.get_unchecked(tt * nb + b)));
            }
            let dx = _mm_set1_ps(*acts.d.get_unchecked(tt * nb + b));
            let mut v = _mm_add_ps(*a, _mm_mul_ps(_mm_mul_ps(dw, dx), _mm_cvtepi32_ps(isum)));
            if K == Q4_1 {
                v = _mm_add_ps(v, _mm_mul_ps(mw, _mm_set1_ps(*acts.sx.get_unchecked(tt * nb + b))));
            }
            *a = v;
        }
    }
    for t in 0..nt {
        _mm_storeu_ps(acc[t].as_mut_ptr(), av[t]);
    }
}

/// 16 consecutive elements (c..c+16) of a float row as f32 lanes 0..8, 8..16.
#[inline(always)]
unsafe fn load16<const T: u8>(w: *const u8, c: usize) -> (__m256, __m256) {
    match T {
        0 => (_mm256_loadu_ps(w.add(4 * c) as *const f32), _mm256_loadu_ps(w.add(4 * c + 32) as *const f32)),
        1 => {
            let p = w.add(2 * c) as *const __m128i;
            (_mm256_cvtph_ps(_mm_loadu_si128(p)), _mm256_cvtph_ps(_mm_loadu_si128(p.add(1))))
        }
        _ => {
            let p = w.add(2 * c) as *const __m128i;
            let f = |v: __m128i| _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
            (f(_mm_loadu_si128(p)), f(_mm_loadu_si128(p.add(1))))
        }
    }
}

const fn float_code(ty: GgmlType) -> u8 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        _ => 2,
    }
}

#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn dot(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    match float_code(ty) {
        0 => dot_t::<0>(ty, w, x),
        1 => dot_t::<1>(ty, w, x),
        _ => dot_t::<2>(ty, w, x),
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn dot_t<const T: u8>(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    debug_assert!(w.len() >= x.len() * if T == 0 { 4 } else { 2 });
    let n16 = x.len() / 16 * 16;
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    for c in (0..n16).step_by(16) {
        let (w0, w1) = load16::<T>(wp, c);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(w0, _mm256_loadu_ps(xp.add(c))));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(w1, _mm256_loadu_ps(xp.add(c + 8))));
    }
    let mut l = [0f32; 16];
    _mm256_storeu_ps(l.as_mut_ptr(), a0);
    _mm256_storeu_ps(l.as_mut_ptr().add(8), a1);
    scalar::dot_lanes(ty, w, x, n16, &mut l);
    scalar::reduce16(&l)
}

#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn axpy(ty: GgmlType, a: f32, v: &[u8], acc: &mut [f32]) {
    let n16 = acc.len() / 16 * 16;
    let av = _mm256_set1_ps(a);
    let (vp, op) = (v.as_ptr(), acc.as_mut_ptr());
    for c in (0..n16).step_by(16) {
        let (v0, v1) = match float_code(ty) {
            0 => load16::<0>(vp, c),
            1 => load16::<1>(vp, c),
            _ => load16::<2>(vp, c),
        };
        _mm256_storeu_ps(op.add(c), _mm256_add_ps(_mm256_loadu_ps(op.add(c)), _mm256_mul_ps(av, v0)));
        _mm256_storeu_ps(op.add(c + 8), _mm256_add_ps(_mm256_loadu_ps(op.add(c + 8)), _mm256_mul_ps(av, v1)));
    }
    scalar::axpy_from(ty, a, v, acc, n16);
}

/// exp of 8 lanes, operation for operation math::exp_f32.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    // x < LO (ordered: false for NaN) gives 0 at the end; max(LO, x) is `LO > x ? LO : x`,
    // min(HI, x) is `HI < x ? HI : x`: NaN passes through, as in scalar.
    let under = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
    let x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_LO), x));
    let magic = _mm256_set1_ps(ROUND_MAGIC);
    let n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), magic), magic);
    let r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI))), _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO)));
    let mut p = _mm256_set1_ps(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(c));
    }
    let e = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0));
    let ni = _mm256_cvtps_epi32(n);
    let n1 = _mm256_srai_epi32(ni, 1);
    let n2 = _mm256_sub_epi32(ni, n1);
    let bias = _mm256_set1_epi32(127);
    let s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    let s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    _mm256_andnot_ps(under, _mm256_mul_ps(_mm256_mul_ps(e, s1), s2))
}

#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn exp_sub(xs: &mut [f32], m: f32) {
    let n8 = xs.len() / 8 * 8;
    let mv = _mm256_set1_ps(m);
    let p = xs.as_mut_ptr();
    for c in (0..n8).step_by(8) {
        _mm256_storeu_ps(p.add(c), exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(c)), mv)));
    }
    scalar::exp_sub(&mut xs[n8..], m);
}
