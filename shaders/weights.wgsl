// The repacked weight layout (src/gpu/repack/) and its one decoder, shared by every kernel that
// reads weights (embed.wgsl, matvec.wgsl). Each row of W is a run of 16-byte units (one
// vec4<u32> load); the type-specific scales (and the quants' bits above the fourth) live in a
// separate array of u32 words.
//
// A unit is decoded in "pieces": piece p holds the raw values that multiply x vec4 p of the unit
// (slot a) and, for the nibble units (every quantised type but Q8_0), x vec4 p + 4 too (slot b).
// Raw values are exact small integers or floats, some scaled by a power of two (RAW_SCALE) so
// that no shift is needed to extract them: a nibble is masked in place, and a fifth and sixth
// bit (Q5_*, Q6_K) are moved next to it by a constant multiply. Then, per unit with
// (d, off) = unit_dm(row, u) (per slot for the types with a scale per 16 elements: Q2_K, Q3_K,
// Q6_K):
//     element = raw * RAW_SCALE * d + off            (exact, as the CPU dequantiser: one rounding
//                                                     where ggml rounds once, e.g. d1 * q - m1)
//     sum_i element_i x_i = d * sum_i raw_i (x_i * RAW_SCALE) + off * sum_i x_i
// The second form is what decode products use: x is scaled once per unit and serves every row,
// and no per-weight multiply by d or add of the offset is left.
//
// One kernel text per weight type: the prelude (gpu/weights.rs: decoder_wgsl) defines WTYPE, the
// type's shape constants (W_*) and the generic names piece_raw, unit_high, block_dm and
// unit_dm_in as calls of this file's (or weights_kquant.wgsl's) functions for that type, so the
// shader compiler never sees the other types' code: every call site is inlined before dead
// branches are folded, and with all 13 types in every copy lavapipe took 2.5x longer to create
// a pipeline.

override ROWS: u32;        // rows of W
override COLS: u32;        // columns of W (elements per row)
override ROW_UNITS: u32;   // vec4<u32> units per row

@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;

// Raw nibbles are masked in place: nibble j of a byte-lane sits at 2^(8j) (low) or, after one
// shift by 4, the high nibble too. x is multiplied by the inverse to match.
const RAW_SCALE_Q4 = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
const NIBBLE_MASKS = vec4<u32>(0xfu, 0xf00u, 0xf0000u, 0xf000000u);
// Q8_0 bytes, masked in place the same way (the top byte shifted down by one byte).
const RAW_SCALE_Q8 = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 65536.0);
const BYTE_MASKS = vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xff0000u);

// Elements per 16-byte unit of a row: F32 4, F16/BF16 8, Q8_0 16, nibble units 32.
fn epu() -> u32 {
    return W_EPU;
}

// Pieces per unit: F32 1 (the whole unit), F16/BF16 2 (two words each), Q8_0 and nibbles 4 (a word).
fn pieces() -> u32 {
    return W_PIECES;
}

// Types stored as nibble units (32 elements, two slots per piece): all but the floats and Q8_0.
fn nibble_unit() -> bool {
    return W_NIBBLE;
}

// Types with a scale per 16 elements (Q2_K, Q3_K, Q6_K): slots a and b of a unit have their own
// (d, off), so their raw dot products and x sums are kept apart.
fn split_slots() -> bool {
    return W_SPLIT;
}

// Types whose units share a block word [d | dmin] with the other 7 units of their 256-element
// block (Q2_K, Q4_K, Q5_K): decode loops may read it once per block (block_dm) and pass it to
// unit_dm_in.
fn block_scaled() -> bool {
    return W_BLOCK_SCALED;
}

// What x is multiplied by before a raw dot product (slot a and slot b alike).
fn raw_scale() -> vec4<f32> {
    if (W_NIBBLE) {
        return RAW_SCALE_Q4;
    }
    if (WTYPE == WT_Q8_0) {
        return RAW_SCALE_Q8;
    }
    return vec4<f32>(1.0);
}

// Units (32 elements) of the whole matrix: the scales array's regions (GpuLayout in
// repack/mod.rs) start at multiples of it.
fn all_units() -> u32 {
    return ROWS * (COLS / 32u);
}

struct Piece {
    a: vec4<f32>,
    b: vec4<f32>,  // nibble units only
}

// (d_a, off_a, d_b, off_b) of unit u of `row`: element = raw * raw_scale() * d + off, with slot
// a's pair for slot a (elements 0..15 of a nibble unit) and b's for slot b; the same pair twice
// unless split_slots(). Floats: (1, 0).
fn unit_dm(row: u32, u: u32) -> vec4<f32> {
    return unit_dm_in(row, u, block_dm(row, u));
}

// The elements of piece p from its raw values (exact, see the top of the file).
fn piece_elements(raw: Piece, dm: vec4<f32>) -> Piece {
    let rs = raw_scale();
    return Piece(fma(raw.a, rs * dm.x, vec4<f32>(dm.y)), fma(raw.b, rs * dm.z, vec4<f32>(dm.w)));
}

