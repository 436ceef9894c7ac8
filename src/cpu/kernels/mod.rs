//! TEMPORARY scalar kernels with the CPU backend's kernel API (replaced by the SIMD kernels of
//! branch cpu-kernels before this lands).
#![allow(missing_docs)]

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::quant::GgmlType;
use crate::sampler::Candidate;

#[derive(Clone, Copy)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl QMatrix<'_> {
    fn row(&self, r: usize) -> Vec<f32> {
        let rb = self.ty.bytes_for(self.cols as u64).unwrap() as usize;
        crate::quant::dequantize(self.ty, &self.data[r * rb..(r + 1) * rb], self.cols).unwrap()
    }
}

#[derive(Default)]
pub struct Acts {
    x: Vec<f32>,
    tokens: usize,
    cols: usize,
}

impl Acts {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn prepare(&mut self, x: &[f32], tokens: usize, cols: usize) {
        self.x.clear();
        self.x.extend_from_slice(&x[..tokens * cols]);
        self.tokens = tokens;
        self.cols = cols;
    }
}

pub enum Epilogue {
    Store,
    Accumulate,
}

pub struct Product<'a> {
    pub w: QMatrix<'a>,
    pub out: &'a mut [f32],
    pub epilogue: Epilogue,
}

struct SyncPtr(*mut f32);
impl SyncPtr {
    fn at(&self, i: usize) -> *mut f32 {
        unsafe { self.0.add(i) }
    }
}
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32
}

fn split(n: usize, parts: usize, i: usize) -> Range<usize> {
    (n * i / parts)..(n * (i + 1) / parts)
}

pub fn matmul(pool: &Pool, acts: &Acts, products: &mut [Product<'_>]) {
    let total: usize = products.iter().map(|p| p.w.rows).sum();
    let outs: Vec<(QMatrix, SyncPtr, bool)> = products.iter_mut().map(|p| (p.w, SyncPtr(p.out.as_mut_ptr()), matches!(p.epilogue, Epilogue::Accumulate))).collect();
    let parts = pool.threads();
    pool.run(parts, &|part| {
        for g in split(total, parts, part) {
            let (mut i, mut r) = (0, g);
            while r >= outs[i].0.rows {
                r -= outs[i].0.rows;
                i += 1;
            }
            let (w, out, acc) = &outs[i];
            let row = w.row(r);
            for t in 0..acts.tokens {
                let v = dot(&row, &acts.x[t * acts.cols..(t + 1) * acts.cols]);
                // SAFETY: each (token, row) is written by exactly one part.
                unsafe {
                    let o = out.at(t * w.rows + r);
                    *o = if *acc { *o + v } else { v };
                }
            }
        }
    });
}

pub fn matmul_swiglu(pool: &Pool, acts: &Acts, gate: QMatrix<'_>, up: QMatrix<'_>, out: &mut [f32]) {
    let o = SyncPtr(out.as_mut_ptr());
    let parts = pool.threads();
    pool.run(parts, &|part| {
        for r in split(gate.rows, parts, part) {
            let (g, u) = (gate.row(r), up.row(r));
            for t in 0..acts.tokens {
                let x = &acts.x[t * acts.cols..(t + 1) * acts.cols];
                let v = crate::cpu::ops::silu(dot(&g, x)) * dot(&u, x);
                unsafe { *o.at(t * gate.rows + r) = v };
            }
        }
    });
}

pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    out.copy_from_slice(&crate::cpu::ops::rmsnorm(x, w, eps));
}

pub struct Rope {
    base: f32,
    head_dim: usize,
}

impl Rope {
    pub fn new(head_dim: usize, base: f32, _n_ctx: usize) -> Self {
        Rope { base, head_dim }
    }
    pub fn apply(&self, x: &mut [f32], n_heads: usize, pos: usize) {
        crate::cpu::ops::rope(x, n_heads, self.head_dim, pos, self.base);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
}

pub struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
    kv_dim: usize,
}

impl KvCache {
    pub fn new(_ty: KvType, n_ctx: usize, kv_dim: usize) -> Self {
        KvCache { k: vec![0.0; n_ctx * kv_dim], v: vec![0.0; n_ctx * kv_dim], kv_dim }
    }
    pub fn write(&mut self, pos: usize, k: &[f32], v: &[f32]) {
        self.k[pos * self.kv_dim..(pos + 1) * self.kv_dim].copy_from_slice(k);
        self.v[pos * self.kv_dim..(pos + 1) * self.kv_dim].copy_from_slice(v);
    }
    pub fn bytes(&self) -> usize {
        8 * self.k.len()
    }
}

