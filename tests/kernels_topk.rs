//! The GPU sampling reduction (penalty, temperature, top-k, logsumexp) against a CPU mirror
//! written here: ids must match exactly (ties broken by smaller id) except where two adjusted
//! logits differ by float rounding only.

mod common;

use common::{gpus, Rng};
use mobilellm_web::gpu::ops::topk::{out_words_per_row, topk, TopkScratch};
use mobilellm_web::gpu::{Gpu, StepParams, TokenCount};
use mobilellm_web::sampler::{candidates_from_logits, SamplingParams};

struct Mirror {
    /// Logits after the penalty (what the GPU leaves in the buffer).
    penalised: Vec<f32>,
    /// After penalty and temperature.
    adjusted: Vec<f32>,
    top: Vec<(u32, f32)>,
    lse: f64,
}

fn mirror(row: &[f32], history: &[u32], penalty: f32, inv_t: f32, k: usize) -> Mirror {
    let mut penalised = row.to_vec();
    if penalty != 1.0 {
        for &id in history {
            let l = penalised[id as usize];
            penalised[id as usize] = if l > 0.0 { l / penalty } else { l * penalty };
        }
    }
    let adjusted: Vec<f32> = penalised.iter().map(|&l| l * inv_t).collect();
    let mut order: Vec<u32> = (0..row.len() as u32).collect();
    // total_cmp: -0 ranks below +0, as in the GPU's key order.
    order.sort_by(|&a, &b| adjusted[b as usize].total_cmp(&adjusted[a as usize]).then(a.cmp(&b)));
    let top = order.iter().take(k).map(|&i| (i, adjusted[i as usize])).collect();
    let max = adjusted.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + adjusted.iter().map(|&a| (a as f64 - max).exp()).sum::<f64>().ln();
    Mirror { penalised, adjusted, top, lse }
}

