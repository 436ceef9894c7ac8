//! A self-test that runs inside whatever build it is compiled into (native, wasm simd128, wasm
//! relaxed-simd, threaded or not): a representative subset of tests/cpu_kernels.rs, well under a
//! second. Each case compares the best instruction set with the f64 reference (cpu::ops) within
//! a bound derived from the arithmetic, and with the scalar path bit for bit. `digest` hashes
//! every result: it must be the same string in every build (native, wasm, relaxed); the native
//! test pins it (tests/cpu_kernels.rs, SELFTEST_DIGEST).

use super::math::exp_f32;
use super::*;
use crate::cpu::ops;
use crate::quant::{dequantize, quantize, random_blocks};
use serde_json::json;

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * s).collect()
    }
}

struct Case {
    name: String,
    abs: f64,
    rel: f64,
    within: bool,
    bit_equal: bool,
    digest: u64,
}

/// Compares got with want under per-element bounds; bit-compares with the scalar result.
fn case(name: String, got: &[f32], scalar: &[f32], want: &[f32], bound: &dyn Fn(usize) -> f64) -> Case {
    let (mut abs, mut rel, mut within) = (0f64, 0f64, got.len() == want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = if g == w { 0.0 } else { (g as f64 - w as f64).abs() };
        abs = abs.max(e);
        rel = rel.max(e / (w as f64).abs().max(1e-30));
        within &= e <= bound(i) || g == w || (g.is_nan() && w.is_nan());
    }
    let bit_equal = got.len() == scalar.len() && got.iter().zip(scalar).all(|(a, b)| a.to_bits() == b.to_bits());
    // FNV-1a over the result bits: equal digests across builds mean bit-identical results.
    let digest = got.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| (h ^ v.to_bits() as u64).wrapping_mul(0x100_0000_01b3));
    Case { name, abs, rel, within, bit_equal, digest }
}

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// The min part b of each element of w (w = a - b; the kernels add a and b apart, so their
/// rounding scales with |a| + |b| <= |w| + 2|b|): what the blocks dequantise to with their scale
/// d zeroed. 0 for the types without mins.
fn min_terms(ty: GgmlType, wq: &[u8], n: usize) -> Vec<f32> {
    let d_at = match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => 0,
        GgmlType::Q2_K => 80,
        _ => return vec![0.0; n],
    };
    let mut no_d = wq.to_vec();
    for blk in no_d.chunks_exact_mut(ty.block_bytes()) {
        blk[d_at..d_at + 2].fill(0);
    }
    dequantize(ty, &no_d, n).unwrap()
}

/// out = 0.25 + W·x (Accumulate) with the best instruction set, scalar, and `pool`'s threads.
fn matmul_case(isa: Isa, pool: &Pool, one: &Pool, w: QMatrix, x: &[f32], tokens: usize) -> Case {
    let (ty, rows, cols) = (w.ty, w.rows, w.cols);
    let wf = dequantize(ty, w.data, rows * cols).unwrap();
    let mins = min_terms(ty, w.data, rows * cols);
    let mut acts = Acts::new();
    acts.prepare(x, tokens, cols);
    let run = |isa: Isa, pool: &Pool| {
        let mut out = vec![0.25f32; tokens * rows];
        matmul_with(isa, pool, &acts, &mut [Product { w, out: &mut out, epilogue: Epilogue::Accumulate }]);
        out
    };
    let (got, sc, threaded) = (run(isa, one), run(Isa::Scalar, one), run(isa, pool));
    let want: Vec<f32> = ops::matmul(x, &wf, rows, cols).iter().map(|v| v + 0.25).collect();
    // Bound: activation rounding (amax/32766 per element of a block, quantised types only)
    // times sum |w|, plus (2*blocks + 8) f32 roundings of sum (|w| + 2|b|)*|x| (see
    // tests/cpu_kernels.rs).
    let bound = |i: usize| {
        let (t, r) = (i / rows, i % rows);
        let (xr, wr, br) = (&x[t * cols..][..cols], &wf[r * cols..][..cols], &mins[r * cols..][..cols]);
        let mut b = 0.0;
        for ((xb, wb), bb) in xr.chunks(32).zip(wr.chunks(32)).zip(br.chunks(32)) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let quant = if ty.is_float() { 0.0 } else { amax / 32766.0 * 1.001 };
            let terms = wb.iter().zip(bb).zip(xb);
            b += terms
                .map(|((&w, &m), &x)| (w as f64).abs() * quant + (w.abs() + 2.0 * m.abs()) as f64 * (x as f64).abs() * (2.0 * cols as f64 / 32.0 + 8.0) * U)
                .sum::<f64>();
        }
        b + 0.5 * U
    };
    let mut c = case(format!("matmul_{}", ty.name()), &got, &sc, &want, &bound);
    c.bit_equal &= got == threaded;
    c
}

