// y = x·Wᵀ for every weight type, with the decode step's neighbours fused in:
//   prologue  NORM: x is RMS-normalised on the fly (x * g, and the 1/rms of each token applied to
//             the finished dot products: norm(x)·w = rms⁻¹ (x ⊙ g)·w);
//   epilogue  EPILOGUE (EPI_* codes, generated from ops::matvec::Epilogue): store, add into y
//             (residual), SwiGLU of interleaved gate/up rows, gate * up into y (unfused SwiGLU);
//             entry point `qkv`: RoPE on adjacent row pairs, then Q rows to q and K/V rows into
//             the KV cache at the token's position.
// Weights are decoded by weights.wgsl.
//
// Work split: a workgroup of WG invocations is WG / LANES row groups of LANES lanes; a group owns
// R consecutive rows (an even number, so RoPE and SwiGLU pairs stay in one group). Lanes walk the
// units lane, lane + LANES, ... of their rows, then the group's partial sums are added (through
// subgroup shuffles or workgroup memory) and its lanes share the writes.
// - Software adapters (lavapipe, SwiftShader) run a workgroup's invocations as SIMD lanes of one
//   CPU thread: LANES = 1, R = 8 or 16. No barrier and no workgroup memory (a barrier turns every SIMD
//   group into a coroutine there), every lane reads the same x at the same time (one load serves
//   the SIMD group and its 8 rows).
// - GPUs: LANES > 1 lanes per row read adjacent 16-byte units (coalesced), R = 4.
// Two paths by TT (tokens per workgroup):
// - TT = 1 (decode): per unit, x is scaled once (weights.wgsl's raw form) and each row costs a
//   mask, a conversion and an fma per weight; the unit's scale and offset are applied once.
// - TT > 1 (prefill tiles, R = 4): each weight is decoded once (to act_t, times the norm weight)
//   and used for the TT tokens, so W is read once per tile instead of once per token.
//
// Precision: decode products are f32 on both paths (they are bound by memory, not arithmetic);
// tiles multiply in act_t (f16 on the f16 path: packed math on GPUs) and accumulate in f32.
//
// Three files, one kernel (src/gpu/kernel.rs joins them): this one (parameters, bindings, the
// group reduction, epilogues, entry points), matvec_decode.wgsl and matvec_tiles.wgsl (the two
// paths' inner loops).

override WG: u32;                 // invocations per workgroup (<= MATVEC_MAX_WG)
override LANES: u32;              // lanes per row group, a power of two; 1 = software form
override R: u32;                  // rows per group: 4, 8 or 16 (decode), 4 (tiles)
override TT: u32;                 // tokens per workgroup: 1, or MATVEC_TILE
override SUBGROUP_REDUCE: bool = false;
override UNIT_X: bool = true;     // decode loop order: by unit (x read once per unit) or by piece
override NORM: bool = false;
override EPS: f32 = 0.0;
override LAST_TOKEN: bool = false; // read x row n_tokens - 1, write output row 0 (TT = 1)
override EPILOGUE: u32 = EPI_STORE;
// Entry point `qkv`: rows of this matrix start at row ROW_BASE of the [Q; K; V] concatenation.
override Q_ROWS: u32 = 0u;
override KV_ROWS: u32 = 0u;
override HEAD_DIM: u32 = 2u;
override N_CTX: u32 = 0u;
override ROW_BASE: u32 = 0u;

@group(0) @binding(0) var<uniform> step: Step;
// x [T, COLS] read as vec4s: per-invocation loads dominate on CPU implementations. The buffer's
// size must be a multiple of 16 bytes.
@group(0) @binding(3) var<storage, read> xs: array<vec4<f32>>;
// RMSNorm weight g [COLS] (NORM; otherwise the host binds x again: the binding is in every form).
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;
// y [T, ROWS] (main; SwiGLU pairs: [T, ROWS / 2]), or q [T, Q_ROWS] (qkv).
@group(0) @binding(5) var<storage, read_write> ys: array<f32>;
// qkv only: the caches [N_CTX, KV_ROWS] and the RoPE table (cos, sin) [N_CTX, HEAD_DIM / 2].
@group(0) @binding(6) var<storage, read_write> k_cache: array<vec2<act_t>>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<vec2<act_t>>;
@group(0) @binding(8) var<storage, read> rope: array<vec2<f32>>;

// Per-group sums. Decode: a<k> = rows 4k..4k+3 (k < R / 4), ss0.x = sum of x². Tiles: a<k> =
// rows 0-3 of token k, ss0/ss1 = sum of x² of tokens 0-3 / 4-7. Plain fields, not arrays: dynamically
// indexed private arrays end up in memory on some drivers (lavapipe).
struct Acc {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
    a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>,
    ss0: vec4<f32>, ss1: vec4<f32>,
}

