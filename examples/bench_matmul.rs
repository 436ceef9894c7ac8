//! Micro-benchmark of the fused product kernel (ops::matvec) at the SmolLM2-135M decode step's
//! shapes (Q/K/V with RMSNorm + RoPE + KV write, O + residual, gate/up + SwiGLU, down + residual,
//! the tied Q8_0 logits) and a 64-token prefill, in each form of the kernel, on the f32 and (when
//! offered) f16 paths of the default adapter. Run it on SwiftShader natively with
//! VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json.
//!
//! cargo run --release --example bench_matmul [-- --f32-only] [--quick (decode only)]
//!     [--types Q4_1,Q8_0,Q4_K,... (instead: each type's decode products at two shapes, with GB/s
//!     per byte of the GGUF file and relative to the first type listed)]
//!
//! Each measurement encodes `reps` dispatches into one pass, submits once and waits (no
//! per-submit overhead, as in a decode step). Printed per product: wall ms (median of 5), CPU ms
//! of this process per product (software adapters run on the CPU: CPU time is steadier than
//! wall time on a shared machine), and GB/s of weight bytes (quants + scales) read once.

use std::time::Instant;

use mobilellm_web::gpu::ops::matvec::{matvec_with, qkv_with, Epilogue, Form, Norm, Product, QkvTarget, Rows, Tiling};
use mobilellm_web::gpu::ops::AttnShape;
use mobilellm_web::gpu::{Gpu, GpuOptions, GpuWeight, Op, Precision, StepParams};
use mobilellm_web::quant::GgmlType;

/// Random block bytes (any quant bit pattern is valid) with sane f16 scales (0.01), or random
/// small floats.
fn random_tensor(seed: &mut u64, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let n = rows * cols;
    match ty {
        GgmlType::F32 => (0..n).flat_map(|_| ((next() % 1000) as f32 / 1e4).to_le_bytes()).collect(),
        GgmlType::F16 | GgmlType::BF16 => (0..n).flat_map(|_| half::f16::from_f32((next() % 1000) as f32 / 1e4).to_le_bytes()).collect(),
        _ if GgmlType::K_AND_Q5.contains(&ty) => mobilellm_web::quant::random_blocks(ty, n, 0.25, *seed).unwrap(),
        _ => {
            let mut out: Vec<u8> = (0..ty.bytes_for(n as u64).unwrap()).map(|_| next() as u8).collect();
            let scales = if ty == GgmlType::Q4_1 { 2 } else { 1 };
            for b in out.chunks_mut(ty.block_bytes()) {
                for k in 0..scales {
                    b[2 * k..2 * k + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                }
            }
            out
        }
    }
}

/// This process's CPU seconds (user + system, all threads: lavapipe's and SwiftShader's workers
/// included). Linux only; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// (wall ms median, CPU ms) per run of `op`.
fn time(gpu: &Gpu, op: &Op, step: &StepParams, step_buf: &wgpu::Buffer) -> (f64, f64) {
    let wait = || gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    gpu.run_ops(&[op], step, step_buf);
    wait();
    let t = Instant::now();
    gpu.run_ops(&[op, op], step, step_buf);
    wait();
    let reps = ((0.3 / (t.elapsed().as_secs_f64() / 2.0)) as usize).clamp(2, 1000);
    let ops: Vec<&Op> = std::iter::repeat_n(op, reps).collect();
    let mut walls = Vec::new();
    let c0 = cpu_seconds();
    for _ in 0..5 {
        let t = Instant::now();
        gpu.run_ops(&ops, step, step_buf);
        wait();
        walls.push(t.elapsed().as_secs_f64() / reps as f64);
    }
    let cpu = (cpu_seconds() - c0) / (5 * reps) as f64;
    walls.sort_by(f64::total_cmp);
    (walls[2] * 1e3, cpu * 1e3)
}

/// One product of the decode step (or a prefill tile run over `tokens`).
struct Case {
    name: &'static str,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    norm: bool,
    what: What,
}

#[derive(Clone, Copy, PartialEq)]
enum What {
    Qkv,
    Product(Epilogue),
    Logits,
}

const SHAPE: AttnShape = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64, n_ctx: 512, rope_base: 100000.0 };

/// One product ready to run: its op, with the weight bytes it reads (as uploaded, and as in
/// the GGUF file).
struct Prepared {
    op: Op,
    step_buf: wgpu::Buffer,
    tokens: u32,
    weight_bytes: f64,
    file_bytes: f64,
    compile_ms: f64,
}

