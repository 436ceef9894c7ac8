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

// sum raw_i * px_i of piece p of unit w, px = x * raw_scale() (slot b: 4-bit types).
fn raw_dot(w: vec4<u32>, p: u32, pa: vec4<f32>, pb: vec4<f32>) -> f32 {
    let raw = piece_raw(w, p);
    if (is_q4()) {
        return dot(raw.a, pa) + dot(raw.b, pb);
    }
    return dot(raw.a, pa);
}

// One unit's x for the decode path, read once and used by every row of the group: normalised
// (x * g), then scaled for raw dots (piece p: slot a in a<p>, slot b in b<p>), with the sum of the
// normalised values (for the unit's offset) and this unit's part of sum x² (NORM).
struct UnitX {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
    b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>,
    sum: f32,
    ss: f32,
}

// x vec4 v of token t, and its square sum and product with g when NORM.
fn normed_x4(t: u32, v: u32, ss: ptr<function, f32>) -> vec4<f32> {
    let x = load_x4(t, v);
    if (!NORM) {
        return x;
    }
    *ss += dot(x, x);
    return x * load_g4(v);
}

fn unit_x(t: u32, u: u32) -> UnitX {
    var x: UnitX;
    var ss = 0.0;
    let v = u * (epu() / 4u);  // the unit's first x vec4
    let n = pieces();
    x.a0 = normed_x4(t, v, &ss);
    if (n > 1u) { x.a1 = normed_x4(t, v + 1u, &ss); }
    if (n > 2u) { x.a2 = normed_x4(t, v + 2u, &ss); x.a3 = normed_x4(t, v + 3u, &ss); }
    if (is_q4()) {
        x.b0 = normed_x4(t, v + 4u, &ss);
        x.b1 = normed_x4(t, v + 5u, &ss);
        x.b2 = normed_x4(t, v + 6u, &ss);
        x.b3 = normed_x4(t, v + 7u, &ss);
    }
    let all = (x.a0 + x.a1) + (x.a2 + x.a3) + (x.b0 + x.b1) + (x.b2 + x.b3);
    x.sum = (all.x + all.y) + (all.z + all.w);
    x.ss = ss;
    let rs = raw_scale();
    x.a0 *= rs; x.a1 *= rs; x.a2 *= rs; x.a3 *= rs;
    x.b0 *= rs; x.b1 *= rs; x.b2 *= rs; x.b3 *= rs;
    return x;
}

// sum_i element_i x_i over the unit `w` of one row (its scale and offset dm).
fn row_unit(w: vec4<u32>, dm: vec2<f32>, x: UnitX) -> f32 {
    let n = pieces();
    var s = raw_dot(w, 0u, x.a0, x.b0);
    if (n > 1u) { s += raw_dot(w, 1u, x.a1, x.b1); }
    if (n > 2u) { s += raw_dot(w, 2u, x.a2, x.b2) + raw_dot(w, 3u, x.a3, x.b3); }
    return unit_dot(s, dm, x.sum);
}

// Unit u of four rows (clamped row indices r) against x.
fn quad_unit(r: vec4<u32>, u: u32, x: UnitX) -> vec4<f32> {
    return vec4<f32>(row_unit(wq[r.x * ROW_UNITS + u], unit_dm(r.x, u), x), row_unit(wq[r.y * ROW_UNITS + u], unit_dm(r.y, u), x),
                     row_unit(wq[r.z * ROW_UNITS + u], unit_dm(r.z, u), x), row_unit(wq[r.w * ROW_UNITS + u], unit_dm(r.w, u), x));
}

// Rows first + 4k .. first + 4k + 3, clamped (rows past the end are loaded as the last row and
// dropped when storing).
fn quad_rows(first: u32, k: u32) -> vec4<u32> {
    return min(vec4<u32>(first + 4u * k) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(ROWS - 1u));
}

