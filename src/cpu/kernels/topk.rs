//! Sampling candidates: repetition penalty, temperature, the k largest adjusted logits and the
//! log-sum-exp of all of them: the contract of sampler::candidates_from_logits, without copying
//! or sorting the vocabulary.
//!
//! The vocabulary is cut into fixed chunks of CHUNK ids (never depending on the thread count, so
//! results do not either). Per chunk: the adjusted logits, their maximum m_c, s_c = sum of
//! exp(v - m_c) (portable f32 exp, f64 sum in order) and the chunk's k best (insertion into a
//! small sorted list: after the first few, almost every id fails the threshold test). Then the
//! chunk lists are merged and lse = M + ln(sum_c s_c * exp(m_c - M)) in f64.

use super::math::{exp_f64, ln_f64, order_key};
use super::{dispatch, Candidate, Isa, Pool};

const CHUNK: usize = 4096;
/// Above this k, the chunk lists would be long: sort the whole vocabulary instead.
const MAX_LIST: usize = 512;

struct ChunkOut {
    max: f32,
    sum: f64,
    /// (order key, id), best first.
    best: Vec<(u32, u32)>,
}

#[derive(Clone, Copy)]
struct Slots(*mut Option<ChunkOut>);
// SAFETY: part c writes slot c only; the pool joins before the slots are read.
unsafe impl Send for Slots {}
unsafe impl Sync for Slots {}

impl Slots {
    /// SAFETY: the caller writes slot c only from part c.
    unsafe fn put(&self, c: usize, v: ChunkOut) {
        *self.0.add(c) = Some(v);
    }
}

/// Penalty (llama.cpp's rule on the distinct ids of `history`: l > 0 ? l/p : l*p; none when
/// p == 1), temperature (l * inv_temperature; NaN -> -inf), then the k largest (ties: smaller id
/// first) and the log-sum-exp of all adjusted logits (-inf if all are -inf, +inf if one is +inf).
pub fn top_candidates(pool: &Pool, logits: &[f32], history: &[u32], repeat_penalty: f32, inv_temperature: f32, k: usize) -> (Vec<Candidate>, f32) {
    top_candidates_with(Isa::best(), pool, logits, history, repeat_penalty, inv_temperature, k)
}

pub fn top_candidates_with(
    isa: Isa,
    pool: &Pool,
    logits: &[f32],
    history: &[u32],
    repeat_penalty: f32,
    inv_temperature: f32,
    k: usize,
) -> (Vec<Candidate>, f32) {
    let n = logits.len();
    // Distinct penalised ids, sorted, with their penalised logits.
    let mut pen: Vec<(u32, f32)> = Vec::new();
    if repeat_penalty != 1.0 {
        let mut ids: Vec<u32> = history.iter().copied().filter(|&id| (id as usize) < n).collect();
        ids.sort_unstable();
        ids.dedup();
        pen = ids
            .into_iter()
            .map(|id| {
                let l = logits[id as usize];
                (id, if l > 0.0 { l / repeat_penalty } else { l * repeat_penalty })
            })
            .collect();
    }
    let k = k.min(n);
    let list = if k > MAX_LIST { 0 } else { k };
    let chunks = n.div_ceil(CHUNK);
    let mut slots: Vec<Option<ChunkOut>> = (0..chunks).map(|_| None).collect();
    let sp = Slots(slots.as_mut_ptr());
    let parts = if pool.threads() > 1 && chunks > 1 { chunks } else { 1 };
    let run_chunk = |c: usize| {
        let out = chunk(isa, logits, c * CHUNK, ((c + 1) * CHUNK).min(n), &pen, inv_temperature, list);
        // SAFETY: see Slots.
        unsafe { sp.put(c, out) };
    };
    if parts == 1 {
        (0..chunks).for_each(run_chunk);
    } else {
        pool.run(parts, &run_chunk);
    }
    let outs: Vec<ChunkOut> = slots.into_iter().map(|s| s.expect("every chunk ran")).collect();
    let m = outs.iter().fold(f32::NEG_INFINITY, |m, o| if o.max > m { o.max } else { m });
    let lse = if !m.is_finite() {
        m
    } else {
        let s: f64 = outs.iter().map(|o| o.sum * exp_f64(o.max as f64 - m as f64)).sum();
        (m as f64 + ln_f64(s)) as f32
    };
    let value = |id: u32| adjust(logits[id as usize], &pen, id, inv_temperature);
    let mut best: Vec<(u32, u32)> =
        if list == k { outs.into_iter().flat_map(|o| o.best).collect() } else { (0..n as u32).map(|id| (order_key(value(id)), id)).collect() };
    let order = |a: &(u32, u32), b: &(u32, u32)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
    if k > 0 && k < best.len() {
        best.select_nth_unstable_by(k - 1, order);
    }
    best.truncate(k);
    best.sort_unstable_by(order);
    (best.into_iter().map(|(_, id)| Candidate { id, logit: value(id) }).collect(), lse)
}

/// The adjusted logit of one id (penalised ids looked up in the sorted list).
fn adjust(l: f32, pen: &[(u32, f32)], id: u32, inv_t: f32) -> f32 {
    let l = match pen.binary_search_by_key(&id, |p| p.0) {
        Ok(i) => pen[i].1,
        Err(_) => l,
    };
    let v = l * inv_t;
    if v.is_nan() {
        f32::NEG_INFINITY
    } else {
        v
    }
}

fn chunk(isa: Isa, logits: &[f32], a: usize, b: usize, pen: &[(u32, f32)], inv_t: f32, k: usize) -> ChunkOut {
    let mut v: Vec<f32> = logits[a..b].iter().map(|&l| l * inv_t).collect();
    for &(id, l) in pen.iter().filter(|p| (a..b).contains(&(p.0 as usize))) {
        v[id as usize - a] = l * inv_t;
    }
    let mut max = f32::NEG_INFINITY;
    for x in v.iter_mut() {
        if x.is_nan() {
            *x = f32::NEG_INFINITY;
        }
        if *x > max {
            max = *x;
        }
    }
    // The k best, by (key desc, id asc). Ids arrive in ascending order, so an equal key never
    // displaces an entry: only a strictly larger key enters a full list.
    let mut best: Vec<(u32, u32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        let mut threshold = 0u32; // below every key while the list is not full
        let mut full = false;
        for (i, &x) in v.iter().enumerate() {
            let key = order_key(x);
            if full && key <= threshold {
                continue;
            }
            let at = best.partition_point(|e| e.0 >= key);
            best.insert(at, (key, (a + i) as u32));
            if best.len() > k {
                best.pop();
            }
            full = best.len() == k;
            threshold = best.last().map_or(0, |e| e.0);
        }
    }
    let sum = if max.is_finite() {
        dispatch::exp_sub(isa, &mut v, max);
        v.iter().map(|&e| e as f64).sum()
    } else {
        0.0
    };
    ChunkOut { max, sum, best }
}