fn prepare(gpu: &Gpu, form: Form, c: &Case, tokens: u32) -> Prepared {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let w = GpuWeight::upload(gpu, c.name, c.ty, c.rows, c.cols, &random_tensor(&mut seed, c.ty, c.rows, c.cols)).unwrap();
    let weight_bytes = (w.data.size() + w.scales.size()) as f64;
    let file_bytes = c.ty.bytes_for((c.rows * c.cols) as u64).unwrap() as f64;
    let x = gpu.storage_buffer_init("x", bytemuck::cast_slice(&vec![0.5f32; (tokens as usize * c.cols).max(16384)]));
    let g = gpu.storage_buffer_init("g", bytemuck::cast_slice(&vec![1.0f32; c.cols.max(16384)]));
    let y = gpu.storage_buffer("y", 4 * (tokens as usize * c.rows) as u64);
    let step_buf = gpu.uniform_buffer("step", std::mem::size_of::<StepParams>() as u64);
    let tiling = if tokens > 1 { Tiling::Tiles } else { Tiling::Decode };
    let rows = if c.what == What::Logits { Rows::Last } else { Rows::All(tiling) };
    let p = Product { weight: &w, x: &x, norm: c.norm.then_some(Norm { weight: &g, eps: 1e-5 }), rows };
    let (q, kc, vc) = (
        gpu.storage_buffer("q", 4 * 576 * tokens as u64),
        gpu.storage_buffer("k", SHAPE.kv_cache_bytes(gpu)),
        gpu.storage_buffer("v", SHAPE.kv_cache_bytes(gpu)),
    );
    let rope = gpu.storage_buffer_init("rope", bytemuck::cast_slice(&SHAPE.rope_table()));
    let t0 = Instant::now();
    let op = match c.what {
        What::Qkv => qkv_with(gpu, &step_buf, &p, &QkvTarget { shape: SHAPE, q: &q, k_cache: &kc, v_cache: &vc, rope: &rope, row_base: 0 }, Some(form)),
        What::Product(e) => matvec_with(gpu, &step_buf, &p, &y, e, Some(form)),
        What::Logits => matvec_with(gpu, &step_buf, &p, &y, Epilogue::Store, Some(form)),
    };
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    gpu.take_error().expect("a valid pipeline");
    Prepared { op, step_buf, tokens, weight_bytes, file_bytes, compile_ms }
}

fn bench(gpu: &Gpu, form: Form, c: &Case, tokens: u32) {
    let p = prepare(gpu, form, c, tokens);
    let (wall, cpu) = time(gpu, &p.op, &StepParams::new(0, tokens), &p.step_buf);
    println!(
        "{:<8} {:5} {:>6}x{:<5} T={:<3} {:8.3} ms  cpu {:8.3} ms  {:6.2} GB/s  (pipeline {:5.0} ms)  lanes {} rows {}{}{}",
        c.name,
        c.ty.name(),
        c.rows,
        c.cols,
        tokens,
        wall,
        cpu,
        p.weight_bytes / wall / 1e6,
        p.compile_ms,
        form.lanes,
        form.rows,
        if form.subgroup_reduce { " subgroups" } else { "" },
        if form.by_unit { " by unit" } else { " by piece" }
    );
}

/// Rounds of the type sweep: each round times every type once, and each type keeps its best
/// round (the least disturbed by other work on a shared machine).
const SWEEP_ROUNDS: usize = 5;

