// y[t, r] (= or +=) sum_c x[t, c] * W[r, c], and the gated form out = silu(x·Gᵀ) * (x·Uᵀ).
// Weights are in the layout of src/gpu/repack.rs: rows of 16-byte units (one vec4<u32> load).
//
// Work split: a workgroup of WG threads is WG / TPR groups of TPR threads. A group owns four
// "slots": four consecutive rows of W, or (GATED) two rows of the gate matrix (slots 0, 1) and
// the same two rows of up (slots 2, 3). Each thread walks the units lane, lane + TPR, ... of its
// slots, dequantises 4 weights of each slot at a time into registers and uses them for a tile of
// up to TT tokens (decode: 1; prefill: TT, so W is read once per tile instead of once per token),
// and each x vec4 it loads serves all four slots. Partial sums are then added across the group
// in shared memory. Lanes of a group read adjacent units of a row, so weight loads are
// contiguous (TPR * 16 bytes).
//
// Precision: dequantised weights, x and the 4-term dots are act_t (f16 on the f16 path: packed
// math on GPUs); every dot is added to an f32 accumulator, so error does not grow with COLS in f16.

// WTYPE, ROWS (outputs per token), COLS (inputs per token), ROW_UNITS and epu() come from
// weights.wgsl.
override TPR: u32 = 8u;         // threads per row group: a power of two <= WG
override ACCUMULATE: bool = false;
override ONE_TOKEN: bool = false; // exactly one token (row 0 of x and y), whatever step.n_tokens
override GATED: bool = false;

const WG: u32 = 64u;            // threads per workgroup
const TT: u32 = 8u;             // tokens per workgroup (prefill tile)
const SLOTS: u32 = 4u;          // accumulators per token per thread (4 rows, or 2 x gate + up)

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;
// x as vec4s: one load per 4 values (per-invocation loads dominate on CPU implementations such as
// lavapipe). The buffer's size must be a multiple of 16 bytes when COLS is not a multiple of 4.
@group(0) @binding(3) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> ys: array<f32>;
// The up matrix when GATED; otherwise the host binds W again (never read, but bound so that one
// auto layout serves every specialisation).
@group(0) @binding(5) var<storage, read> wq2: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> ws2: array<u32>;

var<workgroup> red: array<f32, WG * SLOTS * TT>;

// Branches, not select(): select would load from both buffers.
fn scale_word(second: bool, i: u32) -> u32 {
    if (second) {
        return ws2[i];
    }
    return ws[i];
}

fn unit_words(second: bool, i: u32) -> vec4<u32> {
    if (second) {
        return wq2[i];
    }
    return wq[i];
}

// Scale d and offset m of unit `u` of `row` (1, 0 for float types).
fn scale(second: bool, row: u32, u: u32) -> vec2<f32> {
    let nb = COLS / 32u;
    switch WTYPE {
        case 3u, 4u: {
            let g = row * nb + select(u, u / 2u, WTYPE == 3u);
            return vec2<f32>(unpack2x16float(scale_word(second, g / 2u))[g % 2u], 0.0);
        }
        case 5u: { return unpack2x16float(scale_word(second, row * nb + u)); }
        default: { return vec2<f32>(1.0, 0.0); }
    }
}

fn nibbles(w: u32, high: bool) -> vec4<act_t> {
    let sh = vec4<u32>(0u, 8u, 16u, 24u) + select(0u, 4u, high);
    return vec4<act_t>((vec4<u32>(w) >> sh) & vec4<u32>(0xfu));
}

// Elements 4j..4j+3 of a unit, dequantised (d * q + m, or the float value).
fn dequant(w: vec4<u32>, j: u32, dm: vec2<act_t>) -> vec4<act_t> {
    switch WTYPE {
        case 0u: { return vec4<act_t>(bitcast<vec4<f32>>(w)); }
        case 1u: {
            let p = select(w.xy, w.zw, j == 1u);
            return vec4<act_t>(vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)));
        }
        case 2u: {
            let p = select(w.xy, w.zw, j == 1u);
            let lo = p << vec2<u32>(16u);
            let hi = p & vec2<u32>(0xffff0000u);
            return vec4<act_t>(bitcast<vec4<f32>>(vec4<u32>(lo.x, hi.x, lo.y, hi.y)));
        }
        case 3u: { return vec4<act_t>(unpack4xI8(w[j])) * dm.x; }
        case 4u: { return (nibbles(w[j % 4u], j >= 4u) - vec4<act_t>(8.0)) * dm.x; }
        default: { return fma(nibbles(w[j % 4u], j >= 4u), vec4<act_t>(dm.x), vec4<act_t>(dm.y)); }
    }
}

