//! A persistent thread pool with one cheap synchronisation per parallel region.
//!
//! A decode step has a few hundred parallel regions of 5-50 µs each, so a region must cost a few
//! microseconds: threads are created once, a job is published by bumping an atomic ticket, workers
//! spin briefly on it and only then sleep on a condition variable.
//!
//! The ticket packs (job sequence << 32 | next unclaimed part). Parts are claimed by a
//! compare-and-swap that includes the sequence, so a worker that wakes late can never run a part of
//! a newer job with an older job's closure. Which thread runs a part never changes a result: every
//! kernel computes each output from its part index alone.
//!
//! Native: `Pool::new(n)` spawns n-1 std threads (the caller is thread 0). Browser: threads are Web
//! Workers started by JS; `Pool::new_external(n)` builds the pool without spawning and each worker
//! calls [`worker_loop`] until the pool is dropped. wasm builds without the `atomics` target
//! feature are single-threaded: every pool has 1 thread and never blocks.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};

type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// True when this build can block and share memory between threads.
const THREADED: bool = cfg!(any(not(target_arch = "wasm32"), target_feature = "atomics"));

/// Spin iterations before sleeping. A natively measured `spin_loop` iteration with an atomic load
/// costs 10-40 ns here, so this is tens of microseconds: longer than the gap between two regions
/// of a decode step, far shorter than a token.
const SPIN: u32 = if cfg!(target_arch = "wasm32") { 1 << 15 } else { 1 << 12 };

/// The state shared by the caller and the workers of one pool.
pub struct Shared {
    ticket: AtomicU64,
    /// Points at the caller's `Job` (a local of `Pool::run`), valid while that job runs.
    job: AtomicPtr<Job<'static>>,
    parts: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
    quit: AtomicBool,
    sleepers: AtomicUsize,
    caller_waiting: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    finished: Condvar,
    threads: usize,
}

