//! Sampler: determinism per seed, sampling frequencies against the softmax (chi-square), exact
//! truncation sets for top-k / top-p / min-p, edge cases, and the CPU candidate reduction.

use std::collections::BTreeMap;

use mobilellm_web::sampler::{candidates_from_logits, Candidate, Sampler, SamplingParams};

/// Temperature 1 and every filter off: draws follow the softmax of the candidates.
fn plain(seed: u64) -> SamplingParams {
    SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, repeat_last_n: 64, seed }
}

/// Candidates with the given probabilities (ids 0..n, already descending) and the logsumexp of
/// a vocabulary whose remaining mass is 1 - sum(probs).
fn from_probs(probs: &[f64]) -> (Vec<Candidate>, f32) {
    let cands = probs.iter().enumerate().map(|(i, &p)| Candidate { id: i as u32, logit: p.ln() as f32 }).collect();
    (cands, 0.0)
}

fn counts(params: SamplingParams, cands: &[Candidate], lse: f32, n: usize) -> BTreeMap<u32, usize> {
    let mut s = Sampler::new(params);
    let mut m = BTreeMap::new();
    for _ in 0..n {
        *m.entry(s.sample(cands, lse)).or_insert(0) += 1;
    }
    m
}

fn ids(m: &BTreeMap<u32, usize>) -> Vec<u32> {
    m.keys().copied().collect()
}

/// Pearson's chi-square of observed counts against expected probabilities over ids 0..probs.len().
fn chi_square(m: &BTreeMap<u32, usize>, probs: &[f64], n: usize) -> f64 {
    assert!(m.keys().all(|&id| (id as usize) < probs.len()), "drew an id outside the candidates: {m:?}");
    probs
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let e = p * n as f64;
            let o = *m.get(&(i as u32)).unwrap_or(&0) as f64;
            (o - e) * (o - e) / e
        })
        .sum()
}

#[test]
fn same_seed_same_tokens_different_seed_different_tokens() {
    let (cands, lse) = from_probs(&[0.3, 0.25, 0.2, 0.15, 0.1]);
    let draw = |seed| {
        let mut s = Sampler::new(plain(seed));
        (0..200).map(|_| s.sample(&cands, lse)).collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
    assert_ne!(draw(0), draw(1));
}

#[test]
fn frequencies_follow_the_softmax() {
    // Logits straight from a small "vocabulary": the candidates are the whole vocabulary.
    let logits = [2.0f32, 1.5, 1.0, 0.3, 0.0, -0.5, -1.0, -3.0];
    let (cands, lse) = candidates_from_logits(&logits, &[], &plain(0), logits.len());
    let max = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let probs: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp() / z).collect();
    let n = 40_000;
    // 7 degrees of freedom: P(chi2 > 24.32) = 0.001. Fixed seeds, so this is deterministic; a
    // broken sampler (wrong weights, off-by-one in the walk, biased RNG) lands far above.
    for seed in [1u64, 2, 3, 42, 12345] {
        let m = counts(plain(seed), &cands, lse, n);
        let chi = chi_square(&m, &probs, n);
        assert!(chi < 24.32, "seed {seed}: chi-square {chi:.1} for {m:?}");
    }
    // The check has power: the distribution at temperature 1.3 must be rejected.
    let hot = SamplingParams { temperature: 1.3, ..plain(1) };
    let (hot_cands, hot_lse) = candidates_from_logits(&logits, &[], &hot, logits.len());
    let m = counts(hot, &hot_cands, hot_lse, n);
    assert!(chi_square(&m, &probs, n) > 100.0);
}

#[test]
fn renormalises_over_candidates_when_vocabulary_mass_is_elsewhere() {
    // The candidates hold 0.6 of the mass; with all filters off they are drawn in ratio 3:2:1.
    let probs = [0.3, 0.2, 0.1];
    let (cands, lse) = from_probs(&probs);
    let n = 30_000;
    let m = counts(plain(5), &cands, lse, n);
    let renorm: Vec<f64> = probs.iter().map(|p| p / 0.6).collect();
    // 2 degrees of freedom: P(chi2 > 13.8) = 0.001.
    assert!(chi_square(&m, &renorm, n) < 13.8, "{m:?}");
}

#[test]
fn top_k_keeps_exactly_the_k_best() {
    let (cands, lse) = from_probs(&[0.2, 0.18, 0.16, 0.14, 0.12, 0.1, 0.1]);
    for k in [1usize, 2, 3, 5] {
        let m = counts(SamplingParams { top_k: k, ..plain(3) }, &cands, lse, 5000);
        assert_eq!(ids(&m), (0..k as u32).collect::<Vec<_>>(), "top_k {k}");
    }
    // k larger than the candidate list: all of them.
    let m = counts(SamplingParams { top_k: 1000, ..plain(3) }, &cands, lse, 5000);
    assert_eq!(ids(&m), (0..7).collect::<Vec<_>>());
}