// A piece's raw dot products with the scaled x (slot a with pa, slot b with pb): (a + b, 0), or
// (a, b) when the slots have their own scales.
fn piece_dots(raw: Piece, pa: vec4<f32>, pb: vec4<f32>) -> vec2<f32> {
    if (!nibble_unit()) {
        return vec2<f32>(dot(raw.a, pa), 0.0);
    }
    if (split_slots()) {
        return vec2<f32>(dot(raw.a, pa), dot(raw.b, pb));
    }
    return vec2<f32>(dot(raw.a, pa) + dot(raw.b, pb), 0.0);
}

// sum_i element_i x_i over a unit from its raw dots (piece_dots summed over the pieces) and its
// x sums in the same form: (sum over slots a and b, 0), or apart.
fn unit_dot(raw: vec2<f32>, dm: vec4<f32>, x_sum: vec2<f32>) -> f32 {
    if (!(nibble_unit() || WTYPE == WT_Q8_0)) {
        return dm.x * raw.x;
    }
    let a = fma(dm.x, raw.x, dm.y * x_sum.x);
    if (split_slots()) {
        return a + fma(dm.z, raw.y, dm.w * x_sum.y);
    }
    return a;
}

// ---- The float types, Q8_0, Q4_0 and Q4_1 (the Q5 types and K-quants: weights_kquant.wgsl).
// Raw values of piece p of unit `w` (with high-bit words `h`, see unit_high): every case exact.

fn piece_raw_f32(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {
    return Piece(bitcast<vec4<f32>>(w), vec4<f32>(0.0));
}

fn piece_raw_f16(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {
    return Piece(vec4<f32>(unpack2x16float(w[2u * p]), unpack2x16float(w[2u * p + 1u])), vec4<f32>(0.0));
}

fn bf16_pair(w: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(w << 16u, w & 0xffff0000u));
}

fn piece_raw_bf16(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {
    return Piece(vec4<f32>(bf16_pair(w[2u * p]), bf16_pair(w[2u * p + 1u])), vec4<f32>(0.0));
}

fn piece_raw_q8_0(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {
    // Flipping the sign bit turns each signed quant q into the unsigned q + 128 (the offset is
    // the unit's: off = -128 d), which is masked in place like a nibble. The top byte is moved
    // down one byte first, so every value fits an i32.
    let b = w[p] ^ 0x80808080u;
    let u = vec4<u32>(b, b, b, b >> 8u) & BYTE_MASKS;
    return Piece(vec4<f32>(bitcast<vec4<i32>>(u)), vec4<f32>(0.0));
}

// Nibble units: byte j of word p holds element 4p + j (low nibble) and 4p + j + 16 (high).
struct Nibbles {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

fn nibbles(w: vec4<u32>, p: u32) -> Nibbles {
    return Nibbles(vec4<u32>(w[p]) & NIBBLE_MASKS, vec4<u32>(w[p] >> 4u) & NIBBLE_MASKS);
}

fn raw_piece(lo: vec4<u32>, hi: vec4<u32>) -> Piece {
    return Piece(vec4<f32>(bitcast<vec4<i32>>(lo)), vec4<f32>(bitcast<vec4<i32>>(hi)));
}

fn piece_raw_nibble(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {
    let n = nibbles(w, p);
    return raw_piece(n.lo, n.hi);
}

// Types without high bits, or without a block word.
fn unit_high_none(row: u32, u: u32) -> vec2<u32> {
    return vec2<u32>(0u);
}

fn block_dm_none(row: u32, u: u32) -> vec2<f32> {
    return vec2<f32>(0.0);
}

// unit_dm_in per type: `block` is the unit's block_dm.
fn unit_dm_float(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    // Float types have no scales, but every weight kernel binds ws (one bind group for all
    // types; its layout is derived from the shader's uses): a use that never runs keeps it.
    if (ROWS == 0u) {
        return vec4<f32>(f32(ws[0]));
    }
    return vec4<f32>(1.0, 0.0, 1.0, 0.0);
}

fn unit_dm_q8_0(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    let b = row * (COLS / 32u) + u / 2u;
    let d = unpack2x16float(ws[b / 2u])[b % 2u];
    return vec4<f32>(d, -128.0 * d, d, -128.0 * d);
}

// (d, bias * d) for both slots of unit u: the f16 d of block u (one block per unit) packed two
// to a word, as Q4_0 and Q5_0 keep it; `bias` is the type's quant offset (-8, -16).
fn unit_dm_packed_d(row: u32, u: u32, bias: f32) -> vec4<f32> {
    let g = row * (COLS / 32u) + u;
    let d = unpack2x16float(ws[g / 2u])[g % 2u];
    return vec4<f32>(d, bias * d, d, bias * d);
}

fn unit_dm_q4_0(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    return unit_dm_packed_d(row, u, -8.0);
}

fn unit_dm_q4_1(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    return unpack2x16float(ws[row * (COLS / 32u) + u]).xyxy;
}
