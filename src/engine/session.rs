//! Session: chunked prefill, decode steps, sampling, stop conditions, the context policy, and
//! reuse of the cached prefix between calls (multi-turn chat). Written once for both backends:
//! a step (tokens in, KV caches filled, candidates out) is the backend's ([`super::backend`]).

use std::cell::Cell;
use std::rc::Rc;

use super::backend::{Candidates, Exec, HeadRequest, StepSampling, MAX_HISTORY};
use super::clock::{now_ms, yield_now};
use super::stop::{Scan, StopScanner};
use super::LoadedModel;
use crate::gpu::ops::topk::MAX_CANDIDATES;
use crate::sampler::{Candidate, Sampler, SamplingParams};
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// KV cache capacity; default min(model context, 4096).
    pub n_ctx: Option<usize>,
    /// Tokens per prefill pass.
    pub prefill_chunk: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { n_ctx: None, prefill_chunk: 64 }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub params: SamplingParams,
    pub max_tokens: usize,
    /// Generation ends when the text produced contains one of these (it is not included).
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

impl GenerateRequest {
    pub fn new(params: SamplingParams, max_tokens: usize) -> Self {
        GenerateRequest { params, max_tokens, stop: Vec::new(), ignore_eos: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// max_tokens reached.
    Length,
    /// The context window is full (generation ends there; the tokens so far are kept).
    ContextFull,
    Aborted,
}

impl FinishReason {
    /// OpenAI's finish_reason vocabulary (plus "context_full" and "abort").
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContextFull => "context_full",
            FinishReason::Aborted => "abort",
        }
    }
}

/// Passed to the streaming callback for each new token.
pub struct TokenEvent<'a> {
    pub id: u32,
    /// Text that became complete with this token (may be empty mid-character or while a
    /// possible stop string is held back).
    pub text: &'a str,
}

#[derive(Debug, Clone)]
pub struct GenerateResult {
    pub prompt_tokens: usize,
    /// Prompt tokens actually run (the rest were reused from the cache).
    pub prefill_tokens: usize,
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// From the call to the first generated token.
    pub ttft_ms: f64,
    /// Dispatches recorded per decode step, and bytes read back per step.
    pub dispatches_per_step: u32,
    pub readback_bytes_per_step: u64,
}

pub struct Session {
    pub model: Rc<LoadedModel>,
    /// Tokens whose keys/values are in the cache, in order.
    pub cached: Vec<u32>,
    pub(super) exec: Exec,
    n_ctx: usize,
    chunk: usize,
    abort: Rc<Cell<bool>>,
}

