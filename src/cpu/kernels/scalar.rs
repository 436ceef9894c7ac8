//! The canonical arithmetic, in plain scalar code. Every SIMD kernel must return exactly what
//! these functions return (tests compare them bit for bit), and the tails that do not fill a SIMD
//! tile are computed here.

use super::math::{exp_f32, f16_to_f32};
use super::{Acts, GgmlType, QMatrix};
use crate::quant::bf16_to_f32;

/// Tokens per tile of the quantised kernels (accumulators live on the stack).
pub(crate) const TT: usize = 16;

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// The dot product of one quantised weight row with token t of `acts`:
/// per block b, isum = exact integer dot of the 32 quants with the 32 activation integers
/// (Q4_0's -8 applied as -8*sum(q)); then acc = acc + (d_w*d_x)*isum, and for Q4_1 also
/// acc = acc + m_w*(d_x*sum(q)).
/// The Q5 types and the K-quants: kquant_scalar.rs.
pub(crate) fn q_dot(ty: GgmlType, row: &[u8], acts: &Acts, t: usize) -> f32 {
    if !matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1) {
        return super::kquant_scalar::q_dot(ty, row, acts, t);
    }
    let nb = acts.cols / 32;
    let q = &acts.q[t * acts.cols..][..acts.cols];
    let (d, sx, sum) = (&acts.d[t * nb..][..nb], &acts.sx[t * nb..][..nb], &acts.sum[t * nb..][..nb]);
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(ty.block_bytes()).enumerate() {
        let qb = &q[b * 32..][..32];
        match ty {
            GgmlType::Q8_0 => {
                let isum: i32 = blk[2..34].iter().zip(qb).map(|(&w, &x)| w as i8 as i32 * x as i32).sum();
                acc += (f16_at(blk, 0) * d[b]) * isum as f32;
            }
            GgmlType::Q4_0 => {
                let isum = nibble_dot(&blk[2..18], qb) - 8 * sum[b];
                acc += (f16_at(blk, 0) * d[b]) * isum as f32;
            }
            GgmlType::Q4_1 => {
                let isum = nibble_dot(&blk[4..20], qb);
                acc += (f16_at(blk, 0) * d[b]) * isum as f32;
                acc += f16_at(blk, 2) * sx[b];
            }
            _ => unreachable!("q_dot: {} is handled above", ty.name()),
        }
    }
    acc
}

/// Low nibble of byte j is element j, high nibble element j+16.
#[inline]
fn nibble_dot(qs: &[u8], x: &[i16]) -> i32 {
    qs.iter().enumerate().map(|(j, &b)| (b & 15) as i32 * x[j] as i32 + (b >> 4) as i32 * x[j + 16] as i32).sum()
}

/// Rows row0..row0+n (n <= 4) for tokens t0..t1: acc[t-t0][i] = q_dot(row0+i, t).
pub(crate) fn q_tile(w: &QMatrix, row0: usize, n: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    for i in 0..n {
        let row = w.row(row0 + i);
        for (t, a) in (t0..t1).zip(acc.iter_mut()) {
            a[i] = q_dot(w.ty, row, acts, t);
        }
    }
}

/// Element c of a float row (F32, F16 or BF16 bytes).
#[inline]
pub(crate) fn float_at(ty: GgmlType, w: &[u8], c: usize) -> f32 {
    match ty {
        GgmlType::F32 => f32::from_le_bytes([w[4 * c], w[4 * c + 1], w[4 * c + 2], w[4 * c + 3]]),
        GgmlType::F16 => f16_at(w, 2 * c),
        GgmlType::BF16 => bf16_to_f32(u16::from_le_bytes([w[2 * c], w[2 * c + 1]])),
        _ => unreachable!("float_at on a block type"),
    }
}

/// The fixed reduction tree of the 16 lanes.
#[inline]
pub(crate) fn reduce16(l: &[f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = l[i] + l[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    let p = [q[0] + q[2], q[1] + q[3]];
    p[0] + p[1]
}

/// Float dot, canonical order: element c into lane c % 16 (l = l + w*x), then `reduce16`.
/// Used for float weights (x = activations) and attention scores (w = key row, x = query).
pub(crate) fn dot(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    let mut l = [0f32; 16];
    dot_lanes(ty, w, x, 0, &mut l);
    reduce16(&l)
}

/// Accumulates elements from..x.len() into the lanes (the SIMD kernels finish their tails here).
#[inline]
pub(crate) fn dot_lanes(ty: GgmlType, w: &[u8], x: &[f32], from: usize, l: &mut [f32; 16]) {
    for c in from..x.len() {
        l[c % 16] += float_at(ty, w, c) * x[c];
    }
}

/// acc[i] = acc[i] + a * v[i] (attention's weighted sum of values).
pub(crate) fn axpy(ty: GgmlType, a: f32, v: &[u8], acc: &mut [f32]) {
    axpy_from(ty, a, v, acc, 0)
}

#[inline]
pub(crate) fn axpy_from(ty: GgmlType, a: f32, v: &[u8], acc: &mut [f32], from: usize) {
    for (i, o) in acc.iter_mut().enumerate().skip(from) {
        *o += a * float_at(ty, v, i);
    }
}

/// xs[i] = exp(xs[i] - m)
pub(crate) fn exp_sub(xs: &mut [f32], m: f32) {
    for x in xs {
        *x = exp_f32(*x - m);
    }
}
