//! CPU backend kernels (src/cpu/kernels) against the f64 references of cpu::ops and the sampler,
//! on random data with awkward shapes; every instruction set available here bit for bit against
//! the scalar path; 1, 2 and 3 threads bit for bit.
//!
//! Error bounds come from the arithmetic (u = 2^-24, the f32 unit roundoff):
//! - quantised weights: the activations are rounded to 15-bit integers per block of 32, an error
//!   of at most amax_block/32766 per element (d = amax/16383, q rounded to nearest; x1.001 for
//!   the rounding of d itself), so |err| <= sum_c |w_c| * amax(block of c)/32766 * 1.001. The
//!   integer dots are exact; the float part rounds d_w*d_x, isum, the product and the sum (and
//!   the Q4_1 min term twice more) per block, so at most (2*blocks + 8) u * S, with S = sum of
//!   the magnitudes of the terms (|d q| and |m| apart for Q4_1, whose dequantised reference
//!   weight is itself rounded once; the Q5 and K-quant types likewise per 32-element piece, with
//!   |w| + 2|b| for an element w = a - b whose min term b the kernels add apart).
//! - float weights: 16 lanes of cols/16 sequential additions and a 4-level tree:
//!   (cols/16 + 8) u * sum |w x|. The same formula as above with blocks = cols/32.
//! - the reference rounds its f64 result to f32 once more: 0.5 ulp of the result.
//!   These bounds are tight enough that dropping a term (e.g. Q4_1's min) fails by orders of
//!   magnitude.
mod common;

use common::Rng;
use mobilellm_web::cpu::kernels::*;
use mobilellm_web::cpu::ops;
use mobilellm_web::quant::{dequantize, quantize, random_blocks};
use mobilellm_web::sampler::{candidates_from_logits, SamplingParams};

const U: f64 = 1.0 / (1u64 << 24) as f64;

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

struct Weights {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
    deq: Vec<f32>,
    /// |term magnitudes| per element: |w| (or |d q| + |m| for Q4_1).
    mag: Vec<f32>,
}

/// Byte offset of the f16 scale d (D) in a block of a Q5 or K-quant type.
fn d_offset(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q2_K => 80,
        GgmlType::Q3_K => 108,
        GgmlType::Q6_K => 208,
        _ => 0,
    }
}

/// Random weights: the classic types quantised from uniform values, the Q5 and K-quant types as
/// random valid blocks (elements within about ±scale).
fn weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize, scale: f32) -> Weights {
    let bytes = if GgmlType::CLASSIC.contains(&ty) {
        quantize(ty, &rng.vec(rows * cols, scale)).unwrap()
    } else {
        random_blocks(ty, rows * cols, scale, rng.next_u64()).unwrap()
    };
    weights_from(ty, rows, cols, bytes)
}

fn weights_from(ty: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> Weights {
    let deq = dequantize(ty, &bytes, rows * cols).unwrap();
    let mag = if ty == GgmlType::Q4_1 {
        bytes
            .chunks_exact(20)
            .flat_map(|b| (0..32).map(move |j| (b[4 + j % 16] >> (4 * (j / 16)) & 15) as f32 * f16_at(b, 0).abs() + f16_at(b, 2).abs()))
            .collect()
    } else if GgmlType::CLASSIC.contains(&ty) {
        deq.iter().map(|v| v.abs()).collect()
    } else {
        // w = a - b with a the scaled quant and b the min term (0 for types without mins), which
        // the kernels add separately: |a| + |b| <= |w| + 2|b|, and b is what the block
        // dequantises to with D = 0 (Q5_1: q*0 + m; Q2_K, Q4_K, Q5_K: 0*sc*q - Dmin*m).
        let mut no_d = bytes.clone();
        for blk in no_d.chunks_exact_mut(ty.block_bytes()) {
            blk[d_offset(ty)..d_offset(ty) + 2].fill(0);
        }
        let b = dequantize(ty, &no_d, rows * cols).unwrap();
        deq.iter().zip(&b).map(|(w, b)| w.abs() + 2.0 * b.abs()).collect()
    };
    Weights { ty, rows, cols, bytes, deq, mag }
}

impl Weights {
    fn m(&self) -> QMatrix<'_> {
        QMatrix { ty: self.ty, rows: self.rows, cols: self.cols, data: &self.bytes }
    }

    /// The bound of the module comment for output (t, r).
    fn bound(&self, x: &[f32], t: usize, r: usize) -> f64 {
        let cols = self.cols;
        let (xr, wr, mr) = (&x[t * cols..][..cols], &self.deq[r * cols..][..cols], &self.mag[r * cols..][..cols]);
        let quantised = !self.ty.is_float();
        let mut b = 0.0;
        for ((xb, wb), mb) in xr.chunks(32).zip(wr.chunks(32)).zip(mr.chunks(32)) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let q = if quantised { amax / 32766.0 * 1.001 } else { 0.0 };
            for ((&x, &w), &m) in xb.iter().zip(wb).zip(mb) {
                b += (w as f64).abs() * q + (m as f64) * (x as f64).abs() * (cols as f64 / 16.0 + 8.0) * U;
            }
        }
        b
    }
}