pub struct Pool {
    shared: Arc<Shared>,
    /// Set while a job runs: a nested or concurrent `run` executes its parts inline instead.
    busy: AtomicBool,
    #[cfg(not(target_arch = "wasm32"))]
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Shared {
    fn new(threads: usize) -> Self {
        Shared {
            ticket: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            parts: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            caller_waiting: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            finished: Condvar::new(),
            threads,
        }
    }

    /// Claims and runs parts of job `seq` until none is left (or the job is no longer current).
    fn work(&self, seq: u64) {
        loop {
            let cur = self.ticket.load(Acquire);
            if cur >> 32 != seq {
                return;
            }
            let part = (cur & 0xffff_ffff) as usize;
            // A stale `parts` can only belong to a newer job, whose ticket makes the CAS fail.
            let parts = self.parts.load(Acquire);
            if part >= parts {
                return;
            }
            if self.ticket.compare_exchange_weak(cur, cur + 1, AcqRel, Relaxed).is_err() {
                continue;
            }
            // Claimed a part of the current job, so the job (and its closure) is still alive.
            let job = unsafe { &*self.job.load(Acquire) };
            self.run_part(job, part);
            if self.done.fetch_add(1, SeqCst) + 1 == parts && self.caller_waiting.load(SeqCst) {
                let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.finished.notify_one();
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn run_part(&self, job: &Job<'_>, part: usize) {
        // A panic must not leave the caller waiting forever: record it, the caller re-raises.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(part))).is_err() {
            self.panicked.store(true, SeqCst);
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn run_part(&self, job: &Job<'_>, part: usize) {
        job(part) // panic=abort in wasm
    }

    /// Waits for a job newer than `seen`; None when the pool is dropped.
    fn wait_new(&self, seen: u64) -> Option<u64> {
        for i in 0..SPIN {
            let t = self.ticket.load(Acquire);
            if t >> 32 != seen {
                return Some(t >> 32);
            }
            if i % 64 == 0 && self.quit.load(Relaxed) {
                return None;
            }
            std::hint::spin_loop();
        }
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, SeqCst);
        let r = loop {
            if self.quit.load(SeqCst) {
                break None;
            }
            let t = self.ticket.load(SeqCst);
            if t >> 32 != seen {
                break Some(t >> 32);
            }
            g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
        };
        self.sleepers.fetch_sub(1, SeqCst);
        r
    }
}

/// The body of every worker thread (native) or Web Worker (browser): runs parts of published jobs
/// until the pool is dropped, then returns. `index` is informational (1..threads).
pub fn worker_loop(shared: &Shared, index: usize) {
    let _ = index;
    if !THREADED || shared.threads <= 1 {
        return;
    }
    let mut seen = shared.ticket.load(Acquire) >> 32;
    while let Some(seq) = shared.wait_new(seen) {
        seen = seq;
        shared.work(seq);
    }
}

impl Pool {
    /// A pool of `threads` threads including the caller. Natively spawns threads-1 std threads.
    /// In wasm (where std threads cannot be spawned) this is always 1 thread: use
    /// [`Pool::new_external`] with Web Workers.
    pub fn new(threads: usize) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let threads = threads.max(1);
            let shared = Arc::new(Shared::new(threads));
            let handles = (1..threads)
                .map(|i| {
                    let s = shared.clone();
                    std::thread::Builder::new().name(format!("cpu-kernels-{i}")).spawn(move || worker_loop(&s, i)).expect("spawn a kernel thread")
                })
                .collect();
            Pool { shared, busy: AtomicBool::new(false), handles }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Pool { shared: Arc::new(Shared::new(1)), busy: AtomicBool::new(false) }
        }
    }

    /// A pool of `threads` threads whose workers are started by the host: it must run
    /// `worker_loop(&shared, i)` for i in 1..threads on threads sharing this memory. Jobs never
    /// wait for a worker that has not started (the caller runs unclaimed parts itself). Clamped to
    /// 1 thread in wasm builds without the `atomics` feature.
    pub fn new_external(threads: usize) -> (Pool, Arc<Shared>) {
        let threads = if THREADED { threads.max(1) } else { 1 };
        let shared = Arc::new(Shared::new(threads));
        let pool = Pool {
            shared: shared.clone(),
            busy: AtomicBool::new(false),
            #[cfg(not(target_arch = "wasm32"))]
            handles: Vec::new(),
        };
        (pool, shared)
    }

    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs f(0..parts) spread over the threads; returns when all are done.
    pub fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        if s.threads <= 1 || parts <= 1 || self.busy.swap(true, Acquire) {
            (0..parts).for_each(f);
            return;
        }
        assert!(parts < u32::MAX as usize);
        let job: Job<'_> = f;
        // Erase the lifetime: workers only dereference it after claiming a part of this job,
        // and this function does not return before every part is done.
        s.job.store(&job as *const Job<'_> as *mut Job<'static>, Relaxed);
        s.parts.store(parts, Relaxed);
        s.done.store(0, Relaxed);
        // 32-bit sequence numbers wrap (after ~4e9 jobs): mask, so `seq << 32` keeps them whole.
        let seq = ((s.ticket.load(Relaxed) >> 32) + 1) & 0xffff_ffff;
        s.ticket.store(seq << 32, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        s.work(seq);
        // Every part is claimed; wait for the ones other threads are running.
        let mut spins = 0u32;
        while s.done.load(Acquire) < parts {
            spins += 1;
            if spins < SPIN * 4 {
                std::hint::spin_loop();
                continue;
            }
            let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.caller_waiting.store(true, SeqCst);
            while s.done.load(SeqCst) < parts {
                g = s.finished.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.caller_waiting.store(false, SeqCst);
        }
        self.busy.store(false, Release);
        if s.panicked.swap(false, SeqCst) {
            panic!("a cpu kernel panicked on a worker thread");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.quit.store(true, SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        #[cfg(not(target_arch = "wasm32"))]
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
