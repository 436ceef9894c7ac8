// GQA causal attention over the KV cache, in two forms (ops::attention::AttnForm):
//
// attn_heads (software adapters): one invocation per (query head, token) walks every position the
// token sees, four at a time, with a running-max softmax. No barrier and no workgroup memory (a
// barrier turns each SIMD group into a coroutine on lavapipe and SwiftShader), and one pass at any
// context length.
//
// attn_split (GPUs), flash-decoding style: one workgroup per (chunk of positions, group of HPW <= 4 query heads sharing one
// KV head, token). It walks its chunk in tiles of WG positions with a running-max softmax:
// one invocation per position computes the HPW scores (q·k, k read once for the group), then
// one invocation per pair of head dims accumulates p·v. When the token's visible positions fit
// in one chunk it writes the normalised result to `out`; otherwise it writes the unnormalised
// partial (o, max, sum) and attn_combine merges the chunks.
//
// The chunking (step.attn_chunks, step.attn_chunk_len) is chosen on the CPU for each step
// (ops::attention::split_for), so the dispatch size follows the step.

override HEAD_DIM: u32;    // even, <= MAX_HEAD_DIM (and <= 2 * WG)
override N_HEADS: u32;
override N_KV_HEADS: u32;
override HPW: u32;         // query heads per workgroup: divides N_HEADS / N_KV_HEADS, <= 4
override SCALE: f32;       // 1 / sqrt(HEAD_DIM)

// The HPW heads of a workgroup live in the lanes of vec4s, so the per-head state needs no
// dynamically indexed private arrays (which some compilers lower to slow code).
// WG (positions per tile = invocations = max dim pairs) and MAX_SPLIT come from
// src/gpu/ops/attention.rs through the prelude.
const NEG: f32 = -3.0e38;  // finite "minus infinity": exp(NEG - m) == 0 and NEG - NEG == 0

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> q: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec2<act_t>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec2<act_t>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec2<f32>>;
// Partials, row = t * n_split + chunk: o [rows, N_HEADS, HEAD_DIM/2] and (max, sum) [rows, N_HEADS].
@group(0) @binding(5) var<storage, read_write> part_o: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> part_ml: array<vec2<f32>>;

// q_sh[2i + c] = component c of pair i of the group's heads (head h in lane h), pre-scaled.
var<workgroup> q_sh: array<vec4<f32>, 2u * WG>;
var<workgroup> p_sh: array<vec4<f32>, WG>;   // probabilities per position
var<workgroup> red_sh: array<vec4<f32>, WG>;  // max reduction

struct Split {
    n_split: u32,    // chunks covering 0..kv_len
    chunk_len: u32,  // positions per chunk, a multiple of WG
}

fn split() -> Split {
    return Split(step.attn_chunks, step.attn_chunk_len);
}

fn lane(v: vec4<f32>, h: u32) -> f32 {
    return select(select(v.w, v.z, h == 2u), select(v.y, v.x, h == 0u), h < 2u);
}