fn check_close(what: &str, got: &[f32], want: &[f32], bound: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w as f64).abs();
        let b = bound(i) + 0.5 * U * (w as f64).abs() + 1e-30;
        assert!(e <= b, "{what}: element {i}: got {g}, want {w}, err {e:.3e} > bound {b:.3e}");
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// The same product with every instruction set and 1, 2, 3 threads: bit-identical.
fn matmul_all(acts: &Acts, w: QMatrix, init: &[f32], ep: Epilogue, pools: &[Pool]) -> Vec<f32> {
    let mut first: Option<Vec<f32>> = None;
    for isa in Isa::available() {
        for pool in pools {
            let mut out = init.to_vec();
            matmul_with(isa, pool, acts, &mut [Product { w, out: &mut out, epilogue: ep }]);
            match &first {
                None => first = Some(out),
                Some(f) => assert_eq!(bits(f), bits(&out), "{} {:?} with {} threads differs from scalar/1 thread", w.ty.name(), isa, pool.threads()),
            }
        }
    }
    first.unwrap()
}

fn pools() -> Vec<Pool> {
    vec![Pool::new(1), Pool::new(2), Pool::new(3)]
}

/// The selftest's digest of all its results. The same value was obtained in wasm (simd128 and
/// relaxed-simd builds, in Chromium): a change here means the canonical arithmetic changed, and
/// the browser and native would disagree unless every build changes with it.
const SELFTEST_DIGEST: &str = "25527a22199411e0";

#[test]
fn selftest_is_ok() {
    let report = selftest_pool(&Pool::new(2));
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["ok"], true, "{report}");
    assert_eq!(v["digest"], SELFTEST_DIGEST, "{report}");
    assert_eq!(selftest(), report.replace("\"threads\":2", "\"threads\":1"));
    assert_eq!(v["simd"], Isa::best().name());
    assert!(v["cases"].as_array().unwrap().len() >= 10);
}

#[test]
fn matmul_every_type_and_shape() {
    let pools = pools();
    let mut rng = Rng(7);
    for ty in GgmlType::ALL {
        let col_set: &[usize] = match ty.block_len() {
            256 => &[256, 512, 1536],
            32 if !GgmlType::CLASSIC.contains(&ty) => &[32, 96, 576],
            32 => &[32, 64, 576, 1536],
            _ => &[16, 40, 96, 100, 576],
        };
        for &cols in col_set {
            for rows in [1, 5, 37] {
                let w = weights(&mut rng, ty, rows, cols, 0.3);
                for tokens in [1, 3, 7, 33] {
                    let x = rng.vec(tokens * cols, 2.0);
                    let mut acts = Acts::new();
                    acts.prepare(&x, tokens, cols);
                    let got = matmul_all(&acts, w.m(), &vec![0.0; tokens * rows], Epilogue::Store, &pools);
                    let want = ops::matmul(&x, &w.deq, rows, cols);
                    let what = format!("{} [{rows}x{cols}] x {tokens}", ty.name());
                    check_close(&what, &got, &want, |i| w.bound(&x, i / rows, i % rows));
                }
            }
        }
    }
}