/// Each type's decode product at SmolLM2's down shape and a 3072-row one (1536 columns: whole
/// K-quant blocks), and a 64-token prefill tile run at the down shape, in the adapter's form: GB/s
/// of weight bytes as uploaded and per GGUF-file byte (by wall and by CPU time; read once per
/// run), and relative to the first type (per file byte).
fn type_sweep(gpu: &Gpu, types: &[GgmlType]) {
    for (rows, cols, tokens) in [(576, 1536, 1), (3072, 1536, 1), (576, 1536, 64)] {
        let tiling = if tokens > 1 { Tiling::Tiles } else { Tiling::Decode };
        let prepared: Vec<(Prepared, Form)> = types
            .iter()
            .map(|&ty| {
                let c = Case { name: "sweep", ty, rows, cols, norm: false, what: What::Product(Epilogue::Accumulate) };
                let probe = GpuWeight::upload(gpu, "probe", ty, rows, cols, &random_tensor(&mut 1, ty, rows, cols)).unwrap();
                let form = Form::for_adapter(gpu, &probe, tiling);
                (prepare(gpu, form, &c, tokens), form)
            })
            .collect();
        let mut best = vec![(f64::MAX, f64::MAX); types.len()];
        for _ in 0..SWEEP_ROUNDS {
            for ((p, _), b) in prepared.iter().zip(&mut best) {
                let (wall, cpu) = time(gpu, &p.op, &StepParams::new(0, p.tokens), &p.step_buf);
                *b = (b.0.min(wall), b.1.min(cpu));
            }
        }
        println!("  {tiling:?} {rows}x{cols} T={tokens}, best of {SWEEP_ROUNDS} rounds");
        let per_byte = |p: &Prepared, (wall, cpu): (f64, f64)| (p.file_bytes / wall / 1e6, p.file_bytes / cpu / 1e6);
        let base = per_byte(&prepared[0].0, best[0]);
        for ((&ty, (p, form)), &b) in types.iter().zip(&prepared).zip(&best) {
            let (wall_gbs, cpu_gbs) = per_byte(p, b);
            println!(
                "    {:5} {:8.3} ms  bytes/weight file {:.3} gpu {:.3}  GB/s gpu {:5.2} file {:5.2} (by CPU time {:5.2})  {:4.0}% of {} per file byte ({:.0}% by CPU time)  rows {}",
                ty.name(),
                b.0,
                p.file_bytes / (rows * cols) as f64,
                p.weight_bytes / (rows * cols) as f64,
                p.weight_bytes / b.0 / 1e6,
                wall_gbs,
                cpu_gbs,
                100.0 * wall_gbs / base.0,
                types[0].name(),
                100.0 * cpu_gbs / base.1,
                form.rows,
            );
        }
    }
}

fn main() {
    let f32_only = std::env::args().any(|a| a == "--f32-only");
    let quick = std::env::args().any(|a| a == "--quick");
    let args: Vec<String> = std::env::args().collect();
    let types: Option<Vec<GgmlType>> = args.iter().position(|a| a == "--types").map(|i| {
        let list = args.get(i + 1).expect("--types needs a comma-separated list");
        list.split(',').map(|n| GgmlType::parse_name(n).unwrap_or_else(|| panic!("unknown type {n}"))).collect()
    });
    let decode = [
        Case { name: "qkv", ty: GgmlType::Q4_1, rows: 960, cols: 576, norm: true, what: What::Qkv },
        Case { name: "o", ty: GgmlType::Q4_1, rows: 576, cols: 576, norm: false, what: What::Product(Epilogue::Accumulate) },
        Case { name: "gate_up", ty: GgmlType::Q4_1, rows: 3072, cols: 576, norm: true, what: What::Product(Epilogue::SwigluPairs) },
        Case { name: "down", ty: GgmlType::Q4_1, rows: 576, cols: 1536, norm: false, what: What::Product(Epilogue::Accumulate) },
        Case { name: "logits", ty: GgmlType::Q8_0, rows: 49152, cols: 576, norm: true, what: What::Logits },
        Case { name: "f16", ty: GgmlType::F16, rows: 1536, cols: 576, norm: false, what: What::Product(Epilogue::Store) },
        Case { name: "q8_0", ty: GgmlType::Q8_0, rows: 1536, cols: 576, norm: false, what: What::Product(Epilogue::Store) },
        Case { name: "q4_0", ty: GgmlType::Q4_0, rows: 1536, cols: 576, norm: false, what: What::Product(Epilogue::Store) },
    ];
    let mut paths = vec![true];
    if !f32_only {
        paths.push(false);
    }
    for force_f32 in paths {
        let mut gpu = pollster::block_on(Gpu::new(&GpuOptions { precision: if force_f32 { Precision::F32 } else { Precision::F16 }, ..Default::default() }))
            .expect("GPU adapter");
        if !force_f32 && !gpu.f16 {
            break;
        }
        println!("== {}", gpu.adapter_summary());
        if let Some(types) = &types {
            type_sweep(&gpu, types);
            continue;
        }
        let adapter_is_software = gpu.cpu_like;
        // The adapter's own form first, then the other one.
        for software in [adapter_is_software, !adapter_is_software] {
            gpu.cpu_like = software;
            for (cases, tokens) in [(&decode[..], 1u32), (&decode[1..4], 64)] {
                if quick && tokens > 1 {
                    continue;
                }
                for c in cases {
                    let probe = GpuWeight::upload(&gpu, "probe", c.ty, c.rows, c.cols, &random_tensor(&mut 1, c.ty, c.rows, c.cols)).unwrap();
                    let tiling = if tokens > 1 { Tiling::Tiles } else { Tiling::Decode };
                    bench(&gpu, Form::for_adapter(&gpu, &probe, tiling), c, tokens);
                }
            }
        }
    }
}
