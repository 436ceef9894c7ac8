// Sampling reduction: repetition penalty (in place), temperature, then the K largest adjusted
// logits per row and the logsumexp over the whole vocabulary.
//
// Every list (per slice, per merge group, and the final output) has the output format:
// K pairs (id, logit bits) sorted by logit descending, ties by smaller id, then (lse bits, 0).
// Missing entries (fewer than K candidates) are (0xffffffff, -inf).
//
// `select` reads up to SLICE = WG * ELEMS candidates into registers: logits (pass 1, MERGE =
// false) or the candidates of LPW lists of the previous level (MERGE = true). The K largest
// are found exactly by a radix select over the 64-bit composite key (order key of the value,
// !id): 8-bit digits from the top, a histogram per digit, stopping as soon as the bin that
// holds the K-th element is taken whole. The selected set is then bitonic-sorted in
// workgroup memory. K = 1 (greedy) is a single max-reduction instead.

override VOCAB: u32;
override K: u32;              // candidates per list, 1..=256
override SORT_N: u32;         // next power of two >= K
override MERGE: bool;         // read lists (true) or logits (false)
override IN_LISTS: u32 = 1u;  // merge: lists per row in the input
override LPW: u32 = 1u;       // merge: input lists per workgroup (LPW * K <= SLICE)

// WG, ELEMS and SLICE = WG * ELEMS come from src/gpu/ops/topk.rs through the prelude.
const NEG: f32 = -3.0e38;
const PAD_ID: u32 = 0xffffffffu;
const NEG_INF_BITS: u32 = 0xff800000u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> history: array<u32>;
@group(0) @binding(3) var<storage, read> src: array<u32>;      // logits bits or lists
@group(0) @binding(4) var<storage, read_write> dst: array<u32>;

// llama.cpp's rule on each distinct history id: l > 0 ? l / p : l * p. One row per wg.y.
@compute @workgroup_size(64)
fn penalty(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= step.n_history) {
        return;
    }
    let id = history[i];
    if (id >= VOCAB) {
        return;
    }
    let at = gid.y * VOCAB + id;
    let l = logits[at];
    let p = step.repeat_penalty;
    logits[at] = select(l * p, l / p, l > 0.0);
}

// Monotone map from f32 to u32 (larger value -> larger key). It is the IEEE total order, as
// f32::total_cmp in the CPU mirror: -0 ranks below +0.
fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn value_bits(key: u32) -> u32 {
    return select(~key, key & 0x7fffffffu, (key & 0x80000000u) != 0u);
}

// a ranks before b: larger key, then smaller id.
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan: array<array<u32, 256>, 2>;
var<workgroup> found: array<u32, 2>;  // (digit, still needed from it)
var<workgroup> whole: u32;            // 1 when that digit's bin is taken entirely
var<workgroup> n_gt: atomic<u32>;
var<workgroup> n_eq: atomic<u32>;
var<workgroup> list_key: array<u32, 256>;
var<workgroup> list_id: array<u32, 256>;
var<workgroup> red: array<vec2<f32>, 256>;

// Merges two (max, sum of exp(x - max)) pairs.
fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

// Digit d (0 = most significant) of the composite key (hi, lo).
fn digit(hi: u32, lo: u32, d: u32) -> u32 {
    if (d < 4u) {
        return (hi >> (24u - 8u * d)) & 255u;
    }
    return (lo >> (24u - 8u * (d - 4u))) & 255u;
}

// Candidates this workgroup reads: a slice of the vocabulary, or LPW lists of K.
fn count_valid(wgx: u32) -> u32 {
    if (MERGE) {
        return min(LPW, IN_LISTS - wgx * LPW) * K;
    }
    return min(SLICE, VOCAB - wgx * SLICE);
}