/// Logits of one kind: distinct random values, or values on a coarse grid (many exact ties),
/// with a few signed zeros mixed in.
fn logits(rng: &mut Rng, n: usize, ties: bool) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = rng.uniform() * 12.0;
            match (ties, i % 97) {
                (_, 5) => -0.0,
                (_, 6) => 0.0,
                (true, _) => (x * 4.0).round() / 4.0,
                (false, _) => x,
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check(gpu: &Gpu, vocab: u32, k: u32, rows: TokenCount, n_tokens: u32, ties: bool, penalty: f32, temperature: f32, seed: u64) {
    let mut rng = Rng(seed);
    let max_rows = 3usize;
    let n_rows = rows.resolve(&StepParams::new(0, n_tokens)) as usize;
    let data: Vec<f32> = (0..max_rows).flat_map(|_| logits(&mut rng, vocab as usize, ties)).collect();
    // Distinct history ids, some of them at the top of the distribution.
    let mut history: Vec<u32> = (0..vocab.min(64)).map(|_| rng.below(vocab as u64) as u32).collect();
    history.sort_unstable();
    history.dedup();
    let step = gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64);
    let lb = gpu.storage_buffer_init("logits", bytemuck::cast_slice(&data));
    let hb = gpu.storage_buffer_init("history", bytemuck::cast_slice(&history));
    let words = out_words_per_row(k) as usize;
    let out = gpu.storage_buffer("out", (max_rows * words * 4) as u64);
    let scratch = TopkScratch::new(gpu, vocab, k, max_rows as u32);
    let ops = topk(gpu, &step, &lb, vocab, &hb, k, rows, &scratch, &out);
    let mut params = StepParams::new(0, n_tokens);
    params.n_history = history.len() as u32;
    params.repeat_penalty = penalty;
    params.inv_temperature = 1.0 / temperature;
    gpu.run_ops(&ops.iter().collect::<Vec<_>>(), &params, &step);
    let got = pollster::block_on(gpu.read_buffer(&out, 0, (n_rows * words * 4) as u64)).unwrap();
    let got: &[u32] = bytemuck::cast_slice(&got);
    let after = pollster::block_on(gpu.read_f32(&lb, data.len())).unwrap();

    let what = format!("topk vocab {vocab} k {k} {rows:?} ties {ties} penalty {penalty} f16={}", gpu.f16);
    for r in 0..n_rows {
        let row = &data[r * vocab as usize..(r + 1) * vocab as usize];
        let m = mirror(row, &history, penalty, params.inv_temperature, k as usize);
        // Division may be correctly rounded or not (WGSL allows 2.5 ulp): compare within ulps.
        for (i, (&g, &w)) in after[r * vocab as usize..][..vocab as usize].iter().zip(&m.penalised).enumerate() {
            assert!((g - w).abs() <= 4e-7 * w.abs(), "{what}: row {r} penalised logit {i}: {g} vs {w}");
        }
        let list = &got[r * words..(r + 1) * words];
        for i in 0..k as usize {
            let (gid, glogit) = (list[2 * i], f32::from_bits(list[2 * i + 1]));
            if i >= vocab as usize {
                assert_eq!((gid, glogit), (u32::MAX, f32::NEG_INFINITY), "{what}: row {r} padding {i}");
                continue;
            }
            let (wid, wlogit) = m.top[i];
            assert!((glogit - wlogit).abs() <= 1e-6 * wlogit.abs(), "{what}: row {r} rank {i}: logit {glogit} vs {wlogit}");
            if gid != wid {
                // Only a near-tie (values apart by rounding) may swap ids; exact ties go to the
                // smaller id.
                let ga = m.adjusted[gid as usize];
                assert!(ga != wlogit && (ga - wlogit).abs() <= 1e-6 * wlogit.abs(), "{what}: row {r} rank {i}: id {gid} ({ga}) vs {wid} ({wlogit})");
            }
        }
        let lse = f32::from_bits(list[2 * k as usize]);
        assert!(((lse as f64) - m.lse).abs() <= 2e-6 * m.lse.abs().max(1.0), "{what}: row {r} lse {lse} vs {}", m.lse);
        assert_eq!(list[2 * k as usize + 1], 0);
    }
}

#[test]
fn topk_real_vocabularies() {
    for gpu in gpus() {
        for &vocab in &[49152u32, 32000] {
            for &k in &[1u32, 40, 256] {
                check(&gpu, vocab, k, TokenCount::One, 1, false, 1.0, 1.0, vocab as u64 + k as u64);
                check(&gpu, vocab, k, TokenCount::Step, 3, true, 1.3, 0.7, 7 + k as u64);
            }
        }
    }
}

#[test]
fn topk_odd_sizes_and_ties() {
    let gpu = &gpus()[0];
    // Below, at and just above one slice; below k (padding); a single token.
    let cases = [(4095u32, 255u32), (4096, 256), (4097, 1), (4097, 256), (100, 256), (100, 2), (1, 1), (1, 5), (12289, 2), (12289, 255)];
    for &(vocab, k) in &cases {
        check(gpu, vocab, k, TokenCount::Step, 2, true, 1.1, 1.0, vocab as u64 * 31 + k as u64);
        check(gpu, vocab, k, TokenCount::One, 2, false, 1.0, 2.0, vocab as u64 * 17 + k as u64);
    }
    // Many merge lists per workgroup with small k (k = 3 groups 1365 lists).
    check(gpu, 200_000, 3, TokenCount::Step, 3, true, 1.2, 0.9, 5);
    check(gpu, 200_000, 256, TokenCount::One, 1, false, 1.0, 1.0, 6);
}

/// With the penalty off the logits buffer must be untouched.
#[test]
fn topk_penalty_off_leaves_logits() {
    let gpu = &gpus()[0];
    check(gpu, 32000, 8, TokenCount::Step, 3, false, 1.0, 0.5, 9);
}