// Decode, one piece at a time: x of a piece (in registers) meets the piece's weights of every
// row (loaded as whole units before the pieces). Fewer live values than unit_x: SwiftShader's
// Subzero JIT runs this form faster, lavapipe's LLVM the other.
fn products_one_by_piece(lane: u32, first_row: u32, t: u32) -> Acc {
    let rq0 = quad_rows(first_row, 0u);
    let rq1 = quad_rows(first_row, 1u);
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    var ss = 0.0;
    for (var u = lane; u < ROW_UNITS; u += LANES) {
        let q0 = wq[rq0.x * ROW_UNITS + u];
        let q1 = wq[rq0.y * ROW_UNITS + u];
        let q2 = wq[rq0.z * ROW_UNITS + u];
        let q3 = wq[rq0.w * ROW_UNITS + u];
        var q4 = vec4<u32>(0u);
        var q5 = vec4<u32>(0u);
        var q6 = vec4<u32>(0u);
        var q7 = vec4<u32>(0u);
        if (R > 4u) {
            q4 = wq[rq1.x * ROW_UNITS + u];
            q5 = wq[rq1.y * ROW_UNITS + u];
            q6 = wq[rq1.z * ROW_UNITS + u];
            q7 = wq[rq1.w * ROW_UNITS + u];
        }
        let xv = u * (epu() / 4u);  // the unit's first x vec4
        var d_lo = vec4<f32>(0.0);
        var d_hi = vec4<f32>(0.0);
        var sx = vec4<f32>(0.0);
        for (var p = 0u; p < pieces(); p++) {
            let xa = normed_x4(t, xv + p, &ss);
            var xb = vec4<f32>(0.0);
            if (is_q4()) {
                xb = normed_x4(t, xv + p + 4u, &ss);
            }
            sx += xa + xb;
            let pa = xa * raw_scale();
            let pb = xb * raw_scale();
            d_lo += vec4<f32>(raw_dot(q0, p, pa, pb), raw_dot(q1, p, pa, pb), raw_dot(q2, p, pa, pb), raw_dot(q3, p, pa, pb));
            if (R > 4u) {
                d_hi += vec4<f32>(raw_dot(q4, p, pa, pb), raw_dot(q5, p, pa, pb), raw_dot(q6, p, pa, pb), raw_dot(q7, p, pa, pb));
            }
        }
        let s = sx.x + sx.y + sx.z + sx.w;
        lo += vec4<f32>(unit_dot(d_lo.x, unit_dm(rq0.x, u), s), unit_dot(d_lo.y, unit_dm(rq0.y, u), s),
                        unit_dot(d_lo.z, unit_dm(rq0.z, u), s), unit_dot(d_lo.w, unit_dm(rq0.w, u), s));
        if (R > 4u) {
            hi += vec4<f32>(unit_dot(d_hi.x, unit_dm(rq1.x, u), s), unit_dot(d_hi.y, unit_dm(rq1.y, u), s),
                            unit_dot(d_hi.z, unit_dm(rq1.z, u), s), unit_dot(d_hi.w, unit_dm(rq1.w, u), s));
        }
    }
    var acc: Acc;
    acc.a0 = lo;
    acc.a1 = hi;
    acc.ss0 = vec4<f32>(ss, 0.0, 0.0, 0.0);
    return acc;
}

// Decode, one unit at a time: the unit's x is read and normalised once (unit_x) for all R rows
// (R = 4, 8 or 16: one to four quads), each row's unit decoded whole.
fn products_one_by_unit(lane: u32, first_row: u32, t: u32) -> Acc {
    let rq0 = quad_rows(first_row, 0u);
    let rq1 = quad_rows(first_row, 1u);
    let rq2 = quad_rows(first_row, 2u);
    let rq3 = quad_rows(first_row, 3u);
    var acc: Acc;
    var ss = 0.0;
    for (var u = lane; u < ROW_UNITS; u += LANES) {
        let x = unit_x(t, u);
        ss += x.ss;
        acc.a0 += quad_unit(rq0, u, x);
        if (R > 4u) { acc.a1 += quad_unit(rq1, u, x); }
        if (R > 8u) { acc.a2 += quad_unit(rq2, u, x); acc.a3 += quad_unit(rq3, u, x); }
    }
    acc.ss0 = vec4<f32>(ss, 0.0, 0.0, 0.0);
    return acc;
}

// Decode: rows first_row..first_row+R against token t; this lane's units only.
fn products_one(lane: u32, first_row: u32, t: u32) -> Acc {
    if (UNIT_X) {
        return products_one_by_unit(lane, first_row, t);
    }
    return products_one_by_piece(lane, first_row, t);
}

// The decoded elements of one piece for the tile's four rows.
struct Rows4 {
    a0: vec4<act_t>, a1: vec4<act_t>, a2: vec4<act_t>, a3: vec4<act_t>,
    b0: vec4<act_t>, b1: vec4<act_t>, b2: vec4<act_t>, b3: vec4<act_t>,
}

struct TokenDots {
    d: vec4<f32>,  // the four rows
    ss: f32,       // this piece's part of sum x²
}