#[test]
fn top_p_keeps_the_shortest_prefix_reaching_p() {
    let (cands, lse) = from_probs(&[0.4, 0.3, 0.2, 0.1]);
    for (p, want) in [(0.0f32, 1u32), (0.35, 1), (0.45, 2), (0.65, 2), (0.75, 3), (0.95, 4)] {
        let m = counts(SamplingParams { top_p: p, ..plain(11) }, &cands, lse, 5000);
        assert_eq!(ids(&m), (0..want).collect::<Vec<_>>(), "top_p {p}");
    }
    // Probabilities are against the whole vocabulary: these candidates hold only 0.5 of it.
    let (cands, lse) = from_probs(&[0.2, 0.15, 0.1, 0.05]);
    for (p, want) in [(0.3f32, 2u32), (0.4, 3), (0.9, 4)] {
        let m = counts(SamplingParams { top_p: p, ..plain(11) }, &cands, lse, 5000);
        assert_eq!(ids(&m), (0..want).collect::<Vec<_>>(), "top_p {p} over a partial list");
    }
}

#[test]
fn min_p_is_relative_to_the_top_probability() {
    let (cands, lse) = from_probs(&[0.4, 0.3, 0.2, 0.1]);
    for (mp, want) in [(0.2f32, 4u32), (0.3, 3), (0.6, 2), (0.9, 1), (1.5, 1)] {
        let m = counts(SamplingParams { min_p: mp, ..plain(13) }, &cands, lse, 5000);
        assert_eq!(ids(&m), (0..want).collect::<Vec<_>>(), "min_p {mp}");
    }
    // Combined with top_k and top_p, the shortest cut wins.
    let combo = SamplingParams { top_k: 3, top_p: 0.95, min_p: 0.6, ..plain(13) };
    assert_eq!(ids(&counts(combo, &cands, lse, 5000)), vec![0, 1]);
    let combo = SamplingParams { top_k: 2, top_p: 0.95, min_p: 0.2, ..plain(13) };
    assert_eq!(ids(&counts(combo, &cands, lse, 5000)), vec![0, 1]);
}

#[test]
fn greedy_picks_the_largest_logit() {
    let cands = [Candidate { id: 9, logit: 1.0 }, Candidate { id: 4, logit: 3.0 }, Candidate { id: 2, logit: 3.0 }, Candidate { id: 1, logit: -2.0 }];
    // Unsorted input, tie between ids 4 and 2: the smaller id wins.
    let mut s = Sampler::new(SamplingParams::greedy());
    assert_eq!(s.sample(&cands, 5.0), 2);
    let mut s = Sampler::new(SamplingParams { temperature: 0.0, ..plain(1) });
    assert_eq!(s.sample(&cands, 5.0), 2);
    let mut s = Sampler::new(SamplingParams { top_k: 1, ..plain(1) });
    assert_eq!(s.sample(&cands, 5.0), 2);
    let mut s = Sampler::new(SamplingParams { temperature: f32::NAN, ..plain(1) });
    assert_eq!(s.sample(&cands, 5.0), 2);
}

#[test]
fn nan_inf_and_empty_candidates() {
    let mut s = Sampler::new(plain(21));
    assert_eq!(s.sample(&[], 0.0), 0);
    // NaN candidates are never drawn.
    let cands = [Candidate { id: 3, logit: f32::NAN }, Candidate { id: 5, logit: 0.0 }, Candidate { id: 6, logit: -0.5 }];
    for _ in 0..500 {
        assert_ne!(s.sample(&cands, f32::NAN), 3);
    }
    // Only NaN: the first id rather than a panic.
    assert_eq!(s.sample(&[Candidate { id: 8, logit: f32::NAN }], 0.0), 8);
    // A +inf logit is certain.
    let cands = [Candidate { id: 1, logit: 2.0 }, Candidate { id: 7, logit: f32::INFINITY }];
    for _ in 0..50 {
        assert_eq!(s.sample(&cands, f32::INFINITY), 7);
    }
    // -inf candidates have no mass; all -inf: the first (smallest id among equals).
    let cands = [Candidate { id: 1, logit: 0.0 }, Candidate { id: 2, logit: f32::NEG_INFINITY }];
    for _ in 0..200 {
        assert_eq!(s.sample(&cands, 0.0), 1);
    }
    let cands = [Candidate { id: 4, logit: f32::NEG_INFINITY }, Candidate { id: 2, logit: f32::NEG_INFINITY }];
    assert_eq!(s.sample(&cands, f32::NEG_INFINITY), 2);
    // A bogus logsumexp (below the candidates' own) does not break top_p: 0.5/0.5 split kept.
    let cands = [Candidate { id: 0, logit: 0.0 }, Candidate { id: 1, logit: 0.0 }];
    let m = counts(SamplingParams { top_p: 0.9, ..plain(2) }, &cands, -10.0, 2000);
    assert_eq!(ids(&m), vec![0, 1]);
}