// Candidate f of this workgroup as (key, id); key 0 (below every value) when f is past the end.
// Re-read from memory in every pass rather than kept in a private array: dynamically indexed
// private arrays compile to slow code on some backends (lavapipe among them).
fn load(row: u32, wgx: u32, f: u32) -> vec2<u32> {
    if (f >= count_valid(wgx)) {
        return vec2<u32>(0u, PAD_ID);
    }
    if (!MERGE) {
        let first = wgx * SLICE;
        let v = bitcast<f32>(src[row * VOCAB + first + f]) * step.inv_temperature;
        // NaN (a NaN logit, or 0 * inf) ranks as -inf, as in the CPU mirror. Tested on the bits:
        // WGSL lets compilers assume floats are never NaN, so `v != v` may fold to false.
        let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
        // 0x007fffff = key_of(-inf), written out: Tint rejects a constant -inf expression.
        return vec2<u32>(select(key_of(v), 0x007fffffu, nan), first + f);
    }
    let at = (row * IN_LISTS + wgx * LPW + f / K) * (2u * K + 2u) + 2u * (f % K);
    return vec2<u32>(key_of(bitcast<f32>(src[at + 1u])), src[at]);
}

@compute @workgroup_size(WG)
fn select_topk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.y;
    let n_valid = count_valid(wg.x);
    var ms = vec2<f32>(NEG, 0.0);  // this invocation's (max, sum exp) for the logsumexp
    for (var e = 0u; e < ELEMS; e++) {
        let f = lid + e * WG;
        if (!MERGE) {
            if (f < n_valid) {
                ms = lse_merge(ms, vec2<f32>(bitcast<f32>(value_bits(load(row, wg.x, f).x)), 1.0));
            }
        } else if (f < n_valid / K) {
            // Each input list carries its own logsumexp: combine them as (lse, 1).
            let at = (row * IN_LISTS + wg.x * LPW + f) * (2u * K + 2u) + 2u * K;
            ms = lse_merge(ms, vec2<f32>(bitcast<f32>(src[at]), 1.0));
        }
    }

    // logsumexp of this workgroup's inputs
    red[lid] = ms;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = lse_merge(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let total = red[0];
    let lse = total.x + log(total.y);

    let words = 2u * K + 2u;
    let out_base = (row * num_lists_out() + wg.x) * words;

    if (K == 1u) {
        var bk = 0u;
        var bi = PAD_ID;
        for (var e = 0u; e < ELEMS; e++) {
            let x = load(row, wg.x, lid + e * WG);
            if (before(x.x, x.y, bk, bi)) {
                bk = x.x;
                bi = x.y;
            }
        }
        list_key[lid] = bk;
        list_id[lid] = bi;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (lid < s && before(list_key[lid + s], list_id[lid + s], list_key[lid], list_id[lid])) {
                list_key[lid] = list_key[lid + s];
                list_id[lid] = list_id[lid + s];
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            write_list(out_base, 1u, lse);
        }
        return;
    }

    // Radix select of the K-th largest composite key. Padding (keys 0) is excluded.
    let k_sel = min(K, n_valid);
    var p_hi = 0u;
    var p_lo = 0u;
    var m_hi = 0u;
    var m_lo = 0u;
    var need = k_sel;
    if (k_sel < n_valid) {
        for (var d = 0u; d < 8u; d++) {
            atomicStore(&hist[lid], 0u);
            workgroupBarrier();
            for (var e = 0u; e < ELEMS; e++) {
                let x = load(row, wg.x, lid + e * WG);
                let lo = ~x.y;
                if (x.x != 0u && (x.x & m_hi) == p_hi && (lo & m_lo) == p_lo) {
                    atomicAdd(&hist[digit(x.x, lo, d)], 1u);
                }
            }
            workgroupBarrier();
            // Suffix sums: scan[b] = number of matching elements with digit >= b.
            // Ping-pong buffers: one barrier per step.
            let count = atomicLoad(&hist[lid]);
            scan[0][lid] = count;
            workgroupBarrier();
            var cur = 0u;
            for (var off = 1u; off < 256u; off <<= 1u) {
                var x = scan[cur][lid];
                if (lid + off < 256u) {
                    x += scan[cur][lid + off];
                }
                scan[1u - cur][lid] = x;
                cur = 1u - cur;
                workgroupBarrier();
            }
            let incl = scan[cur][lid];
            let excl = incl - count;
            if (excl < need && need <= incl) {
                found[0] = lid;
                found[1] = need - excl;
                whole = select(0u, 1u, count == need - excl);
            }
            let done = workgroupUniformLoad(&whole);
            let b = found[0];
            need = found[1];
            if (d < 4u) {
                p_hi |= b << (24u - 8u * d);
                m_hi |= 255u << (24u - 8u * d);
            } else {
                p_lo |= b << (24u - 8u * (d - 4u));
                m_lo |= 255u << (24u - 8u * (d - 4u));
            }
            if (done == 1u) {
                break;
            }
        }
    }

    // Collect: every element above the prefix, plus `need` of those equal to it (several only
    // when the bin is taken whole, or for identical padding entries).
    if (lid == 0u) {
        atomicStore(&n_gt, 0u);
        atomicStore(&n_eq, 0u);
    }
    list_key[lid] = 0u;
    list_id[lid] = PAD_ID;
    workgroupBarrier();
    let n_above = k_sel - need;
    for (var e = 0u; e < ELEMS; e++) {
        let x = load(row, wg.x, lid + e * WG);
        if (x.x == 0u) {
            continue;
        }
        let hm = x.x & m_hi;
        let lm = (~x.y) & m_lo;
        if (hm > p_hi || (hm == p_hi && lm > p_lo)) {
            let slot = atomicAdd(&n_gt, 1u);
            list_key[slot] = x.x;
            list_id[slot] = x.y;
        } else if (hm == p_hi && lm == p_lo) {
            let slot = atomicAdd(&n_eq, 1u);
            if (slot < need) {
                list_key[n_above + slot] = x.x;
                list_id[n_above + slot] = x.y;
            }
        }
    }

    // Bitonic sort of SORT_N entries, descending.
    for (var size = 2u; size <= SORT_N; size <<= 1u) {
        for (var stride = size / 2u; stride > 0u; stride >>= 1u) {
            workgroupBarrier();
            let j = lid ^ stride;
            if (lid < SORT_N && j > lid) {
                let ka = list_key[lid];
                let ia = list_id[lid];
                let kb = list_key[j];
                let ib = list_id[j];
                if (before(kb, ib, ka, ia) == ((lid & size) == 0u)) {
                    list_key[lid] = kb;
                    list_id[lid] = ib;
                    list_key[j] = ka;
                    list_id[j] = ia;
                }
            }
        }
    }
    workgroupBarrier();
    write_list_parallel(out_base, lid, lse);
}

// Lists written by this pass per row: slices of the vocabulary, or groups of input lists.
fn num_lists_out() -> u32 {
    if (MERGE) {
        return (IN_LISTS + LPW - 1u) / LPW;
    }
    return (VOCAB + SLICE - 1u) / SLICE;
}

fn entry_bits(i: u32) -> u32 {
    // Padding stays (PAD_ID, -inf) whatever its key.
    return select(value_bits(list_key[i]), NEG_INF_BITS, list_id[i] == PAD_ID);
}

fn write_list(base: u32, n: u32, lse: f32) {
    for (var i = 0u; i < n; i++) {
        dst[base + 2u * i] = list_id[i];
        dst[base + 2u * i + 1u] = entry_bits(i);
    }
    dst[base + 2u * K] = bitcast<u32>(lse);
    dst[base + 2u * K + 1u] = 0u;
}

fn write_list_parallel(base: u32, lid: u32, lse: f32) {
    if (lid < K) {
        dst[base + 2u * lid] = list_id[lid];
        dst[base + 2u * lid + 1u] = entry_bits(lid);
    }
    if (lid == 0u) {
        dst[base + 2u * K] = bitcast<u32>(lse);
        dst[base + 2u * K + 1u] = 0u;
    }
}