impl Session {
    pub fn new(model: Rc<LoadedModel>, opts: &SessionOptions) -> Result<Self> {
        let n_ctx = opts.n_ctx.unwrap_or(model.cfg.context_length.min(4096)).max(1);
        if opts.prefill_chunk == 0 {
            return Err(Error::InvalidArgument("prefill_chunk must be at least 1".into()));
        }
        let chunk = opts.prefill_chunk.min(n_ctx);
        let exec = Exec::new(&model, n_ctx, chunk)?;
        Ok(Session { model, cached: Vec::new(), exec, n_ctx, chunk, abort: Rc::new(Cell::new(false)) })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Setting the flag makes a running generate() end with FinishReason::Aborted at the next
    /// step (or prefill chunk). generate() clears it when it starts.
    pub fn abort_handle(&self) -> Rc<Cell<bool>> {
        self.abort.clone()
    }

    /// How many leading tokens of `prompt` generate() takes from the KV cache instead of
    /// prefilling them: the common prefix, less the last prompt token (it runs again for its logits).
    pub fn reusable_prefix(&self, prompt: &[u32]) -> usize {
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        common.min(prompt.len().saturating_sub(1))
    }

    /// Forgets the cached conversation.
    pub fn reset(&mut self) {
        self.cached.clear();
    }

    /// Runs `tokens` at positions pos.. in chunks; the last chunk also runs the head with `k`
    /// candidates. Returns (candidates, logsumexp) of the last token.
    pub(super) async fn prefill(&mut self, tokens: &[u32], params: &SamplingParams, k: u32) -> Result<Candidates> {
        let chunk = self.chunk;
        let mut last = None;
        for (i, piece) in tokens.chunks(chunk).enumerate() {
            if self.abort.get() {
                return Err(Error::Aborted);
            }
            let is_last = (i + 1) * chunk >= tokens.len();
            let pos0 = self.cached.len();
            self.cached.extend_from_slice(piece);
            if is_last {
                last = Some(self.step_sampled(piece, pos0, params, k).await?.0);
            } else {
                let model = self.model.clone();
                self.exec.step(&model, piece, pos0, &HeadRequest::None).await?;
                // Lets the host deliver an interrupt between chunks (the CPU backend computes
                // synchronously; in the browser this yields to the worker's event loop).
                yield_now().await;
            }
        }
        last.ok_or_else(|| Error::InvalidArgument("empty prompt".into()))
    }

    /// One step over `tokens` at pos0.. whose last token's candidates are adjusted by `params`
    /// (penalty over the recent history, temperature). Also returns the step's (dispatches,
    /// bytes read back).
    async fn step_sampled(&mut self, tokens: &[u32], pos0: usize, params: &SamplingParams, k: u32) -> Result<(Candidates, u32, u64)> {
        let history = self.penalty_history(params);
        let sampling = StepSampling {
            inv_temperature: if params.temperature > 0.0 { 1.0 / params.temperature } else { 1.0 },
            repeat_penalty: params.repeat_penalty,
            history: &history,
        };
        let model = self.model.clone();
        let out = self.exec.step(&model, tokens, pos0, &HeadRequest::Last { k, sampling: &sampling }).await?;
        let row = out.candidates.into_iter().next().ok_or_else(|| Error::Gpu("the step returned no candidates".into()))?;
        Ok((row, out.dispatches, out.readback_bytes))
    }

    /// The distinct recent tokens the repetition penalty applies to (sorted; empty when off).
    fn penalty_history(&self, params: &SamplingParams) -> Vec<u32> {
        if params.repeat_penalty == 1.0 || params.repeat_last_n == 0 {
            return Vec::new();
        }
        let n = params.repeat_last_n.min(self.cached.len());
        let mut recent: Vec<u32> = self.cached[self.cached.len() - n..].to_vec();
        recent.sort_unstable();
        recent.dedup();
        recent.truncate(MAX_HISTORY);
        recent
    }

    /// Runs `prompt` (reusing the longest cached prefix), then samples up to max_tokens tokens,
    /// calling `on_token` for each. Errors with ContextFull when the prompt does not fit.
    pub async fn generate(&mut self, prompt: &[u32], req: &GenerateRequest, on_token: &mut dyn FnMut(&TokenEvent<'_>)) -> Result<GenerateResult> {
        let t0 = now_ms();
        self.abort.set(false);
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("the prompt has no tokens".into()));
        }
        if prompt.len() > self.n_ctx {
            return Err(Error::ContextFull { needed: prompt.len(), capacity: self.n_ctx });
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= self.model.cfg.n_vocab) {
            return Err(Error::InvalidArgument(format!("token id {bad} is outside the vocabulary of {}", self.model.cfg.n_vocab)));
        }
        // Reuse the cached prefix; at least the last prompt token runs again for its logits.
        let common = self.reusable_prefix(prompt);
        self.cached.truncate(common);
        let params = &req.params;
        let k =
            if params.is_greedy() { 1 } else { (if params.top_k == 0 { MAX_CANDIDATES as usize } else { params.top_k }).min(MAX_CANDIDATES as usize) as u32 };
        let mut sampler = Sampler::new(params.clone());

        let model = self.model.clone();
        let tokenizer = &model.tokenizer;
        let mut decoder = StreamDecoder::new(tokenizer);
        let mut stops = StopScanner::new(&req.stop);
        let mut result = GenerateResult {
            prompt_tokens: prompt.len(),
            prefill_tokens: prompt.len() - common,
            tokens: Vec::new(),
            text: String::new(),
            finish: FinishReason::Length,
            prefill_ms: 0.0,
            decode_ms: 0.0,
            ttft_ms: 0.0,
            dispatches_per_step: 0,
            readback_bytes_per_step: 0,
        };
        let prefilled = self.prefill(&prompt[common..], params, k).await;
        let (mut cands, mut lse) = match prefilled {
            Ok(v) => v,
            Err(Error::Aborted) => {
                // The cache holds only whole chunks that ran; keep them, report the abort.
                result.finish = FinishReason::Aborted;
                return Ok(result);
            }
            Err(e) => {
                self.cached.truncate(common);
                return Err(e);
            }
        };
        result.prefill_ms = now_ms() - t0;
        let t_decode = now_ms();
        loop {
            let id = if k == 1 { cands.first().map(|c| c.id).unwrap_or(0) } else { sampler.sample(&cands, lse) };
            if result.tokens.is_empty() {
                result.ttft_ms = now_ms() - t0;
            }
            if tokenizer.is_eog(id) && !req.ignore_eos {
                result.finish = FinishReason::Stop;
                break;
            }
            result.tokens.push(id);
            let piece = decoder.push(id);
            match stops.push(&piece) {
                Scan::Emit(text) => {
                    result.text.push_str(&text);
                    on_token(&TokenEvent { id, text: &text });
                }
                Scan::Stopped(text) => {
                    result.text.push_str(&text);
                    on_token(&TokenEvent { id, text: &text });
                    result.finish = FinishReason::Stop;
                    break;
                }
            }
            if result.tokens.len() >= req.max_tokens {
                result.finish = FinishReason::Length;
                break;
            }
            if self.abort.get() {
                result.finish = FinishReason::Aborted;
                break;
            }
            if self.cached.len() >= self.n_ctx {
                result.finish = FinishReason::ContextFull;
                break;
            }
            // One decode step (GPU: one encoder, one submit, one small readback).
            let pos = self.cached.len();
            self.cached.push(id);
            let ((c, l), dispatches, readback) = match self.step_sampled(&[id], pos, params, k).await {
                Ok(v) => v,
                Err(e) => {
                    // The token whose step failed is not in the cache.
                    self.cached.truncate(pos);
                    return Err(e);
                }
            };
            (cands, lse) = (c, l);
            result.dispatches_per_step = dispatches;
            result.readback_bytes_per_step = readback;
            // Lets the host deliver an interrupt (see prefill).
            yield_now().await;
        }
        let tail = decoder.finish();
        let tail = match stops.push(&tail) {
            Scan::Emit(t) => t + &stops.finish(),
            Scan::Stopped(t) => t,
        };
        if !tail.is_empty() {
            result.text.push_str(&tail);
            on_token(&TokenEvent { id: *result.tokens.last().unwrap_or(&0), text: &tail });
        }
        result.decode_ms = now_ms() - t_decode;
        Ok(result)
    }

    /// Teacher-forced: runs `tokens` from position 0 and returns, for every position, the `k`
    /// largest next-token logits (raw: no penalty, no temperature).
    pub async fn top_logits(&mut self, tokens: &[u32], k: usize) -> Result<Vec<Vec<Candidate>>> {
        if tokens.len() > self.n_ctx {
            return Err(Error::ContextFull { needed: tokens.len(), capacity: self.n_ctx });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.model.cfg.n_vocab) {
            return Err(Error::InvalidArgument(format!("token id {bad} is outside the vocabulary of {}", self.model.cfg.n_vocab)));
        }
        let k = (k.clamp(1, MAX_CANDIDATES as usize)) as u32;
        self.cached.clear();
        let model = self.model.clone();
        let mut out = Vec::with_capacity(tokens.len());
        for piece in tokens.chunks(self.chunk) {
            let pos0 = self.cached.len();
            self.cached.extend_from_slice(piece);
            let step = self.exec.step(&model, piece, pos0, &HeadRequest::All { k }).await?;
            out.extend(step.candidates.into_iter().map(|(c, _)| c));
            yield_now().await;
        }
        Ok(out)
    }
}