#[test]
fn candidates_are_the_k_largest_with_logsumexp() {
    let logits = [0.5f32, 2.0, -1.0, 2.0, 3.0, 0.0];
    let (c, lse) = candidates_from_logits(&logits, &[], &SamplingParams::greedy(), 3);
    assert_eq!(c, vec![Candidate { id: 4, logit: 3.0 }, Candidate { id: 1, logit: 2.0 }, Candidate { id: 3, logit: 2.0 }]);
    let naive = logits.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln() as f32;
    assert!((lse - naive).abs() < 1e-6, "{lse} vs {naive}");
    // k beyond the vocabulary: every id, sorted.
    let (c, _) = candidates_from_logits(&logits, &[], &SamplingParams::greedy(), 100);
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), vec![4, 1, 3, 0, 5, 2]);
    let (c, _) = candidates_from_logits(&logits, &[], &SamplingParams::greedy(), 0);
    assert!(c.is_empty());
    // A large vocabulary: the selection agrees with a full sort.
    let big: Vec<f32> = (0..5000u32).map(|i| ((i.wrapping_mul(2654435761) >> 7) % 1000) as f32 * 0.01).collect();
    let (c, _) = candidates_from_logits(&big, &[], &SamplingParams::greedy(), 40);
    let mut all: Vec<u32> = (0..5000).collect();
    all.sort_by(|&a, &b| big[b as usize].total_cmp(&big[a as usize]).then(a.cmp(&b)));
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), all[..40].to_vec());
}

#[test]
fn penalty_and_temperature_in_the_reduction() {
    let logits = [2.0f32, -1.0, 1.0, 0.5];
    let params = SamplingParams { temperature: 0.5, repeat_penalty: 2.0, repeat_last_n: 3, ..plain(0) };
    // History window = last 3 = [1, 0, 1]: ids 0 and 1 penalised once each; id 3 is outside.
    let (c, lse) = candidates_from_logits(&logits, &[3, 1, 0, 1], &params, 4);
    // id 0: 2 / 2 (positive: divided), id 1: -1 * 2 (negative: multiplied); then / temperature.
    let want_adj = [2.0 / 2.0 / 0.5, -2.0 / 0.5, 1.0 / 0.5, 0.5 / 0.5];
    let by_id: BTreeMap<u32, f32> = c.iter().map(|c| (c.id, c.logit)).collect();
    for (id, w) in want_adj.iter().enumerate() {
        assert!((by_id[&(id as u32)] - w).abs() < 1e-6, "id {id}: {} vs {w}", by_id[&(id as u32)]);
    }
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), vec![0, 2, 3, 1]);
    let naive = want_adj.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln() as f32;
    assert!((lse - naive).abs() < 1e-5);
    // Greedy ignores the temperature but keeps the penalty; ids beyond the vocabulary are ignored.
    let g = SamplingParams { repeat_penalty: 4.0, ..SamplingParams::greedy() };
    let (c, _) = candidates_from_logits(&logits, &[0, 99], &g, 2);
    assert_eq!(c, vec![Candidate { id: 2, logit: 1.0 }, Candidate { id: 0, logit: 0.5 }]);
    // Equal adjusted logits: the smaller id first.
    let g = SamplingParams { repeat_penalty: 2.0, ..SamplingParams::greedy() };
    let (c, _) = candidates_from_logits(&logits, &[0], &g, 2);
    assert_eq!(c, vec![Candidate { id: 0, logit: 1.0 }, Candidate { id: 2, logit: 1.0 }]);
}

#[test]
fn reduction_handles_nan_and_inf() {
    let logits = [f32::NAN, 1.0, f32::NEG_INFINITY, 0.0];
    let (c, lse) = candidates_from_logits(&logits, &[], &plain(0), 4);
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 3, 0, 2]);
    assert!(c.iter().all(|c| !c.logit.is_nan()));
    let naive = (1f64.exp() + 1.0).ln() as f32;
    assert!((lse - naive).abs() < 1e-6);
    let (_, lse) = candidates_from_logits(&[f32::NEG_INFINITY; 3], &[], &plain(0), 2);
    assert_eq!(lse, f32::NEG_INFINITY);
    let (c, lse) = candidates_from_logits(&[0.0, f32::INFINITY], &[], &plain(0), 1);
    assert_eq!((c[0].id, lse), (1, f32::INFINITY));
    // The pipeline end to end: the +inf token is always chosen.
    let (c, lse) = candidates_from_logits(&[0.0, f32::INFINITY, 3.0], &[], &plain(0), 3);
    let mut s = Sampler::new(plain(4));
    assert_eq!(s.sample(&c, lse), 1);
}
