//! Matrix products over the pool: the row split, the tiles, the epilogues.
//!
//! All products of one call share the input and are split over the threads as one parallel
//! region. The rows of all products are laid end to end, weighted by their bytes, and cut into
//! `parts` contiguous ranges at multiples of 4 rows, so each range is whole 4-row tiles (the SIMD
//! kernels' unit) and q/k/v are balanced together. Each output is computed by exactly one thread,
//! so the thread count never changes a bit.
//!
//! Within a range: tiles of 4 weight rows x up to TT tokens. The tile's weights are unpacked once
//! per block and dotted with every token's activations (prefill reads each weight byte from
//! memory once); with one token (decode) each activation load serves 4 rows.

use super::math::silu;
use super::scalar::{self, TT};
use super::{dispatch, Acts, Epilogue, Isa, Pool, Product, QMatrix};

/// Parts per thread: more than one lets a thread that finished early take over work from one
/// that was descheduled (this machine is shared); the part-to-thread mapping changes no result.
const PARTS_PER_THREAD: usize = 2;

#[derive(Clone, Copy)]
enum Ep {
    Store,
    Accumulate,
    /// out = silu(w·x) * (w2·x)
    Swiglu,
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: parts write disjoint (token, row) outputs; the pool joins them before returning.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

struct Job<'a> {
    w: QMatrix<'a>,
    w2: Option<QMatrix<'a>>,
    out: OutPtr,
    ep: Ep,
}

/// out = W·x (or +=) for every product; one parallel region.
pub fn matmul(pool: &Pool, acts: &Acts, products: &mut [Product<'_>]) {
    matmul_with(Isa::best(), pool, acts, products)
}

/// [`matmul`] with a chosen instruction set (tests compare them).
pub fn matmul_with(isa: Isa, pool: &Pool, acts: &Acts, products: &mut [Product<'_>]) {
    let jobs: Vec<Job> = products
        .iter_mut()
        .map(|p| {
            check(acts, &p.w, p.out.len());
            let ep = match p.epilogue {
                Epilogue::Store => Ep::Store,
                Epilogue::Accumulate => Ep::Accumulate,
            };
            Job { w: p.w, w2: None, out: OutPtr(p.out.as_mut_ptr()), ep }
        })
        .collect();
    run(isa, pool, acts, &jobs);
}

/// out[t, r] = silu(gate[r]·x[t]) * (up[r]·x[t]); one parallel region.
pub fn matmul_swiglu(pool: &Pool, acts: &Acts, gate: QMatrix<'_>, up: QMatrix<'_>, out: &mut [f32]) {
    matmul_swiglu_with(Isa::best(), pool, acts, gate, up, out)
}

pub fn matmul_swiglu_with(isa: Isa, pool: &Pool, acts: &Acts, gate: QMatrix<'_>, up: QMatrix<'_>, out: &mut [f32]) {
    check(acts, &gate, out.len());
    check(acts, &up, out.len());
    assert_eq!((gate.rows, gate.cols), (up.rows, up.cols), "matmul_swiglu: gate and up shapes differ");
    run(isa, pool, acts, &[Job { w: gate, w2: Some(up), out: OutPtr(out.as_mut_ptr()), ep: Ep::Swiglu }]);
}

fn check(acts: &Acts, w: &QMatrix, out_len: usize) {
    w.check();
    assert_eq!(w.cols, acts.cols, "matmul: weight has {} columns, activations {}", w.cols, acts.cols);
    assert_eq!(out_len, acts.tokens * w.rows, "matmul: output is not [tokens, rows]");
    assert!(!w.is_quantised() || acts.quantised(), "matmul: activations not quantised");
}

fn run(isa: Isa, pool: &Pool, acts: &Acts, jobs: &[Job]) {
    assert!(Isa::available().contains(&isa), "{isa:?} is not available in this build/machine");
    if acts.tokens == 0 {
        return;
    }
    let cost = |j: &Job| j.w.row_bytes() * if j.w2.is_some() { 2 } else { 1 };
    let total: usize = jobs.iter().map(|j| j.w.rows * cost(j)).sum();
    // Small products are not worth a synchronisation (about 2 µs): ~64 KB of weights per part.
    // Whole multiples of the thread count, so that no thread gets one part more than another.
    let by_size = (total * acts.tokens / 65536).max(1);
    let th = pool.threads();
    let parts = if by_size < th { by_size } else { th * PARTS_PER_THREAD.min(by_size / th) };
    // Cut point p (in bytes) -> row of job j, rounded to a multiple of 4 rows.
    let cut = |j: usize, start: usize, p: usize| -> usize {
        let x = total * p / parts;
        let rows = jobs[j].w.rows;
        if x <= start {
            return 0;
        }
        let r = (x - start) / cost(&jobs[j]);
        if r >= rows {
            return rows; // the whole job, tail rows included
        }
        (((r + 2) / 4) * 4).min(rows)
    };
    pool.run(parts, &|p| {
        let mut start = 0;
        for (j, job) in jobs.iter().enumerate() {
            let (r0, r1) = (cut(j, start, p), cut(j, start, p + 1));
            if r0 < r1 {
                rows(isa, acts, job, r0, r1);
            }
            start += job.w.rows * cost(job);
        }
    });
}

/// Rows r0..r1 of one job for every token.
fn rows(isa: Isa, acts: &Acts, job: &Job, r0: usize, r1: usize) {
    let w = &job.w;
    let mut acc = [[0f32; 4]; TT];
    let mut acc2 = [[0f32; 4]; TT];
    let mut r = r0;
    while r < r1 {
        let n = (r1 - r).min(4);
        let mut t0 = 0;
        while t0 < acts.tokens {
            let t1 = (t0 + TT).min(acts.tokens);
            tile(isa, w, r, n, acts, t0, t1, &mut acc);
            if let Some(w2) = &job.w2 {
                tile(isa, w2, r, n, acts, t0, t1, &mut acc2);
            }
            for t in t0..t1 {
                for i in 0..n {
                    // SAFETY: (t, r+i) is inside out ([tokens, rows], checked) and only this
                    // part writes it.
                    unsafe {
                        let o = job.out.0.add(t * w.rows + r + i);
                        let v = acc[t - t0][i];
                        *o = match job.ep {
                            Ep::Store => v,
                            Ep::Accumulate => *o + v,
                            Ep::Swiglu => silu(v) * acc2[t - t0][i],
                        };
                    }
                }
            }
            t0 = t1;
        }
        r += n;
    }
}

/// acc[t-t0][i] = w[r+i]·x[t] for i < n (n <= 4), t in t0..t1.
#[allow(clippy::too_many_arguments)]
fn tile(isa: Isa, w: &QMatrix, r: usize, n: usize, acts: &Acts, t0: usize, t1: usize, acc: &mut [[f32; 4]; TT]) {
    if !w.is_quantised() {
        for i in 0..n {
            let row = w.row(r + i);
            for (t, a) in (t0..t1).zip(acc.iter_mut()) {
                a[i] = dispatch::dot(isa, w.ty, row, &acts.x[t * acts.cols..][..acts.cols]);
            }
        }
        return;
    }
    if n < 4 {
        return scalar::q_tile(w, r, n, acts, t0, t1, acc);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { super::avx2::q_tile4(w, r, acts, t0, t1, acc) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => super::wasm::q_tile4(w, r, acts, t0, t1, acc),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
        Isa::Relaxed => super::relaxed::q_tile4(w, r, acts, t0, t1, acc),
        _ => scalar::q_tile(w, r, 4, acts, t0, t1, acc),
    }
}