// Token t's x for piece p of the unit starting at x vec4 xv, against the four rows (whose
// elements already carry the norm weight g).
fn token_dots(t: u32, xv: u32, p: u32, w: Rows4) -> TokenDots {
    let xa = load_x4(t, xv + p);
    var xb = vec4<f32>(0.0);
    if (is_q4()) {
        xb = load_x4(t, xv + p + 4u);
    }
    var ss = 0.0;
    if (NORM) {
        ss = dot(xa, xa) + dot(xb, xb);
    }
    let ha = vec4<act_t>(xa);
    var d = vec4<f32>(f32(dot(w.a0, ha)), f32(dot(w.a1, ha)), f32(dot(w.a2, ha)), f32(dot(w.a3, ha)));
    if (is_q4()) {
        let hb = vec4<act_t>(xb);
        d += vec4<f32>(f32(dot(w.b0, hb)), f32(dot(w.b1, hb)), f32(dot(w.b2, hb)), f32(dot(w.b3, hb)));
    }
    return TokenDots(d, ss);
}

// Tiles: rows first_row..first_row+4 against tokens t0..t0+nt; this lane's units only.
fn products_tile(lane: u32, first_row: u32, t0: u32, nt: u32) -> Acc {
    let r0 = min(first_row, ROWS - 1u);
    let r1 = min(first_row + 1u, ROWS - 1u);
    let r2 = min(first_row + 2u, ROWS - 1u);
    let r3 = min(first_row + 3u, ROWS - 1u);
    var acc: Acc;
    for (var u = lane; u < ROW_UNITS; u += LANES) {
        let q0 = wq[r0 * ROW_UNITS + u];
        let q1 = wq[r1 * ROW_UNITS + u];
        let q2 = wq[r2 * ROW_UNITS + u];
        let q3 = wq[r3 * ROW_UNITS + u];
        let dm0 = unit_dm(r0, u);
        let dm1 = unit_dm(r1, u);
        let dm2 = unit_dm(r2, u);
        let dm3 = unit_dm(r3, u);
        let xv = u * (epu() / 4u);
        for (var p = 0u; p < pieces(); p++) {
            // Decode each weight once (times the norm weight: (x * g)·w = x·(g * w)); it serves
            // every token of the tile.
            var ga = vec4<f32>(1.0);
            var gb = vec4<f32>(1.0);
            if (NORM) {
                ga = load_g4(xv + p);
                if (is_q4()) {
                    gb = load_g4(xv + p + 4u);
                }
            }
            let e0 = piece_elements(piece_raw(q0, p), dm0);
            let e1 = piece_elements(piece_raw(q1, p), dm1);
            let e2 = piece_elements(piece_raw(q2, p), dm2);
            let e3 = piece_elements(piece_raw(q3, p), dm3);
            let w = Rows4(vec4<act_t>(e0.a * ga), vec4<act_t>(e1.a * ga), vec4<act_t>(e2.a * ga), vec4<act_t>(e3.a * ga),
                          vec4<act_t>(e0.b * gb), vec4<act_t>(e1.b * gb), vec4<act_t>(e2.b * gb), vec4<act_t>(e3.b * gb));
            var r = token_dots(t0, xv, p, w);
            acc.a0 += r.d;
            acc.ss0.x += r.ss;
            if (TT > 1u && nt > 1u) { r = token_dots(t0 + 1u, xv, p, w); acc.a1 += r.d; acc.ss0.y += r.ss; }
            if (TT > 2u && nt > 2u) { r = token_dots(t0 + 2u, xv, p, w); acc.a2 += r.d; acc.ss0.z += r.ss; }
            if (TT > 3u && nt > 3u) { r = token_dots(t0 + 3u, xv, p, w); acc.a3 += r.d; acc.ss0.w += r.ss; }
            if (TT > 4u && nt > 4u) { r = token_dots(t0 + 4u, xv, p, w); acc.a4 += r.d; acc.ss1.x += r.ss; }
            if (TT > 5u && nt > 5u) { r = token_dots(t0 + 5u, xv, p, w); acc.a5 += r.d; acc.ss1.y += r.ss; }
            if (TT > 6u && nt > 6u) { r = token_dots(t0 + 6u, xv, p, w); acc.a6 += r.d; acc.ss1.z += r.ss; }
            if (TT > 7u && nt > 7u) { r = token_dots(t0 + 7u, xv, p, w); acc.a7 += r.d; acc.ss1.w += r.ss; }
        }
    }
    return acc;
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