#[allow(clippy::too_many_arguments)]
pub fn attention(pool: &Pool, q: &[f32], cache: &KvCache, pos0: usize, tokens: usize, n_heads: usize, n_kv_heads: usize, head_dim: usize, out: &mut [f32]) {
    let qd = n_heads * head_dim;
    let o = SyncPtr(out.as_mut_ptr());
    pool.run(tokens, &|t| {
        let r = crate::cpu::ops::attention(&q[t * qd..(t + 1) * qd], &cache.k, &cache.v, pos0 + t + 1, n_heads, n_kv_heads, head_dim);
        unsafe { std::ptr::copy_nonoverlapping(r.as_ptr(), o.at(t * qd), qd) };
    });
}

pub fn top_candidates(_pool: &Pool, logits: &[f32], history: &[u32], repeat_penalty: f32, inv_temperature: f32, k: usize) -> (Vec<Candidate>, f32) {
    let params = crate::sampler::SamplingParams {
        temperature: 1.0 / inv_temperature,
        repeat_penalty,
        repeat_last_n: history.len(),
        ..Default::default()
    };
    crate::sampler::candidates_from_logits(logits, history, &params, k)
}

pub fn selftest() -> String {
    r#"{"ok": true, "simd": "scalar", "cases": []}"#.to_string()
}

/// Shared state of a pool: an epoch counter workers watch, the job, and a done counter.
pub struct Shared {
    threads: usize,
    epoch: AtomicUsize,
    done: AtomicUsize,
    exit: AtomicBool,
    job: Mutex<Option<(usize, usize)>>, // (fat pointer as two words is awkward: stored separately)
    job_ptr: Mutex<Option<JobPtr>>,
    cv: Condvar,
    lock: Mutex<()>,
}

#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize) + Sync), usize);
unsafe impl Send for JobPtr {}

pub struct Pool {
    shared: Arc<Shared>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    pub fn new(threads: usize) -> Self {
        let threads = if cfg!(all(target_arch = "wasm32", not(target_feature = "atomics"))) { 1 } else { threads.max(1) };
        let (pool, shared) = Self::new_external(threads);
        let mut pool = pool;
        #[cfg(not(target_arch = "wasm32"))]
        for i in 1..threads {
            let s = shared.clone();
            pool.handles.push(std::thread::spawn(move || worker_loop(&s, i)));
        }
        let _ = shared;
        pool
    }

    pub fn new_external(threads: usize) -> (Self, Arc<Shared>) {
        let shared = Arc::new(Shared {
            threads: threads.max(1),
            epoch: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            exit: AtomicBool::new(false),
            job: Mutex::new(None),
            job_ptr: Mutex::new(None),
            cv: Condvar::new(),
            lock: Mutex::new(()),
        });
        (Pool { shared: shared.clone(), handles: Vec::new() }, shared)
    }

    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    pub fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let s = &self.shared;
        if s.threads == 1 {
            (0..parts).for_each(f);
            return;
        }
        // SAFETY: the pointer is only used until every worker has reported done below.
        let ptr: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        *s.job_ptr.lock().unwrap() = Some(JobPtr(ptr, parts));
        s.done.store(0, Ordering::SeqCst);
        {
            let _g = s.lock.lock().unwrap();
            s.epoch.fetch_add(1, Ordering::SeqCst);
            s.cv.notify_all();
        }
        for p in (0..parts).filter(|p| p % s.threads == 0) {
            f(p);
        }
        while s.done.load(Ordering::SeqCst) < s.threads - 1 {
            std::hint::spin_loop();
        }
        let _ = &s.job;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.exit.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap();
            self.shared.epoch.fetch_add(1, Ordering::SeqCst);
            self.shared.cv.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Runs jobs of `shared` as thread `index` until the pool is dropped.
pub fn worker_loop(shared: &Shared, index: usize) {
    let mut seen = 0;
    loop {
        let mut g = shared.lock.lock().unwrap();
        while shared.epoch.load(Ordering::SeqCst) == seen {
            g = shared.cv.wait(g).unwrap();
        }
        drop(g);
        seen = shared.epoch.load(Ordering::SeqCst);
        if shared.exit.load(Ordering::SeqCst) {
            return;
        }
        let job = *shared.job_ptr.lock().unwrap();
        if let Some(JobPtr(f, parts)) = job {
            let f = unsafe { &*f };
            for p in (0..parts).filter(|p| p % shared.threads == index) {
                f(p);
            }
        }
        shared.done.fetch_add(1, Ordering::SeqCst);
    }
}

/// Which SIMD path the kernels take on this host/build.
pub fn simd_name() -> &'static str {
    "scalar"
}
