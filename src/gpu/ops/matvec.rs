//! Products with a weight matrix and their fused neighbours (Kernel::Matvec, shaders/matvec.wgsl):
//! RMSNorm of the input, residual add, SwiGLU, RoPE + KV-cache write.
//!
//! The kernel comes in two forms, chosen per adapter by [`Form::for_adapter`], and two paths,
//! chosen per op by [`Tiling`]; all four are one WGSL text specialised by override constants.

use super::AttnShape;
use crate::gpu::op::split_workgroups;
use crate::gpu::{Gpu, GpuWeight, Kernel, Op, StepParams};

/// Tokens per workgroup in the tile path (prefill).
pub const TILE: u32 = 8;
/// Largest workgroup the kernel's reduction memory is sized for.
const MAX_WG: u32 = 64;
/// Workgroup size of the software form: one 8-wide SIMD group of lavapipe (AVX2), two of
/// SwiftShader's 4-wide ones. Measured on both (bench_matmul): 4 is slower on lavapipe, and 64
/// is no faster on either while leaving fewer workgroups to spread over the CPU's threads.
const SOFTWARE_WG: u32 = 8;
/// Fewest workgroups the software form keeps per product (SwiftShader fans a dispatch out to at
/// most 16 tasks; lavapipe to one per CPU thread).
const SOFTWARE_MIN_WORKGROUPS: u32 = 16;
/// Workgroup size of the GPU form.
const GPU_WG: u32 = 64;

/// What happens to each finished dot product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// y = x·Wᵀ
    Store,
    /// y += x·Wᵀ (the residual add).
    Accumulate,
    /// W's rows are gate and up interleaved (gate row i = W row 2i, up row i = W row 2i + 1):
    /// y[i] = silu(gate_i·x) * (up_i·x), y has W.rows / 2 columns.
    SwigluPairs,
    /// W is the up matrix and y already holds x·gateᵀ: y = silu(y) * (x·Wᵀ). The unfused SwiGLU,
    /// for files whose gate and up types differ.
    SwigluGate,
}

impl Epilogue {
    const ALL: [Epilogue; 4] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwigluPairs, Epilogue::SwigluGate];

    fn code(self) -> u32 {
        self as u32
    }

    fn wgsl_name(self) -> &'static str {
        match self {
            Epilogue::Store => "EPI_STORE",
            Epilogue::Accumulate => "EPI_ACCUMULATE",
            Epilogue::SwigluPairs => "EPI_SWIGLU_PAIRS",
            Epilogue::SwigluGate => "EPI_SWIGLU_GATE",
        }
    }
}

/// The constants shaders/matvec.wgsl takes from here (emitted into its prelude).
pub(crate) fn wgsl_constants() -> Vec<(&'static str, u32)> {
    let mut c: Vec<(&'static str, u32)> = Epilogue::ALL.iter().map(|e| (e.wgsl_name(), e.code())).collect();
    // Reduction memory: 10 vec4 fields per invocation (see `struct Acc`).
    c.extend([("MATVEC_TILE", TILE), ("MATVEC_MAX_WG", MAX_WG), ("MATVEC_RED_LEN", 10 * MAX_WG)]);
    c
}

/// Which path of the kernel an op uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiling {
    /// One token per workgroup (grid z = tokens): W is read once per token, with the fewest
    /// operations per weight. Decode steps.
    Decode,
    /// TILE tokens per workgroup: each weight decoded once per tile. Prefill.
    Tiles,
}

/// Which rows of x an op reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Every token of the step, with the given path.
    All(Tiling),
    /// Only token n_tokens - 1, written to output row 0 (the logits during generation).
    Last,
}

/// The kernel's shape on an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    pub wg: u32,
    /// Lanes per row group (1 = no reduction).
    pub lanes: u32,
    /// Rows per row group: 4, 8 or 16 (decode; 16 only by unit), 4 (tiles).
    pub rows: u32,
    /// Reduce with subgroup shuffles instead of workgroup memory.
    pub subgroup_reduce: bool,
    /// Decode loop order: a unit of x read once for all rows (true), or one piece at a time.
    pub by_unit: bool,
}