/// The GPU reduction of one row, as (id, logit) pairs and the logsumexp.
fn gpu_candidates(gpu: &Gpu, data: &[f32], history: &[u32], params: &SamplingParams, k: u32) -> (Vec<(u32, f32)>, f32) {
    let vocab = data.len() as u32;
    let step = gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64);
    let lb = gpu.storage_buffer_init("logits", bytemuck::cast_slice(data));
    let hb = gpu.storage_buffer_init("history", bytemuck::cast_slice(history));
    let out = gpu.storage_buffer("out", out_words_per_row(k) as u64 * 4);
    let scratch = TopkScratch::new(gpu, vocab, k, 1);
    let ops = topk(gpu, &step, &lb, vocab, &hb, k, TokenCount::One, &scratch, &out);
    let mut p = StepParams::new(0, 1);
    p.n_history = history.len() as u32;
    p.repeat_penalty = params.repeat_penalty;
    p.inv_temperature = 1.0 / params.temperature;
    gpu.run_ops(&ops.iter().collect::<Vec<_>>(), &p, &step);
    let got = pollster::block_on(gpu.read_buffer(&out, 0, out_words_per_row(k) as u64 * 4)).unwrap();
    let got: &[u32] = bytemuck::cast_slice(&got);
    let pairs = (0..k as usize).map(|i| (got[2 * i], f32::from_bits(got[2 * i + 1]))).collect();
    (pairs, f32::from_bits(got[2 * k as usize]))
}

/// The GPU reduction equals the sampler's CPU mirror (`candidates_from_logits`).
#[test]
fn topk_equals_sampler_mirror() {
    let gpu = &gpus()[0];
    let vocab = 49152u32;
    let k = 40u32;
    let mut rng = Rng(21);
    let data = logits(&mut rng, vocab as usize, true);
    let history: Vec<u32> = (0..64).map(|i| i * 761 % vocab).collect();
    let params = SamplingParams { temperature: 0.8, repeat_penalty: 1.15, repeat_last_n: 64, ..Default::default() };
    let (want, want_lse) = candidates_from_logits(&data, &history, &params, k as usize);
    let (got, lse) = gpu_candidates(gpu, &data, &history, &params, k);
    for (i, c) in want.iter().enumerate() {
        assert_eq!(got[i].0, c.id, "rank {i}");
        assert!((got[i].1 - c.logit).abs() <= 1e-6 * c.logit.abs(), "rank {i}");
    }
    assert!((lse - want_lse).abs() <= 2e-6 * want_lse.abs(), "lse {lse} vs {want_lse}");
}

/// NaN logits (a broken model, an overflow) rank as -inf on the GPU as in the CPU mirror: they
/// are never sampled and add nothing to the logsumexp.
#[test]
fn topk_ranks_nan_as_negative_infinity() {
    let gpu = &gpus()[0];
    let mut rng = Rng(5);
    let mut data = logits(&mut rng, 4096, false);
    let top = (0..data.len()).max_by(|&a, &b| data[a].total_cmp(&data[b])).unwrap();
    for i in [top, 0, 7, 4095] {
        data[i] = f32::NAN;
    }
    data[9] = f32::from_bits(0xffc0_0001); // a negative NaN with payload
    let params = SamplingParams { temperature: 1.0, repeat_penalty: 1.0, ..Default::default() };
    let (want, want_lse) = candidates_from_logits(&data, &[], &params, 16);
    let (got, lse) = gpu_candidates(gpu, &data, &[], &params, 16);
    for (i, c) in want.iter().enumerate() {
        assert_eq!(got[i].0, c.id, "rank {i}");
        assert!(!got[i].1.is_nan() && (got[i].1 - c.logit).abs() <= 1e-6 * c.logit.abs(), "rank {i}: {} vs {}", got[i].1, c.logit);
    }
    assert!(lse.is_finite() && (lse - want_lse).abs() <= 2e-6 * want_lse.abs(), "lse {lse} vs {want_lse}");
}