// Lane partials for the workgroup-memory reduction: field i of invocation l at i * WG + l.
var<workgroup> red: array<vec4<f32>, MATVEC_RED_LEN>;

// Elements 4v..4v+3 of row t of x, zero past COLS (float rows are padded to whole units).
fn load_x4(t: u32, v: u32) -> vec4<f32> {
    let b = t * COLS + 4u * v;
    var x: vec4<f32>;
    if (COLS % 4u == 0u) {
        x = xs[b / 4u];
    } else {
        x = vec4<f32>(xs[b / 4u][b % 4u], xs[(b + 1u) / 4u][(b + 1u) % 4u],
                      xs[(b + 2u) / 4u][(b + 2u) % 4u], xs[(b + 3u) / 4u][(b + 3u) % 4u]);
    }
    if (COLS % epu() != 0u) {
        x = select(vec4<f32>(0.0), x, vec4<u32>(4u * v) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(COLS));
    }
    return x;
}

// Elements 4v..4v+3 of g. Its buffer is padded to 16 bytes (Gpu::storage_buffer), and past COLS
// it only meets load_x4's zeros.
fn load_g4(v: u32) -> vec4<f32> {
    return norm_w[v];
}

// Whether field i of an Acc (a0..a7, ss0, ss1 in that order) holds sums: decode uses a0 .. the
// R / 4 quads and ss0, tiles all of them.
fn acc_field_used(i: u32) -> bool {
    return TT > 1u || i < R / 4u || i == 8u;
}

fn acc_get(acc: Acc, i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return acc.a0; }
        case 1u: { return acc.a1; }
        case 2u: { return acc.a2; }
        case 3u: { return acc.a3; }
        case 4u: { return acc.a4; }
        case 5u: { return acc.a5; }
        case 6u: { return acc.a6; }
        case 7u: { return acc.a7; }
        case 8u: { return acc.ss0; }
        default: { return acc.ss1; }
    }
}

fn acc_set(acc: ptr<function, Acc>, i: u32, v: vec4<f32>) {
    switch i {
        case 0u: { (*acc).a0 = v; }
        case 1u: { (*acc).a1 = v; }
        case 2u: { (*acc).a2 = v; }
        case 3u: { (*acc).a3 = v; }
        case 4u: { (*acc).a4 = v; }
        case 5u: { (*acc).a5 = v; }
        case 6u: { (*acc).a6 = v; }
        case 7u: { (*acc).a7 = v; }
        case 8u: { (*acc).ss0 = v; }
        default: { (*acc).ss1 = v; }
    }
}

// Sums the group's partials; every lane of the group gets the totals. Called by every
// invocation of the workgroup (uniform control flow: barriers and shuffles inside).
fn reduce_group(acc_in: Acc, lid: u32, lane: u32) -> Acc {
    var acc = acc_in;
    if (LANES == 1u) {
        return acc;
    }
    if (SUBGROUP_REDUCE) {
        for (var i = 0u; i < 10u; i++) {
            if (acc_field_used(i)) {
                acc_set(&acc, i, lanes_sum(acc_get(acc, i), LANES));
            }
        }
        return acc;
    }
    for (var i = 0u; i < 10u; i++) {
        if (acc_field_used(i)) {
            red[i * WG + lid] = acc_get(acc, i);
        }
    }
    // Tree over the group's lanes: rounding error grows with log2(LANES).
    for (var half = LANES / 2u; half > 0u; half >>= 1u) {
        workgroupBarrier();
        if (lane < half) {
            for (var i = 0u; i < 10u; i++) {
                if (acc_field_used(i)) {
                    red[i * WG + lid] += red[i * WG + lid + half];
                }
            }
        }
    }
    workgroupBarrier();
    for (var i = 0u; i < 10u; i++) {
        if (acc_field_used(i)) {
            acc_set(&acc, i, red[i * WG + lid - lane]);
        }
    }
    return acc;
}

// The finished product of row slot s for token k of the group.
fn acc_value(acc: Acc, s: u32, k: u32) -> f32 {
    if (TT == 1u) {
        return acc_get(acc, s / 4u)[s % 4u];
    }
    return acc_get(acc, k)[s];
}