impl Form {
    /// - Software adapters (`Gpu::cpu_like`): 1 lane per group. Loads are what costs most there
    ///   (lavapipe turns every storage load into a loop over the SIMD lanes, SwiftShader into a
    ///   gather), so each invocation reads and normalises x once for many rows. The loop order
    ///   follows the JIT, told apart by the SIMD width (the smallest subgroup): lavapipe's LLVM
    ///   (8 lanes) runs "by unit" fastest, with 16 rows where that still leaves
    ///   SOFTWARE_MIN_WORKGROUPS workgroups (bench_matmul: -30% on gate/up over 8 rows by piece);
    ///   SwiftShader's Subzero (4 lanes) runs "by piece" with 8 rows fastest (by unit is 1.5x
    ///   slower there: more live values than its register allocator keeps). Tiles: 4 rows (their
    ///   8 tokens already hold 32 sums).
    /// - GPUs: enough lanes per row that each reads a handful of 16-byte units (the group reads
    ///   lanes * 16 contiguous bytes of a row), at most 32, so short rows keep lanes busy and the
    ///   reduction short; subgroup shuffles when the device has them and a group fits in the
    ///   smallest subgroup. Not measured on a real GPU here.
    pub fn for_adapter(gpu: &Gpu, w: &GpuWeight, tiling: Tiling) -> Form {
        if gpu.cpu_like {
            let by_unit = gpu.info.subgroup_min_size >= 8;
            let rows = match tiling {
                Tiling::Tiles => 4,
                Tiling::Decode if by_unit && w.rows / (SOFTWARE_WG * 16) >= SOFTWARE_MIN_WORKGROUPS => 16,
                Tiling::Decode => 8,
            };
            return Form { wg: SOFTWARE_WG, lanes: 1, rows, subgroup_reduce: false, by_unit };
        }
        let units = w.row_words / 4;
        let lanes = (units / 4).max(1);
        let lanes = (1u32 << (31 - lanes.leading_zeros())).clamp(4, 32);
        let subgroup_reduce = gpu.subgroups && lanes <= gpu.info.subgroup_min_size;
        Form { wg: GPU_WG, lanes, rows: 4, subgroup_reduce, by_unit: true }
    }

    fn rows_per_workgroup(&self) -> u32 {
        self.wg / self.lanes * self.rows
    }
}

/// The RMSNorm fused into a product's input: x / rms(x) * weight.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'a> {
    /// f32 [cols], in a buffer padded to 16 bytes (as every Gpu::storage_buffer is).
    pub weight: &'a wgpu::Buffer,
    pub eps: f32,
}

/// The input side of a product: W, x (f32 [T, W.cols], in a buffer whose size is a multiple of
/// 16 bytes), an optional RMSNorm, and which tokens.
#[derive(Clone, Copy)]
pub struct Product<'a> {
    pub weight: &'a GpuWeight,
    pub x: &'a wgpu::Buffer,
    pub norm: Option<Norm<'a>>,
    pub rows: Rows,
}

impl Product<'_> {
    fn tiling(&self) -> Tiling {
        match self.rows {
            Rows::All(t) => t,
            Rows::Last => Tiling::Decode,
        }
    }

    /// Override constants shared by both entry points, and the workgroup grid.
    fn setup(&self, gpu: &Gpu, form: Option<Form>) -> (Vec<(&'static str, f64)>, crate::gpu::Dispatch) {
        let w = self.weight;
        let tiling = self.tiling();
        let form = form.unwrap_or_else(|| Form::for_adapter(gpu, w, tiling));
        let tt = if tiling == Tiling::Tiles { TILE } else { 1 };
        assert!(matches!(form.rows, 4 | 8 | 16) && (tt == 1 || form.rows == 4) && (form.by_unit || form.rows <= 8), "matvec: {form:?} with {tt} tokens");
        assert!(form.wg <= MAX_WG && form.wg.is_multiple_of(form.lanes), "matvec: {form:?}");
        let constants = vec![
            ("ROWS", w.rows as f64),
            ("COLS", w.cols as f64),
            ("ROW_UNITS", (w.row_words / 4) as f64),
            ("WG", form.wg as f64),
            ("LANES", form.lanes as f64),
            ("R", form.rows as f64),
            ("TT", tt as f64),
            ("SUBGROUP_REDUCE", form.subgroup_reduce as u32 as f64),
            ("UNIT_X", form.by_unit as u32 as f64),
            ("NORM", self.norm.is_some() as u32 as f64),
            ("EPS", self.norm.map_or(0.0, |n| n.eps as f64)),
            ("LAST_TOKEN", (self.rows == Rows::Last) as u32 as f64),
        ];
        let [gx, gy] = split_workgroups(w.rows.div_ceil(form.rows_per_workgroup()));
        let last = self.rows == Rows::Last;
        let dispatch = Box::new(move |s: &StepParams| {
            let gz = if last { 1 } else { s.n_tokens.div_ceil(tt) };
            [gx, gy, gz]
        });
        (constants, dispatch)
    }

    /// Bindings 0-4: step, W (data, scales), x, the norm weight (x again without a norm: the
    /// binding exists in every form of the kernel).
    fn bindings<'b>(&'b self, step: &'b wgpu::Buffer) -> Vec<&'b wgpu::Buffer> {
        let norm = self.norm.map_or(self.x, |n| n.weight);
        vec![step, &self.weight.data, &self.weight.scales, self.x, norm]
    }
}