// x[tok, c..c+4], zero past COLS (float rows are padded to whole units).
fn load_x(tok: u32, c: u32) -> vec4<act_t> {
    let b = tok * COLS + c;
    var v: vec4<f32>;
    if (COLS % 4u == 0u) {
        v = xs[b / 4u];
    } else {
        v = vec4<f32>(xs[b / 4u][b % 4u], xs[(b + 1u) / 4u][(b + 1u) % 4u],
                      xs[(b + 2u) / 4u][(b + 2u) % 4u], xs[(b + 3u) / 4u][(b + 3u) % 4u]);
    }
    if (COLS % epu() != 0u) {
        v = select(vec4<f32>(0.0), v, vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(COLS));
    }
    return vec4<act_t>(v);
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// x[tok, c..c+4] against the four slots' weights.
fn dots(tok: u32, c: u32, w0: vec4<act_t>, w1: vec4<act_t>, w2: vec4<act_t>, w3: vec4<act_t>) -> vec4<f32> {
    let xv = load_x(tok, c);
    return vec4<f32>(f32(dot(w0, xv)), f32(dot(w1, xv)), f32(dot(w2, xv)), f32(dot(w3, xv)));
}

// The four slots' sums of token t of this thread, in red[(slot * TT + t) * WG + lid].
fn stash(t: u32, lid: u32, a: vec4<f32>) {
    for (var s = 0u; s < SLOTS; s++) {
        red[(s * TT + t) * WG + lid] = a[s];
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let lane = lid % TPR;
    let group = lid / TPR;
    let tile = wg.x + wg.y * nwg.x;
    let rows_per_group = select(4u, 2u, GATED);
    if (tile * (WG / TPR) * rows_per_group >= ROWS) {
        return; // a whole workgroup past the end (uniform: the barriers below stay uniform)
    }
    let first_row = (tile * (WG / TPR) + group) * rows_per_group;
    let n_tokens = select(step.n_tokens, 1u, ONE_TOKEN);
    let t0 = wg.z * TT;
    let nt = min(TT, n_tokens - t0);

    // Slot s reads row first_row + s of W, or (GATED) row first_row + s % 2 of gate (s < 2) or up.
    // Rows past the end are clamped for loading and dropped when storing.
    let r0 = min(first_row, ROWS - 1u);
    let r1 = min(first_row + 1u, ROWS - 1u);
    let r2 = select(min(first_row + 2u, ROWS - 1u), r0, GATED);
    let r3 = select(min(first_row + 3u, ROWS - 1u), r1, GATED);
    let nv = epu() / 4u;

    // One accumulator per token of the tile, its components the four slots. Plain vectors rather
    // than an array indexed by token: such arrays end up in memory on some drivers (lavapipe).
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    for (var u = lane; u < ROW_UNITS; u += TPR) {
        let q0 = wq[r0 * ROW_UNITS + u];
        let q1 = wq[r1 * ROW_UNITS + u];
        let q2 = unit_words(GATED, r2 * ROW_UNITS + u);
        let q3 = unit_words(GATED, r3 * ROW_UNITS + u);
        let dm0 = vec2<act_t>(scale(false, r0, u));
        let dm1 = vec2<act_t>(scale(false, r1, u));
        let dm2 = vec2<act_t>(scale(GATED, r2, u));
        let dm3 = vec2<act_t>(scale(GATED, r3, u));
        for (var j = 0u; j < nv; j++) {
            // Dequantise 4 weights of each slot once, use them for every token of the tile.
            let w0 = dequant(q0, j, dm0);
            let w1 = dequant(q1, j, dm1);
            let w2 = dequant(q2, j, dm2);
            let w3 = dequant(q3, j, dm3);
            let c = u * epu() + 4u * j;
            a0 += dots(t0, c, w0, w1, w2, w3);
            if (nt > 1u) { a1 += dots(t0 + 1u, c, w0, w1, w2, w3); }
            if (nt > 2u) { a2 += dots(t0 + 2u, c, w0, w1, w2, w3); }
            if (nt > 3u) { a3 += dots(t0 + 3u, c, w0, w1, w2, w3); }
            if (nt > 4u) { a4 += dots(t0 + 4u, c, w0, w1, w2, w3); }
            if (nt > 5u) { a5 += dots(t0 + 5u, c, w0, w1, w2, w3); }
            if (nt > 6u) { a6 += dots(t0 + 6u, c, w0, w1, w2, w3); }
            if (nt > 7u) { a7 += dots(t0 + 7u, c, w0, w1, w2, w3); }
        }
    }

    // Tree reduction over the TPR lanes of each group.
    stash(0u, lid, a0);
    if (nt > 1u) { stash(1u, lid, a1); }
    if (nt > 2u) { stash(2u, lid, a2); }
    if (nt > 3u) { stash(3u, lid, a3); }
    if (nt > 4u) { stash(4u, lid, a4); }
    if (nt > 5u) { stash(5u, lid, a5); }
    if (nt > 6u) { stash(6u, lid, a6); }
    if (nt > 7u) { stash(7u, lid, a7); }
    for (var half = TPR / 2u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if (lane < half) {
            for (var s = 0u; s < SLOTS; s++) {
                for (var t = 0u; t < nt; t++) {
                    let i = (s * TT + t) * WG + lid;
                    red[i] += red[i + half];
                }
            }
        }
    }
    workgroupBarrier();

    // The group's results sit at its lane 0; its lanes write them out, one (slot, token) each.
    let base = group * TPR;
    let outputs = select(SLOTS, 2u, GATED) * TT;
    for (var k = lane; k < outputs; k += TPR) {
        let s = k / TT;
        let t = k % TT;
        let row = first_row + s;
        if (t < nt && row < ROWS) {
            let o = (t0 + t) * ROWS + row;
            let v = red[(s * TT + t) * WG + base];
            if (GATED) {
                ys[o] = silu(v) * red[((s + 2u) * TT + t) * WG + base];
            } else if (ACCUMULATE) {
                ys[o] += v;
            } else {
                ys[o] = v;
            }
        }
    }
}