// 1 / rms of token k's x (1 without NORM).
fn acc_inv_rms(acc: Acc, k: u32) -> f32 {
    if (!NORM) {
        return 1.0;
    }
    var ss = acc.ss0.x;
    if (TT > 1u) {
        ss = select(acc.ss1[k % 4u], acc.ss0[k % 4u], k < 4u);
    }
    return 1.0 / sqrt(ss / f32(COLS) + EPS);
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// Where this invocation's group works: (first row, first token, tokens, input token of the
// decode path), and its partial sums reduced over the group.
struct Work {
    first_row: u32,
    t0: u32,
    nt: u32,
    lane: u32,
    acc: Acc,
}

fn work(lid: u32, wg: vec3<u32>, nwg: vec3<u32>) -> Work {
    let lane = lid % LANES;
    let first_row = ((wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES) * R;
    var w: Work;
    w.first_row = first_row;
    w.lane = lane;
    if (TT == 1u) {
        w.t0 = wg.z;
        w.nt = 1u;
        var t_in = wg.z;
        if (LAST_TOKEN) {
            t_in = step.n_tokens - 1u;
            w.t0 = 0u;
        }
        w.acc = reduce_group(products_one(lane, first_row, t_in), lid, lane);
    } else {
        w.t0 = wg.z * TT;
        w.nt = min(TT, step.n_tokens - min(w.t0, step.n_tokens));
        w.acc = reduce_group(products_tile(lane, first_row, w.t0, w.nt), lid, lane);
    }
    return w;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = work(lid, wg, nwg);
    // Outputs come in row pairs (SwiGLU's gate and up are adjacent rows); the group's lanes
    // share them.
    let pairs = R / 2u;
    for (var k = w.lane; k < pairs * TT; k += LANES) {
        let tk = k / pairs;
        let row = w.first_row + 2u * (k % pairs);
        if (tk >= w.nt || row >= ROWS) {
            continue;
        }
        let v = vec2<f32>(acc_value(w.acc, row - w.first_row, tk), acc_value(w.acc, row - w.first_row + 1u, tk)) * acc_inv_rms(w.acc, tk);
        let t = w.t0 + tk;
        let second = row + 1u < ROWS;
        switch EPILOGUE {
            case EPI_ACCUMULATE: {
                ys[t * ROWS + row] += v.x;
                if (second) { ys[t * ROWS + row + 1u] += v.y; }
            }
            case EPI_SWIGLU_PAIRS: {
                ys[t * (ROWS / 2u) + row / 2u] = silu(v.x) * v.y;
            }
            case EPI_SWIGLU_GATE: {
                ys[t * ROWS + row] = silu(ys[t * ROWS + row]) * v.x;
                if (second) { ys[t * ROWS + row + 1u] = silu(ys[t * ROWS + row + 1u]) * v.y; }
            }
            default: {
                ys[t * ROWS + row] = v.x;
                if (second) { ys[t * ROWS + row + 1u] = v.y; }
            }
        }
    }
}

fn rotate(x: vec2<f32>, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x.x * cs.x - x.y * cs.y, x.x * cs.y + x.y * cs.x);
}

// RMSNorm + Q/K/V rows of one concatenated matrix (or one of them: ROW_BASE) + RoPE + KV write.
@compute @workgroup_size(WG)
fn qkv(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = work(lid, wg, nwg);
    let pairs = R / 2u;
    let half = HEAD_DIM / 2u;
    for (var k = w.lane; k < pairs * TT; k += LANES) {
        let tk = k / pairs;
        let row = w.first_row + 2u * (k % pairs);
        let t = w.t0 + tk;
        let pos = step.pos0 + t;
        if (tk >= w.nt || row >= ROWS || pos >= N_CTX) {
            continue;
        }
        let v = vec2<f32>(acc_value(w.acc, row - w.first_row, tk), acc_value(w.acc, row - w.first_row + 1u, tk)) * acc_inv_rms(w.acc, tk);
        // Q_ROWS and KV_ROWS are whole heads, so a pair never straddles Q, K and V.
        let g = ROW_BASE + row;
        if (g < Q_ROWS) {
            let r = rotate(v, rope[pos * half + (g % HEAD_DIM) / 2u]);
            ys[t * Q_ROWS + g] = r.x;
            ys[t * Q_ROWS + g + 1u] = r.y;
        } else if (g < Q_ROWS + KV_ROWS) {
            let j = g - Q_ROWS;
            k_cache[(pos * KV_ROWS + j) / 2u] = vec2<act_t>(rotate(v, rope[pos * half + (j % HEAD_DIM) / 2u]));
        } else {
            let j = g - Q_ROWS - KV_ROWS;
            v_cache[(pos * KV_ROWS + j) / 2u] = vec2<act_t>(v);
        }
    }
}