/// y (=, +=, SwiGLU) x·Wᵀ, see [`Epilogue`]. y: f32 [T, W.rows] ([T, W.rows / 2] for SwigluPairs;
/// [1, ...] for Rows::Last).
pub fn matvec(gpu: &Gpu, step: &wgpu::Buffer, p: &Product, y: &wgpu::Buffer, epilogue: Epilogue) -> Op {
    matvec_with(gpu, step, p, y, epilogue, None)
}

/// [`matvec`] in a given form instead of the adapter's (tests and benchmarks of every form).
pub fn matvec_with(gpu: &Gpu, step: &wgpu::Buffer, p: &Product, y: &wgpu::Buffer, epilogue: Epilogue, form: Option<Form>) -> Op {
    if epilogue == Epilogue::SwigluPairs {
        assert!(p.weight.rows.is_multiple_of(2), "matvec: SwiGLU pairs need an even row count");
    }
    let (mut constants, dispatch) = p.setup(gpu, form);
    constants.push(("EPILOGUE", epilogue.code() as f64));
    let pipeline = gpu.pipeline(Kernel::Matvec(p.weight.ty), "main", &constants);
    let mut bufs = p.bindings(step);
    bufs.push(y);
    let bind_group = gpu.bind_group("matvec", &pipeline, &bufs);
    Op::new(label(epilogue, p), pipeline, bind_group, dispatch)
}

fn label(epilogue: Epilogue, p: &Product) -> &'static str {
    match (epilogue, p.norm.is_some()) {
        (Epilogue::Store, false) => "matvec",
        (Epilogue::Store, true) => "norm_matvec",
        (Epilogue::Accumulate, _) => "matvec_residual",
        (Epilogue::SwigluPairs | Epilogue::SwigluGate, _) => "norm_gate_up_swiglu",
    }
}

/// Where the `qkv` entry point writes: q f32 [T, n_heads * head_dim] (rotated), and rows
/// pos0..pos0+T of the caches (act_t [n_ctx, n_kv_heads * head_dim]; K rotated).
pub struct QkvTarget<'a> {
    pub shape: AttnShape,
    pub q: &'a wgpu::Buffer,
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    /// The session's RoPE table, see [`super::rope_kv::rope_table`].
    pub rope: &'a wgpu::Buffer,
    /// Row of the [Q; K; V] concatenation that W's row 0 is: 0 for the fused matrix (or Q alone),
    /// q_dim for K alone, q_dim + kv_dim for V alone.
    pub row_base: u32,
}

/// RMSNorm + Q/K/V product + RoPE + KV-cache write in one dispatch (W = [Wq; Wk; Wv], or one of
/// them with `row_base`).
pub fn qkv(gpu: &Gpu, step: &wgpu::Buffer, p: &Product, t: &QkvTarget) -> Op {
    qkv_with(gpu, step, p, t, None)
}

/// [`qkv`] in a given form (tests).
pub fn qkv_with(gpu: &Gpu, step: &wgpu::Buffer, p: &Product, t: &QkvTarget, form: Option<Form>) -> Op {
    let s = &t.shape;
    let (q_rows, kv_rows) = (s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim);
    assert!(s.head_dim.is_multiple_of(2), "qkv: head_dim must be even");
    assert!(t.row_base + p.weight.rows <= q_rows + 2 * kv_rows, "qkv: rows past V");
    assert!(p.rows != Rows::Last, "qkv: every token's keys and values are needed");
    let (mut constants, dispatch) = p.setup(gpu, form);
    constants.extend([
        ("Q_ROWS", q_rows as f64),
        ("KV_ROWS", kv_rows as f64),
        ("HEAD_DIM", s.head_dim as f64),
        ("N_CTX", s.n_ctx as f64),
        ("ROW_BASE", t.row_base as f64),
    ]);
    let pipeline = gpu.pipeline(Kernel::Matvec(p.weight.ty), "qkv", &constants);
    let mut bufs = p.bindings(step);
    bufs.extend([t.q, t.k_cache, t.v_cache, t.rope]);
    let bind_group = gpu.bind_group("qkv", &pipeline, &bufs);
    Op::new("norm_qkv_rope", pipeline, bind_group, dispatch)
}