@compute @workgroup_size(WG)
fn attn_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let sp = split();
    let c = wg.x;
    let t = wg.z;
    let last = step.pos0 + t;  // the last position token t may see
    let start = c * sp.chunk_len;
    if (t >= step.n_tokens || start > last) {
        return;
    }
    let end = min(start + sp.chunk_len, last + 1u);
    let half = HEAD_DIM / 2u;
    let h0 = wg.y * HPW;
    let kvh = h0 / (N_HEADS / N_KV_HEADS);
    let row_pairs = N_KV_HEADS * half;  // vec2s per cache row
    let kv_off = kvh * half;

    if (lid < half) {
        var qx = vec4<f32>(0.0);
        var qy = vec4<f32>(0.0);
        for (var h = 0u; h < HPW; h++) {
            let v = q[(t * N_HEADS + h0 + h) * half + lid] * SCALE;
            let e = vec4<f32>(f32(h == 0u), f32(h == 1u), f32(h == 2u), f32(h == 3u));
            qx += e * v.x;
            qy += e * v.y;
        }
        q_sh[2u * lid] = qx;
        q_sh[2u * lid + 1u] = qy;
    }
    workgroupBarrier();

    var m = vec4<f32>(NEG);
    var l = vec4<f32>(0.0);
    var acc_x = vec4<f32>(0.0);  // dim 2*lid of each head
    var acc_y = vec4<f32>(0.0);  // dim 2*lid + 1
    for (var base = start; base < end; base += WG) {
        let n = min(WG, end - base);
        // 1. scores of position base + lid for the group's heads
        var s = vec4<f32>(NEG);
        if (lid < n) {
            s = vec4<f32>(0.0);
            let kb = (base + lid) * row_pairs + kv_off;
            for (var i = 0u; i < half; i++) {
                let kk = vec2<f32>(k_cache[kb + i]);
                s = fma(q_sh[2u * i], vec4<f32>(kk.x), fma(q_sh[2u * i + 1u], vec4<f32>(kk.y), s));
            }
        }
        // 2. tile max by a tree (loops over workgroup memory in every invocation are slow
        // on lavapipe), then the running max and the rescaling of what came before
        red_sh[lid] = s;
        workgroupBarrier();
        for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
            if (lid < stride) {
                red_sh[lid] = max(red_sh[lid], red_sh[lid + stride]);
            }
            workgroupBarrier();
        }
        let mn = max(m, red_sh[0]);
        let rescale = exp(m - mn);
        m = mn;
        p_sh[lid] = select(vec4<f32>(0.0), exp(s - m), lid < n);
        workgroupBarrier();
        // 3. p·v: invocation lid owns dim pair lid
        l *= rescale;
        acc_x *= rescale;
        acc_y *= rescale;
        if (lid < half) {
            for (var p = 0u; p < n; p++) {
                let pr = p_sh[p];
                let vv = vec2<f32>(v_cache[(base + p) * row_pairs + kv_off + lid]);
                l += pr;
                acc_x = fma(pr, vec4<f32>(vv.x), acc_x);
                acc_y = fma(pr, vec4<f32>(vv.y), acc_y);
            }
        }
        workgroupBarrier();  // p_sh is rewritten by the next tile
    }

    let single = sp.chunk_len > last;  // all of token t's positions are in chunk 0
    let row = t * sp.n_split + c;
    if (lid < half) {
        for (var h = 0u; h < HPW; h++) {
            let o = vec2<f32>(lane(acc_x, h), lane(acc_y, h));
            if (single) {
                out[(t * N_HEADS + h0 + h) * half + lid] = o / lane(l, h);
            } else {
                part_o[(row * N_HEADS + h0 + h) * half + lid] = o;
            }
        }
        if (!single && lid == 0u) {
            for (var h = 0u; h < HPW; h++) {
                part_ml[row * N_HEADS + h0 + h] = vec2<f32>(lane(m, h), lane(l, h));
            }
        }
    }
}

// One workgroup per (head, token): out = sum_c o_c e^(m_c - M) / sum_c l_c e^(m_c - M).
@compute @workgroup_size(64)
fn attn_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let sp = split();
    let h = wg.x;
    let t = wg.y;
    if (t >= step.n_tokens) {
        return;
    }
    let nc = (step.pos0 + t) / sp.chunk_len + 1u;
    if (nc <= 1u) {
        return;  // attn_split wrote this token's output directly
    }
    let half = HEAD_DIM / 2u;
    var mx = NEG;
    for (var c = 0u; c < nc; c++) {
        mx = max(mx, part_ml[(t * sp.n_split + c) * N_HEADS + h].x);
    }
    var sum = 0.0;
    for (var c = 0u; c < nc; c++) {
        let ml = part_ml[(t * sp.n_split + c) * N_HEADS + h];
        sum += ml.y * exp(ml.x - mx);
    }
    for (var i = lid; i < half; i += 64u) {
        var o = vec2<f32>(0.0);
        for (var c = 0u; c < nc; c++) {
            let row = t * sp.n_split + c;
            let w = exp(part_ml[row * N_HEADS + h].x - mx);
            o += part_o[(row * N_HEADS + h) * half + i] * w;
        }
        out[(t * N_HEADS + h) * half + i] = o / sum;
    }
}

// The HPW query heads of one KV head in vec4 lanes (head h in lane h): q pre-scaled, qg[2i + c]
// = component c of dim pair i; og likewise accumulates the output. Private arrays: in memory on
// CPU adapters like any spill, every lane reading the same index.
var<private> qg: array<vec4<f32>, MAX_HEAD_DIM>;
var<private> og: array<vec4<f32>, MAX_HEAD_DIM>;