/// Blocks at the corners of each Q5 / K-quant format (every byte 0x00, 0xFF, 0x80, 0x7F or 0x55,
/// then fixed f16 scales) against activations at full scale (all |x| equal, so every quantised
/// activation is +-16383): the integer sums reach their bounds, e.g. Q6_K's 16383 * 2^17 with
/// every quant 0 (w = -32) and every scale -128, or Q5_K's 63 * 31 * 16383 * 32 with all bits
/// set. Exact (overflow checks are on in this build), identical everywhere, within the bound.
#[test]
fn q5_and_k_quant_extremes() {
    let pools = pools();
    let (rows, cols, tokens) = (5, 512, 3);
    // Token 0: all +1, token 1: all -1, token 2: alternating.
    let x: Vec<f32> = (0..tokens * cols).map(|i| [1.0, -1.0, if i % 2 == 0 { 1.0 } else { -1.0 }][i / cols]).collect();
    let mut acts = Acts::new();
    acts.prepare(&x, tokens, cols);
    for ty in GgmlType::K_AND_Q5 {
        for fill in [0x00u8, 0xFF, 0x80, 0x7F, 0x55] {
            let mut bytes = vec![fill; ty.bytes_for((rows * cols) as u64).unwrap() as usize];
            for blk in bytes.chunks_exact_mut(ty.block_bytes()) {
                if ty == GgmlType::Q6_K && fill == 0x80 {
                    blk[..192].fill(0);
                }
                blk[d_offset(ty)..d_offset(ty) + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                let min_at = match ty {
                    GgmlType::Q2_K => Some(82),
                    GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => Some(2),
                    _ => None,
                };
                if let Some(at) = min_at {
                    blk[at..at + 2].copy_from_slice(&half::f16::from_f32(0.02).to_le_bytes());
                }
            }
            let w = weights_from(ty, rows, cols, bytes);
            let got = matmul_all(&acts, w.m(), &vec![0.0; tokens * rows], Epilogue::Store, &pools);
            let want = ops::matmul(&x, &w.deq, rows, cols);
            check_close(&format!("{} filled with {fill:#04x}", ty.name()), &got, &want, |i| w.bound(&x, i / rows, i % rows));
        }
    }
}

/// Several products in one region (q, k, v of a layer, of different types), Accumulate adds.
#[test]
fn matmul_several_products_accumulate() {
    let mut rng = Rng(11);
    several_products(&mut rng, 576, [(GgmlType::Q4_1, 576), (GgmlType::Q8_0, 194), (GgmlType::Q4_0, 190)]);
    // A Q4_K_M layer's mix: K-quants next to their Q5_0 fallback.
    several_products(&mut rng, 512, [(GgmlType::Q4_K, 256), (GgmlType::Q6_K, 130), (GgmlType::Q5_0, 66)]);
}

fn several_products(rng: &mut Rng, cols: usize, types: [(GgmlType, usize); 3]) {
    let pools = pools();
    let tokens = 3;
    let ws = types.map(|(ty, rows)| weights(rng, ty, rows, cols, 0.2));
    let x = rng.vec(tokens * cols, 1.0);
    let mut acts = Acts::new();
    acts.prepare(&x, tokens, cols);
    let init: Vec<Vec<f32>> = ws.iter().map(|w| rng.vec(tokens * w.rows, 1.0)).collect();
    let singles: Vec<Vec<f32>> = ws.iter().zip(&init).map(|(w, i)| matmul_all(&acts, w.m(), i, Epilogue::Accumulate, &pools)).collect();
    for pool in &pools {
        for isa in Isa::available() {
            let mut outs = init.clone();
            let [o0, o1, o2] = &mut outs[..] else { unreachable!() };
            let mut prods = [
                Product { w: ws[0].m(), out: o0, epilogue: Epilogue::Accumulate },
                Product { w: ws[1].m(), out: o1, epilogue: Epilogue::Accumulate },
                Product { w: ws[2].m(), out: o2, epilogue: Epilogue::Accumulate },
            ];
            matmul_with(isa, pool, &acts, &mut prods);
            for (o, s) in outs.iter().zip(&singles) {
                assert_eq!(bits(o), bits(s), "{isa:?}, {} threads", pool.threads());
            }
        }
    }
    for ((w, i), got) in ws.iter().zip(&init).zip(&singles) {
        let want: Vec<f32> = ops::matmul(&x, &w.deq, w.rows, cols).iter().zip(i).map(|(a, b)| a + b).collect();
        check_close(w.ty.name(), got, &want, |k| w.bound(&x, k / w.rows, k % w.rows) + U * (want[k] as f64).abs());
    }
}

#[test]
fn swiglu_matches_reference() {
    let pools = pools();
    let mut rng = Rng(13);
    for ty in [GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K] {
        let shapes = if ty.is_k_quant() { [(1536, 512, 1), (37, 256, 7), (13, 512, 33)] } else { [(1536, 576, 1), (37, 64, 7), (13, 96, 33)] };
        for (rows, cols, tokens) in shapes {
            let (g, u) = (weights(&mut rng, ty, rows, cols, 0.2), weights(&mut rng, ty, rows, cols, 0.2));
            let x = rng.vec(tokens * cols, 1.0);
            let mut acts = Acts::new();
            acts.prepare(&x, tokens, cols);
            let mut first: Option<Vec<f32>> = None;
            for isa in Isa::available() {
                for pool in &pools {
                    let mut out = vec![0f32; tokens * rows];
                    matmul_swiglu_with(isa, pool, &acts, g.m(), u.m(), &mut out);
                    match &first {
                        None => first = Some(out),
                        Some(f) => assert_eq!(bits(f), bits(&out), "{ty:?} {isa:?} {} threads", pool.threads()),
                    }
                }
            }
            let got = first.unwrap();
            let (gr, ur) = (ops::matmul(&x, &g.deq, rows, cols), ops::matmul(&x, &u.deq, rows, cols));
            let want = ops::swiglu(&gr, &ur);
            // d silu/dg <= 1.1: err <= 1.1|u| eg + |silu(g)| eu, + exp (2 ulp), division, product.
            check_close(&format!("swiglu {ty:?} {rows}x{cols}x{tokens}"), &got, &want, |i| {
                let (t, r) = (i / rows, i % rows);
                let sg = ops::silu(gr[i]) as f64;
                1.1 * (ur[i] as f64).abs() * g.bound(&x, t, r) + sg.abs() * u.bound(&x, t, r) + 8.0 * U * (want[i] as f64).abs()
            });
        }
    }
}

#[test]
fn attention_matches_reference() {
    let pools = pools();
    let mut rng = Rng(17);
    for ty in [KvType::F32, KvType::F16] {
        for (nh, nkv) in [(4, 4), (9, 3), (8, 2)] {
            for hd in [64, 32] {
                for (pos0, tokens) in [(0, 1), (0, 7), (20, 3), (40, 1)] {
                    let (qd, kvd, len) = (nh * hd, nkv * hd, pos0 + tokens);
                    let q = rng.vec(tokens * qd, 1.0);
                    let (k, v) = (rng.vec(len * kvd, 1.0), rng.vec(len * kvd, 1.0));
                    let mut cache = KvCache::new(ty, 64, kvd);
                    assert_eq!(cache.bytes(), 2 * 64 * kvd * if ty == KvType::F32 { 4 } else { 2 });
                    for p in 0..len {
                        cache.write(p, &k[p * kvd..][..kvd], &v[p * kvd..][..kvd]);
                    }
                    // The reference sees the cache's rounding (f16 RNE), which is not an error.
                    let round = |x: &[f32]| -> Vec<f32> { x.iter().map(|&e| if ty == KvType::F16 { half::f16::from_f32(e).to_f32() } else { e }).collect() };
                    let (kr, vr) = (round(&k), round(&v));
                    let want: Vec<f32> = (0..tokens).flat_map(|t| ops::attention(&q[t * qd..][..qd], &kr, &vr, pos0 + t + 1, nh, nkv, hd)).collect();
                    let mut first: Option<Vec<f32>> = None;
                    for isa in Isa::available() {
                        for pool in &pools {
                            let mut out = vec![0f32; tokens * qd];
                            attention_with(isa, pool, &q, &cache, pos0, tokens, nh, nkv, hd, &mut out);
                            match &first {
                                None => first = Some(out),
                                Some(f) => assert_eq!(bits(f), bits(&out), "{ty:?} {isa:?} {} threads", pool.threads()),
                            }
                        }
                    }
                    // Scores: (hd/16 + 8) u sum|q k| * scale ~ 1e-6 with unit data; a score error
                    // d moves each softmax weight by a factor within 1 +- 2d; the weighted sum
                    // of |v| <= 1 adds len u. So 1e-5 absolute (+ 1e-5 relative) is ~5x slack.
                    check_close(&format!("attention {ty:?} {nh}/{nkv} hd {hd} pos0 {pos0} x{tokens}"), &first.unwrap(), &want, |i| {
                        1e-5 + 1e-5 * (want[i] as f64).abs()
                    });
                }
            }
        }
    }
}

#[test]
fn rmsnorm_equals_reference_bit_for_bit() {
    let mut rng = Rng(19);
    for n in [1, 64, 576, 1536] {
        let (x, w) = (rng.vec(n, 5.0), rng.vec(n, 1.0));
        let mut out = vec![0f32; n];
        rmsnorm(&x, &w, 1e-5, &mut out);
        assert_eq!(bits(&out), bits(&ops::rmsnorm(&x, &w, 1e-5)), "n = {n}");
    }
}

#[test]
fn rope_matches_reference() {
    let mut rng = Rng(23);
    for (hd, base) in [(64, 100000.0), (32, 10000.0)] {
        let rope = Rope::new(hd, base, 8192);
        for pos in [0, 1, 2, 31, 500, 8191] {
            let x = rng.vec(9 * hd, 2.0);
            let mut got = x.clone();
            rope.apply(&mut got, 9, pos);
            let mut want = x.clone();
            ops::rope(&mut want, 9, hd, pos, base);
            // f32 table (cos, sin rounded: u each) and 3 f32 roundings per output.
            check_close(&format!("rope hd {hd} pos {pos}"), &got, &want, |i| 4.0 * U * (x[i].abs() + x[i ^ 1].abs()) as f64);
        }
    }
}

#[test]
fn exp_is_accurate_and_the_same_everywhere() {
    let xs: Vec<f32> =
        (0..200_000).map(|i| -105.0 + i as f32 * 0.000975).chain([0.0, -0.0, 88.7, 89.5, -87.0, -103.5, f32::INFINITY, f32::NEG_INFINITY]).collect();
    for isa in Isa::available() {
        let mut got = xs.clone();
        // exp_sub(x, 0) = exp(x), through the instruction set's kernel.
        math::exp_sub_with(isa, &mut got, 0.0);
        for (&x, &g) in xs.iter().zip(&got) {
            assert_eq!(g.to_bits(), math::exp_f32(x).to_bits(), "{isa:?} exp({x})");
            if x < -87.0 {
                assert_eq!(g, 0.0, "exp({x}) flushes to 0 below -87");
                continue;
            }
            let want = (x as f64).exp();
            if want as f32 == g {
                continue;
            }
            let ulp = (want as f32).abs() as f64 * f32::EPSILON as f64;
            assert!(((g as f64) - want).abs() <= 2.0 * ulp, "exp({x}) = {g}, want {want}");
        }
    }
    assert!(math::exp_f32(f32::NAN).is_nan());
    for x in [-100.0f32, -5.0, -0.5, 0.0, 0.5, 5.0, 100.0] {
        assert!((math::silu(x) - ops::silu(x)).abs() <= 2.0 * f32::EPSILON * ops::silu(x).abs(), "silu({x})");
    }
    for x in [1e-300, 1e-5, 0.3, 1.0, 2.0, 1e5, 1e300] {
        assert!((math::ln_f64(x) - x.ln()).abs() <= 4.0 * f64::EPSILON * x.ln().abs().max(1.0), "ln({x})");
        assert!((math::exp_f64(x.ln()) - x).abs() <= 1e-12 * x, "exp(ln {x})");
    }
    for x in [0.0, 0.1, 1.0, 3.0, 100.0, 8191.0] {
        let (s, c) = math::sin_cos_f64(x);
        assert!((s - x.sin()).abs() < 1e-14 && (c - x.cos()).abs() < 1e-14, "sincos({x})");
    }
}

#[test]
fn top_candidates_matches_sampler() {
    let pools = pools();
    let mut rng = Rng(29);
    for (n, k, penalty, temp) in [
        (49152, 1, 1.0, 0.0),
        (49152, 40, 1.3, 0.7),
        (10000, 256, 1.1, 1.5),
        (5000, 600, 1.0, 1.0),
        (300, 300, 1.2, 2.0),
        (7, 10, 1.0, 1.0),
        (4097, 0, 1.0, 1.0),
    ] {
        let mut logits = rng.vec(n, 10.0);
        // Ties, NaN, infinities, signed zeros, penalised ids.
        for i in (0..n).step_by(97) {
            logits[i] = logits[n / 2];
        }
        logits[n - 1] = f32::NAN;
        if n > 100 {
            logits[5] = 0.0;
            logits[6] = -0.0;
            logits[50] = f32::NEG_INFINITY;
        }
        let history: Vec<u32> = (0..30).map(|_| rng.below(n as u64 + 10) as u32).chain([n as u32 / 2, n as u32 / 2]).collect();
        let params = SamplingParams { temperature: temp, top_k: 0, repeat_penalty: penalty, repeat_last_n: history.len(), ..Default::default() };
        let inv_t = if params.is_greedy() { 1.0 } else { 1.0 / temp };
        let (want, wlse) = candidates_from_logits(&logits, &history, &params, k);
        for isa in Isa::available() {
            for pool in &pools {
                let (got, lse) = top_candidates_with(isa, pool, &logits, &history, penalty, inv_t, k);
                assert_eq!(got, want, "n {n} k {k} {isa:?}");
                // f32 exp (<= 2 ulp) of differences rounded to f32 (<= 1 ulp of |l - m| <= 40).
                assert!((lse - wlse).abs() <= 1e-5 * wlse.abs().max(1.0), "lse {lse} vs {wlse}");
            }
        }
    }
    // Every logit -inf, or one +inf.
    let p = Pool::new(2);
    let all = vec![f32::NEG_INFINITY; 9000];
    let (c, lse) = top_candidates(&p, &all, &[], 1.0, 1.0, 3);
    assert_eq!((c.iter().map(|c| c.id).collect::<Vec<_>>(), lse), (vec![0, 1, 2], f32::NEG_INFINITY));
    let mut one = vec![0f32; 9000];
    one[8000] = f32::INFINITY;
    let (c, lse) = top_candidates(&p, &one, &[], 1.0, 1.0, 1);
    assert_eq!((c[0].id, lse), (8000, f32::INFINITY));
}

#[test]
fn pool_runs_every_part_exactly_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for threads in [1, 2, 3, 5] {
        let pool = Pool::new(threads);
        assert_eq!(pool.threads(), threads);
        for parts in [0, 1, 2, 3, 7, 100] {
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                pool.run(parts, &|p| {
                    hits[p].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
        // A nested run executes inline instead of deadlocking.
        let n = AtomicUsize::new(0);
        pool.run(4, &|_| {
            pool.run(3, &|_| {
                n.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(n.load(Ordering::Relaxed), 12);
    }
}

#[test]
fn external_pool_with_late_workers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (pool, shared) = Pool::new_external(3);
    let count = AtomicUsize::new(0);
    // No worker yet: the caller runs everything.
    pool.run(10, &|_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    let handles: Vec<_> = (1..3)
        .map(|i| {
            let s = shared.clone();
            std::thread::spawn(move || worker_loop(&s, i))
        })
        .collect();
    for _ in 0..1000 {
        pool.run(6, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Let the workers fall asleep, then wake them.
    std::thread::sleep(std::time::Duration::from_millis(50));
    pool.run(6, &|_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(count.load(Ordering::Relaxed), 10 + 6000 + 6);
    drop(pool);
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
#[should_panic(expected = "panicked on a worker")]
fn a_panicking_part_panics_the_caller() {
    let pool = Pool::new(2);
    pool.run(8, &|p| assert!(p != 5, "part 5"));
}

#[test]
fn dequantize_row_is_the_reference() {
    let mut rng = Rng(31);
    for ty in GgmlType::ALL {
        let cols = if ty.is_k_quant() { 512 } else { 64 };
        let w = weights(&mut rng, ty, 5, cols, 1.0);
        let mut row = vec![0f32; cols];
        w.m().dequantize_row(3, &mut row);
        assert_eq!(bits(&row), bits(&w.deq[3 * cols..4 * cols]), "{ty:?}");
    }
}
