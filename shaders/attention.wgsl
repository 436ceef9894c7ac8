// GQA causal attention over the KV cache, flash-decoding style.
//
// attn_split: one workgroup per (chunk of positions, group of HPW <= 4 query heads sharing one
// KV head, token). It walks its chunk in tiles of WG positions with a running-max softmax:
// one invocation per position computes the HPW scores (q·k, k read once for the group), then
// one invocation per pair of head dims accumulates p·v. When the token's visible positions fit
// in one chunk it writes the normalised result to `out`; otherwise it writes the unnormalised
// partial (o, max, sum) and attn_combine merges the chunks.
//
// The chunking is a function of (kv_len, n_tokens) only, computed identically here and in
// src/gpu/ops/attention.rs (split_for), so the dispatch size follows the step.

override HEAD_DIM: u32;    // even, <= 2 * WG
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

// Few tokens: split long contexts into up to MAX_SPLIT chunks. Many tokens: the tokens already
// give enough workgroups, so split less (the scratch holds max(max_tokens, MAX_SPLIT) rows).
fn split_for(kv_len: u32, n_tokens: u32) -> Split {
    let tiles = (kv_len + WG - 1u) / WG;
    let limit = max(1u, MAX_SPLIT / max(n_tokens, 1u));
    let n = max(min(tiles, limit), 1u);
    let chunk_len = ((tiles + n - 1u) / n) * WG;
    return Split((kv_len + chunk_len - 1u) / chunk_len, chunk_len);
}

fn lane(v: vec4<f32>, h: u32) -> f32 {
    return select(select(v.w, v.z, h == 2u), select(v.y, v.x, h == 0u), h < 2u);
}

@compute @workgroup_size(WG)
fn attn_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let sp = split_for(step.kv_len, step.n_tokens);
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
    let sp = split_for(step.kv_len, step.n_tokens);
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