@compute @workgroup_size(HEADS_WG)
fn attn_heads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h0 = gid.x * HPW;
    let t = gid.y;
    if (h0 >= N_HEADS || t >= step.n_tokens) {
        return;
    }
    let half = HEAD_DIM / 2u;
    let row_pairs = N_KV_HEADS * half;
    let kv_off = (h0 / (N_HEADS / N_KV_HEADS)) * half;
    for (var i = 0u; i < half; i++) {
        var qx = vec4<f32>(0.0);
        var qy = vec4<f32>(0.0);
        for (var h = 0u; h < HPW; h++) {
            let v = q[(t * N_HEADS + h0 + h) * half + i] * SCALE;
            let e = vec4<f32>(f32(h == 0u), f32(h == 1u), f32(h == 2u), f32(h == 3u));
            qx += e * v.x;
            qy += e * v.y;
        }
        qg[2u * i] = qx;
        qg[2u * i + 1u] = qy;
        og[2u * i] = vec4<f32>(0.0);
        og[2u * i + 1u] = vec4<f32>(0.0);
    }
    let n = step.pos0 + t + 1u;  // positions token t sees
    var m = vec4<f32>(NEG);
    var l = vec4<f32>(0.0);
    for (var base = 0u; base < n; base += 4u) {
        // Four positions per round: q read once for four scores, one rescale of the output per
        // four. Positions past the end read the last one again and get probability 0.
        let b0 = base * row_pairs + kv_off;
        let b1 = min(base + 1u, n - 1u) * row_pairs + kv_off;
        let b2 = min(base + 2u, n - 1u) * row_pairs + kv_off;
        let b3 = min(base + 3u, n - 1u) * row_pairs + kv_off;
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        var s3 = vec4<f32>(0.0);
        for (var i = 0u; i < half; i++) {
            let qx = qg[2u * i];
            let qy = qg[2u * i + 1u];
            let k0 = vec2<f32>(k_cache[b0 + i]);
            let k1 = vec2<f32>(k_cache[b1 + i]);
            let k2 = vec2<f32>(k_cache[b2 + i]);
            let k3 = vec2<f32>(k_cache[b3 + i]);
            s0 = fma(qx, vec4<f32>(k0.x), fma(qy, vec4<f32>(k0.y), s0));
            s1 = fma(qx, vec4<f32>(k1.x), fma(qy, vec4<f32>(k1.y), s1));
            s2 = fma(qx, vec4<f32>(k2.x), fma(qy, vec4<f32>(k2.y), s2));
            s3 = fma(qx, vec4<f32>(k3.x), fma(qy, vec4<f32>(k3.y), s3));
        }
        s1 = select(vec4<f32>(NEG), s1, base + 1u < n);
        s2 = select(vec4<f32>(NEG), s2, base + 2u < n);
        s3 = select(vec4<f32>(NEG), s3, base + 3u < n);
        let mn = max(m, max(max(s0, s1), max(s2, s3)));
        let rescale = exp(m - mn);
        let p0 = exp(s0 - mn);
        let p1 = exp(s1 - mn);
        let p2 = exp(s2 - mn);
        let p3 = exp(s3 - mn);
        m = mn;
        l = l * rescale + (p0 + p1) + (p2 + p3);
        for (var i = 0u; i < half; i++) {
            let v0 = vec2<f32>(v_cache[b0 + i]);
            let v1 = vec2<f32>(v_cache[b1 + i]);
            let v2 = vec2<f32>(v_cache[b2 + i]);
            let v3 = vec2<f32>(v_cache[b3 + i]);
            og[2u * i] = og[2u * i] * rescale + (p0 * v0.x + p1 * v1.x) + (p2 * v2.x + p3 * v3.x);
            og[2u * i + 1u] = og[2u * i + 1u] * rescale + (p0 * v0.y + p1 * v1.y) + (p2 * v2.y + p3 * v3.y);
        }
    }
    for (var i = 0u; i < half; i++) {
        for (var h = 0u; h < HPW; h++) {
            out[(t * N_HEADS + h0 + h) * half + i] = vec2<f32>(lane(og[2u * i], h), lane(og[2u * i + 1u], h)) / lane(l, h);
        }
    }
}
