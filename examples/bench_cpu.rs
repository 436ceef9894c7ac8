//! Benchmark of the CPU backend kernels (src/cpu/kernels) at the SmolLM2-135M shapes.
//!
//! cargo run --release --example bench_cpu -- [--threads N] [--quick] [--step (decode step only)]
//!     [--types Q4_1,Q8_0,...] [--hot (no rotation: weights stay in cache, measures compute)]
//!
//! Per shape and weight type: decode (1 token) and prefill (64 tokens), median ms of a call,
//! GB/s of weight bytes (each byte is read once per call). The decode numbers rotate over copies
//! of the matrix totalling > 64 MB, so weights come from memory as in a real decode step (one
//! 576x576 Q4_1 matrix would otherwise sit in L2). Then a decode step of the whole model's
//! products (30 layers of qkv, o(+residual), gate·up SwiGLU, down(+residual), distinct weights,
//! and the 49152x576 Q8_0 logits) gives the implied tokens/s of the matrix part, and the pool's
//! cost of one empty parallel region.

use std::time::Instant;

use mobilellm_web::cpu::kernels::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Random GGUF bytes: any quant pattern is valid; scales set to a sane f16 (the Q5 and K-quant
/// types: `quant::random_blocks`).
fn tensor(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    let mut out = Vec::with_capacity(ty.bytes_for(n as u64).unwrap() as usize);
    match ty {
        GgmlType::F32 => (0..n).for_each(|_| out.extend(rng.f().to_le_bytes())),
        GgmlType::F16 => (0..n).for_each(|_| out.extend(half::f16::from_f32(rng.f()).to_le_bytes())),
        GgmlType::BF16 => (0..n).for_each(|_| out.extend(half::bf16::from_f32(rng.f()).to_le_bytes())),
        _ if !GgmlType::CLASSIC.contains(&ty) => return mobilellm_web::quant::random_blocks(ty, n, 0.3, rng.next()).unwrap(),
        _ => {
            let bb = ty.block_bytes();
            let scales = if ty == GgmlType::Q4_1 { 2 } else { 1 };
            for _ in 0..n / 32 {
                let start = out.len();
                (0..bb).for_each(|_| out.push(rng.next() as u8));
                for s in 0..scales {
                    out[start + 2 * s..start + 2 * s + 2].copy_from_slice(&half::f16::from_f32(0.01 * rng.f()).to_le_bytes());
                }
            }
        }
    }
    out
}

/// The type llama.cpp writes instead of a K-quant for rows that are not whole super-blocks.
fn fallback(ty: GgmlType) -> GgmlType {
    match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of `f`, over `reps` runs after a warm-up.
fn time(reps: usize, mut f: impl FnMut(usize)) -> f64 {
    f(0);
    median(
        (0..reps)
            .map(|i| {
                let t = Instant::now();
                f(i + 1);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let threads: usize = arg("--threads").map_or(2, |s| s.parse().expect("--threads N"));
    let quick = args.iter().any(|a| a == "--quick");
    let types: Vec<GgmlType> = arg("--types").map_or_else(
        || vec![GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32],
        |s| s.split(',').map(|t| GgmlType::parse_name(t).expect("type name")).collect(),
    );
    let pool = Pool::new(threads);
    println!("cpu kernels: {} ({} threads)", Isa::best().name(), pool.threads());

    // An empty region is finished by the caller before a worker notices it; give every part ~5 µs
    // of work so that all threads take part, and subtract that work measured on one thread.
    let spin = |_| {
        let t = Instant::now();
        while t.elapsed().as_secs_f64() < 5e-6 {
            std::hint::spin_loop();
        }
    };
    let empty = time(20001, |_| pool.run(pool.threads(), &|_| {})) * 1e6;
    let busy = time(20001, |_| pool.run(pool.threads(), &spin)) * 1e6;
    println!("pool: empty region {empty:.2} µs; region of {} x 5 µs parts: {busy:.2} µs (sync cost {:.2} µs), medians", pool.threads(), busy - 5.0);

    let mut rng = Rng(0x2545F4914F6CDD1D);
    // SmolLM2-135M's shapes, and two more with rows of 1536 (a multiple of the K-quants' 256) so
    // that every type has a few shapes to compare per weight byte; a type runs the shapes whose
    // rows are whole blocks of it.
    let shapes: [(&str, usize, usize); 7] = [
        ("q/o 576x576", 576, 576),
        ("k/v 192x576", 192, 576),
        ("gate+up 2x1536x576", 1536, 576),
        ("down 576x1536", 576, 1536),
        ("1536x1536", 1536, 1536),
        ("4608x1536", 4608, 1536),
        ("logits 49152x576", 49152, 576),
    ];
    println!("{:<22} {:>5} | {:>9} {:>7} | {:>10} {:>7} {:>8}", "shape", "type", "decode ms", "GB/s", "prefill ms", "GB/s", "tok/s");
    let step_only = args.iter().any(|a| a == "--step");
    for &ty in types.iter().filter(|_| !step_only) {
        for &(name, rows, cols) in &shapes {
            let swiglu = name.starts_with("gate");
            let mats = if swiglu { 2 } else { 1 };
            let one = ty.bytes_for((rows * cols) as u64).unwrap() as usize * mats;
            if (quick && rows == 49152 && ty != GgmlType::Q8_0) || !cols.is_multiple_of(ty.block_len()) {
                continue;
            }
            let copies = (64 << 20) / one + 1;
            let copies = if args.iter().any(|a| a == "--hot") { 1 } else { copies.min(if one > (16 << 20) { 2 } else { copies }) };
            let data: Vec<Vec<u8>> = (0..copies * mats).map(|_| tensor(&mut rng, ty, rows, cols)).collect();
            let m = |i: usize| QMatrix { ty, rows, cols, data: &data[i] };
            let mut res = Vec::new();
            for tokens in [1usize, 64] {
                let x: Vec<f32> = (0..tokens * cols).map(|_| rng.f()).collect();
                let mut acts = Acts::new();
                acts.prepare(&x, tokens, cols);
                let mut out = vec![0f32; tokens * rows];
                let reps = if tokens == 1 { 41 } else { 9 };
                let secs = time(reps, |i| {
                    let c = i % copies;
                    if swiglu {
                        matmul_swiglu(&pool, &acts, m(2 * c), m(2 * c + 1), &mut out);
                    } else {
                        matmul(&pool, &acts, &mut [Product { w: m(c), out: &mut out, epilogue: Epilogue::Store }]);
                    }
                });
                res.push((secs * 1e3, one as f64 / secs / 1e9, tokens as f64 / secs));
            }
            println!("{:<22} {:>5} | {:>9.3} {:>7.2} | {:>10.2} {:>7.2} {:>8.0}", name, ty.name(), res[0].0, res[0].1, res[1].0, res[1].1, res[1].2);
        }
    }

    // A whole decode step's products (matrix part of the model), distinct weights per layer.
    let (dim, kv, ffn, vocab, layers) = (576, 192, 1536, 49152, 30);
    let logits_w = tensor(&mut rng, GgmlType::Q8_0, vocab, dim);
    for &ty in types.iter().filter(|t| **t != GgmlType::F32 || !quick) {
        // The K-quants cannot hold rows of 576: those matrices take llama.cpp's fallback type
        // (as in SmolLM2's Q4_K_M file, whose K-quant matrices are only ffn_down).
        let on = |cols: usize| if cols.is_multiple_of(ty.block_len()) { ty } else { fallback(ty) };
        let lw: Vec<[(GgmlType, Vec<u8>); 7]> = (0..layers)
            .map(|_| {
                [(dim, dim), (kv, dim), (kv, dim), (dim, dim), (ffn, dim), (ffn, dim), (dim, ffn)]
                    .map(|(rows, cols)| (on(cols), tensor(&mut rng, on(cols), rows, cols)))
            })
            .collect();
        let bytes: usize = lw.iter().flatten().map(|(_, d)| d.len()).sum::<usize>() + logits_w.len();
        let x: Vec<f32> = (0..dim).map(|_| rng.f()).collect();
        let (mut a, mut a2) = (Acts::new(), Acts::new());
        let (mut q, mut k, mut v, mut h, mut g) = (vec![0f32; dim], vec![0f32; kv], vec![0f32; kv], x.clone(), vec![0f32; ffn]);
        let mut logits = vec![0f32; vocab];
        let m = |(ty, d): &(GgmlType, Vec<u8>), rows, cols| QMatrix { ty: *ty, rows, cols, data: unsafe { std::slice::from_raw_parts(d.as_ptr(), d.len()) } };
        let secs = time(if quick { 5 } else { 15 }, |_| {
            for l in &lw {
                a.prepare(&h, 1, dim);
                matmul(
                    &pool,
                    &a,
                    &mut [
                        Product { w: m(&l[0], dim, dim), out: &mut q, epilogue: Epilogue::Store },
                        Product { w: m(&l[1], kv, dim), out: &mut k, epilogue: Epilogue::Store },
                        Product { w: m(&l[2], kv, dim), out: &mut v, epilogue: Epilogue::Store },
                    ],
                );
                a2.prepare(&q, 1, dim);
                matmul(&pool, &a2, &mut [Product { w: m(&l[3], dim, dim), out: &mut h, epilogue: Epilogue::Accumulate }]);
                a.prepare(&h, 1, dim);
                matmul_swiglu(&pool, &a, m(&l[4], ffn, dim), m(&l[5], ffn, dim), &mut g);
                a2.prepare(&g, 1, ffn);
                matmul(&pool, &a2, &mut [Product { w: m(&l[6], dim, ffn), out: &mut h, epilogue: Epilogue::Accumulate }]);
                // keep the residual bounded
                let s = h.iter().fold(0f32, |s, v| s.max(v.abs())).max(1.0);
                h.iter_mut().for_each(|v| *v /= s);
            }
            a.prepare(&h, 1, dim);
            matmul(
                &pool,
                &a,
                &mut [Product { w: QMatrix { ty: GgmlType::Q8_0, rows: vocab, cols: dim, data: &logits_w }, out: &mut logits, epilogue: Epilogue::Store }],
            );
        });
        let tk = time(41, |_| {
            top_candidates(&pool, &logits, &[1, 2, 3], 1.1, 1.0, 40);
        });
        println!(
            "decode step, {} layers + Q8_0 logits: {:.2} ms = {:.1} tok/s (matrix part), {:.1} GB/s over {:.1} MB; top-40 candidates {:.3} ms",
            if ty.is_k_quant() { format!("{} (rows of 576: {})", ty.name(), fallback(ty).name()) } else { ty.name().to_string() },
            secs * 1e3,
            1.0 / secs,
            bytes as f64 / secs / 1e9,
            bytes as f64 / 1e6,
            tk * 1e3
        );
    }
}
