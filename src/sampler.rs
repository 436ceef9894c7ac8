//! Choosing the next token from the GPU's candidates: top-k, top-p, min-p and a seeded RNG.
//! (Repetition penalty and temperature are applied on the GPU before the candidates are picked;
//! [`candidates_from_logits`] is the CPU mirror of that reduction, for tests and the CPU path.)

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off (choose among the GPU's MAX_CANDIDATES).
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.0, repeat_last_n: 64, seed: 0 }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, top_k: 1, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, ..Default::default() }
    }

    /// Greedy when temperature is 0 (or negative, or NaN) or top_k is 1.
    pub fn is_greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature <= 0.0 || self.top_k == 1
    }
}

/// One candidate as read back from the GPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Candidate {
    pub id: u32,
    /// After repetition penalty and temperature.
    pub logit: f32,
}

/// Draws tokens. The generator is splitmix64: 64 bits of state, one multiply-xorshift round per
/// draw, statistically strong (passes BigCrush) and trivially identical on native and wasm.
pub struct Sampler {
    pub params: SamplingParams,
    rng_state: u64,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng_state = params.seed;
        Sampler { params, rng_state }
    }

    /// Picks a token from `cands` (sorted descending, adjusted logits); `logsumexp` is over the
    /// whole vocabulary, so probabilities are exp(logit - logsumexp).
    ///
    /// Temperature and repetition penalty are already in the candidates' logits (applied by the
    /// GPU reduction, or [`candidates_from_logits`]); here temperature only decides greediness.
    ///
    /// Steps, all on the whole-vocabulary probabilities p_i = exp(l_i - logsumexp):
    /// 1. NaN candidates are dropped; the rest are (re)sorted descending, ties smaller id first;
    /// 2. greedy (see [`SamplingParams::is_greedy`]) or a +inf/-inf top logit: the first one;
    /// 3. top_k (0 = off) keeps the first k;
    /// 4. min_p keeps p_i >= min_p * p_0 (compared in log space, so tiny probabilities are exact);
    /// 5. top_p keeps the shortest prefix whose probability mass reaches top_p (all of them when
    ///    the candidates hold less mass than that; at least one);
    /// 6. draws from the survivors renormalised.
    ///
    /// Steps 4 and 5 both keep a prefix judged on unrenormalised probabilities, so their order
    /// does not matter. Empty `cands` (only possible with an empty vocabulary) returns 0.
    pub fn sample(&mut self, cands: &[Candidate], logsumexp: f32) -> u32 {
        let mut c: Vec<Candidate> = cands.iter().filter(|c| !c.logit.is_nan()).copied().collect();
        if c.is_empty() {
            return cands.first().map_or(0, |c| c.id);
        }
        c.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id)));
        let top = c[0].logit as f64;
        if self.params.is_greedy() || !top.is_finite() {
            return c[0].id;
        }
        if self.params.top_k > 0 {
            c.truncate(self.params.top_k);
        }
        let n = self.params.kept(&c, logsumexp);
        c.truncate(n);
        // Relative weights exp(l - top): the renormalisation makes the logsumexp irrelevant here.
        let weights: Vec<f64> = c.iter().map(|c| (c.logit as f64 - top).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut u = self.next_f64() * total;
        for (cand, w) in c.iter().zip(&weights) {
            if u < *w {
                return cand.id;
            }
            u -= w;
        }
        // Rounding can leave u a hair above the last weight: take the last token with any mass.
        c.iter().zip(&weights).rev().find(|(_, &w)| w > 0.0).map_or(c[0].id, |(cand, _)| cand.id)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (splitmix64(&mut self.rng_state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl SamplingParams {
    /// How many of `c` (sorted descending, finite top, no NaN) survive min_p and top_p.
    fn kept(&self, c: &[Candidate], logsumexp: f32) -> usize {
        let top = c[0].logit as f64;
        let local = top + c.iter().map(|c| (c.logit as f64 - top).exp()).sum::<f64>().ln();
        // The whole-vocabulary logsumexp can never be below the candidates' own; if it is missing
        // (NaN/inf) or inconsistent, the candidates' own is the best estimate we have.
        let lse = if logsumexp.is_finite() { (logsumexp as f64).max(local) } else { local };
        let mut n = c.len();
        if self.min_p > 0.0 {
            let threshold = top + (self.min_p as f64).ln();
            n = n.min(c.iter().take_while(|c| c.logit as f64 >= threshold).count().max(1));
        }
        if self.top_p < 1.0 {
            let mut mass = 0.0;
            let mut keep = n;
            for (i, cand) in c[..n].iter().enumerate() {
                mass += (cand.logit as f64 - lse).exp();
                if mass >= self.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
        n
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): a Weyl sequence through a 64-bit finaliser.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// CPU mirror of the GPU reduction: penalty on the distinct ids of `history`, temperature
/// (1/temperature, or 1 when greedy), then the `k` largest (ties: smaller id first) and the
/// logsumexp of all adjusted logits.
///
/// Exact semantics (the GPU kernel follows the same rules):
/// - the penalty window is the last `repeat_last_n` ids of `history` (a no-op when the caller
///   already trimmed it); each distinct id < vocab is penalised once: l > 0 ? l / p : l * p;
///   skipped when p == 1;
/// - temperature multiplies by inv_t = 1/temperature computed in f32 (1 when greedy);
/// - NaN adjusted logits become -inf (never preferred, no mass);
/// - k is clamped to the vocabulary size; ordering is by logit descending, then id ascending;
/// - logsumexp is accumulated in f64 from the maximum: -inf when every logit is -inf, +inf when
///   one is +inf.
pub fn candidates_from_logits(logits: &[f32], history: &[u32], params: &SamplingParams, k: usize) -> (Vec<Candidate>, f32) {
    let mut adj = logits.to_vec();
    let p = params.repeat_penalty;
    if p != 1.0 {
        let window = &history[history.len().saturating_sub(params.repeat_last_n)..];
        let mut seen = std::collections::HashSet::new();
        for &id in window {
            if (id as usize) < adj.len() && seen.insert(id) {
                let l = &mut adj[id as usize];
                *l = if *l > 0.0 { *l / p } else { *l * p };
            }
        }
    }
    let inv_t = if params.is_greedy() { 1.0 } else { 1.0 / params.temperature };
    for l in adj.iter_mut() {
        // NaN in, or 0 * inf when a tiny temperature overflows inv_t: both become -inf.
        let v = *l * inv_t;
        *l = if v.is_nan() { f32::NEG_INFINITY } else { v };
    }
    let order = |a: &u32, b: &u32| adj[*b as usize].total_cmp(&adj[*a as usize]).then(a.cmp(b));
    let mut ids: Vec<u32> = (0..adj.len() as u32).collect();
    let k = k.min(ids.len());
    if k > 0 && k < ids.len() {
        ids.select_nth_unstable_by(k - 1, order);
    }
    ids.truncate(k);
    ids.sort_unstable_by(order);
    let cands = ids.iter().map(|&id| Candidate { id, logit: adj[id as usize] }).collect();
    (cands, logsumexp(&adj))
}

/// log(sum(exp(x))) in f64 from the maximum; NaN-free input assumed.
fn logsumexp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return max as f32;
    }
    (max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()) as f32
}