/// Runs the checks on a 1-thread pool.
pub fn selftest() -> String {
    selftest_pool(&Pool::new(1))
}

/// Runs the checks with `pool` (threaded builds: the results must equal the 1-thread ones too).
pub fn selftest_pool(pool: &Pool) -> String {
    let isa = Isa::best();
    let one = Pool::new(1);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cases = Vec::new();
    // Matrix products: rows with a 4-row tail, quantised and float (cols not a multiple of 16);
    // the Q5 and K-quant types as random valid blocks (K-quants: 2 super-blocks per row), with
    // activations from their own generator so that the classic cases keep their data.
    let mut krng = Rng(0x2545_F491_4F6C_DD1D);
    for ty in GgmlType::ALL {
        let (rows, tokens) = (37, 3);
        let (cols, wq, x) = if GgmlType::CLASSIC.contains(&ty) {
            let cols = if ty.is_float() { 88 } else { 96 };
            let wq = quantize(ty, &rng.vec(rows * cols, 0.5)).unwrap();
            (cols, wq, rng.vec(tokens * cols, 2.0))
        } else {
            let cols = if ty.is_k_quant() { 512 } else { 96 };
            (cols, random_blocks(ty, rows * cols, 0.5, ty.id() as u64).unwrap(), krng.vec(tokens * cols, 2.0))
        };
        cases.push(matmul_case(isa, pool, &one, QMatrix { ty, rows, cols, data: &wq }, &x, tokens));
    }
    // SwiGLU on Q4_1.
    {
        let (rows, cols, tokens) = (36, 64, 2);
        let gq = quantize(GgmlType::Q4_1, &rng.vec(rows * cols, 0.5)).unwrap();
        let uq = quantize(GgmlType::Q4_1, &rng.vec(rows * cols, 0.5)).unwrap();
        let x = rng.vec(tokens * cols, 1.0);
        let mut acts = Acts::new();
        acts.prepare(&x, tokens, cols);
        fn m(d: &[u8], rows: usize, cols: usize) -> QMatrix<'_> {
            QMatrix { ty: GgmlType::Q4_1, rows, cols, data: d }
        }
        let run = |isa: Isa, pool: &Pool| {
            let mut out = vec![0f32; tokens * rows];
            matmul_swiglu_with(isa, pool, &acts, m(&gq, rows, cols), m(&uq, rows, cols), &mut out);
            out
        };
        let (got, sc, threaded) = (run(isa, &one), run(Isa::Scalar, &one), run(isa, pool));
        let g = ops::matmul(&x, &dequantize(GgmlType::Q4_1, &gq, rows * cols).unwrap(), rows, cols);
        let u = ops::matmul(&x, &dequantize(GgmlType::Q4_1, &uq, rows * cols).unwrap(), rows, cols);
        let want = ops::swiglu(&g, &u);
        let mut c = case("swiglu_Q4_1".into(), &got, &sc, &want, &|i| 2e-3 * (want[i] as f64).abs() + 2e-3);
        c.bit_equal &= got == threaded;
        cases.push(c);
    }
    // Attention, GQA 3:1, f32 and f16 caches.
    for ty in [KvType::F32, KvType::F16] {
        let (nh, nkv, hd, pos0, tokens) = (6, 2, 32, 5, 3);
        let (qd, kvd, len) = (nh * hd, nkv * hd, pos0 + tokens);
        let q = rng.vec(tokens * qd, 1.0);
        let (k, v) = (rng.vec(len * kvd, 1.0), rng.vec(len * kvd, 1.0));
        let mut cache = KvCache::new(ty, 16, kvd);
        for p in 0..len {
            cache.write(p, &k[p * kvd..][..kvd], &v[p * kvd..][..kvd]);
        }
        let rounded = |x: &[f32]| -> Vec<f32> { x.iter().map(|&e| if ty == KvType::F16 { half::f16::from_f32(e).to_f32() } else { e }).collect() };
        let (kr, vr) = (rounded(&k), rounded(&v));
        let want: Vec<f32> = (0..tokens).flat_map(|t| ops::attention(&q[t * qd..][..qd], &kr, &vr, pos0 + t + 1, nh, nkv, hd)).collect();
        let run = |isa: Isa, pool: &Pool| {
            let mut out = vec![0f32; tokens * qd];
            attention_with(isa, pool, &q, &cache, pos0, tokens, nh, nkv, hd, &mut out);
            out
        };
        let (got, sc, threaded) = (run(isa, &one), run(Isa::Scalar, &one), run(isa, pool));
        let mut c = case(format!("attention_{ty:?}"), &got, &sc, &want, &|_| 1e-5);
        c.bit_equal &= got == threaded;
        cases.push(c);
    }
    // exp over its whole range (vs f64), SIMD vs scalar.
    {
        let xs: Vec<f32> = (0..4000).map(|i| -110.0 + i as f32 * 0.05).collect();
        let mut got = xs.clone();
        super::dispatch::exp_sub(isa, &mut got, 0.0);
        let sc: Vec<f32> = xs.iter().map(|&x| exp_f32(x)).collect();
        let want: Vec<f32> = xs.iter().map(|&x| if x < -87.0 { 0.0 } else { (x as f64).exp() as f32 }).collect();
        cases.push(case("exp".into(), &got, &sc, &want, &|i| 2.5 * f32::EPSILON as f64 * (want[i] as f64).abs() + 1.5e-45));
    }
    // Top-k candidates and log-sum-exp vs the sampler's mirror.
    {
        let mut logits = rng.vec(10000, 8.0);
        logits[17] = f32::NAN;
        logits[4000] = logits[3];
        let hist = [3u32, 3, 99, 4000, 123456];
        let params = crate::sampler::SamplingParams { temperature: 2.0, top_k: 0, repeat_penalty: 1.3, repeat_last_n: 64, ..Default::default() };
        let (want, wlse) = crate::sampler::candidates_from_logits(&logits, &hist, &params, 40);
        let run = |pool: &Pool| top_candidates_with(isa, pool, &logits, &hist, 1.3, 0.5, 40);
        let (got, lse) = run(&one);
        let (tgot, tlse) = run(pool);
        let (sgot, slse) = top_candidates_with(Isa::Scalar, &one, &logits, &hist, 1.3, 0.5, 40);
        let same = got == want;
        let bit = got == sgot && lse.to_bits() == slse.to_bits() && got == tgot && lse.to_bits() == tlse.to_bits();
        let mut c = case("top_candidates".into(), &[lse], &[if bit { lse } else { f32::NAN }], &[wlse], &|_| 1e-5 * wlse.abs() as f64);
        c.within &= same;
        cases.push(c);
    }
    // RMSNorm (bit-exact with the reference) and RoPE.
    {
        let (x, w) = (rng.vec(576, 3.0), rng.vec(576, 1.0));
        let mut got = vec![0f32; 576];
        rmsnorm(&x, &w, 1e-5, &mut got);
        let want = ops::rmsnorm(&x, &w, 1e-5);
        cases.push(case("rmsnorm".into(), &got, &got, &want, &|_| 0.0));
        let rope = Rope::new(64, 10000.0, 1000);
        let x = rng.vec(3 * 64, 1.0);
        let mut got = x.clone();
        rope.apply(&mut got, 3, 777);
        let mut want = x.clone();
        ops::rope(&mut want, 3, 64, 777, 10000.0);
        cases.push(case("rope".into(), &got, &got, &want, &|i| 4.0 * U * (x[i].abs() + x[i ^ 1].abs()) as f64 + 1e-7));
    }
    let ok = cases.iter().all(|c| c.within && c.bit_equal);
    let digest = cases.iter().fold(0u64, |h, c| h.rotate_left(7) ^ c.digest);
    let cases: Vec<_> = cases
        .iter()
        .map(|c| json!({"name": c.name, "max_abs_err": c.abs, "max_rel_err": c.rel, "bit_equal_scalar": c.bit_equal, "within_bound": c.within}))
        .collect();
    json!({"ok": ok, "simd": isa.name(), "threads": pool.threads(), "digest": format!("{digest:016x}"), "cases": cases}).to_string()
}
