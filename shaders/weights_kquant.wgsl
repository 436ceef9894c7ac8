// The decoder functions of the Q5 types and the K-quants (weights.wgsl has the rest and the
// generic names). Their nibble units carry the quants' low four bits; the high-bit words and
// the per-sub-block scales are in ws, in the regions GpuLayout (src/gpu/repack/mod.rs) lists.

// High bits (repack/kquant.rs: high-bit words) join their nibble at bit 8j + 4 of lane j:
// multiplying the piece's bits by a power of two per lane is a shift that SwiftShader keeps
// vectorised (variable shifts it scalarises), and the mask keeps only the one source bit (or
// pair) that lands there. 5-bit types: slot a's bit j of the piece's byte, slot b's bit j + 4.
// Q6_K: slot a's pair at bits 4j, slot b's at 4j + 2 of the piece's 16 bits.
const SPREAD5_A = vec4<u32>(16u, 2048u, 262144u, 33554432u);   // 2^(4 + 7j)
const SPREAD5_B = vec4<u32>(1u, 128u, 16384u, 2097152u);       // 2^(7j)
const BIT4_MASKS = vec4<u32>(0x10u, 0x1000u, 0x100000u, 0x10000000u);
const SPREAD6_A = vec4<u32>(16u, 256u, 4096u, 65536u);         // 2^(4j + 4)
const SPREAD6_B = vec4<u32>(4u, 64u, 1024u, 16384u);           // 2^(4j + 2)
const BITS45_MASKS = vec4<u32>(0x30u, 0x3000u, 0x300000u, 0x30000000u);

// 5-bit quants: the fifth bit from one high-bit word (at most bit 28 of lane 3: an i32 still).
fn piece_raw_nibble5(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {
    let n = nibbles(w, p);
    let hp = vec4<u32>(h.x >> (8u * p));
    return raw_piece(n.lo | ((hp * SPREAD5_A) & BIT4_MASKS), n.hi | ((hp * SPREAD5_B) & BIT4_MASKS));
}

// Q6_K: bits 4-5 from two high-bit words (pieces 0-1 in the first, 2-3 in the second).
fn piece_raw_nibble6(w: vec4<u32>, h: vec2<u32>, p: u32) -> Piece {
    let n = nibbles(w, p);
    let hp = vec4<u32>(select(h.x, h.y, p >= 2u) >> (16u * (p % 2u)));
    return raw_piece(n.lo | ((hp * SPREAD6_A) & BITS45_MASKS), n.hi | ((hp * SPREAD6_B) & BITS45_MASKS));
}

// The high-bit words of unit u of `row`: ws's last region, after all_units() / 2 (Q5_0: rounded
// up), all_units() (Q5_1, Q6_K) or 5/8 of it (Q5_K) words.
fn unit_high_q5_0(row: u32, u: u32) -> vec2<u32> {
    return vec2<u32>(ws[(all_units() + 1u) / 2u + row * (COLS / 32u) + u], 0u);
}

fn unit_high_q5_1(row: u32, u: u32) -> vec2<u32> {
    return vec2<u32>(ws[all_units() + row * (COLS / 32u) + u], 0u);
}

fn unit_high_q5_k(row: u32, u: u32) -> vec2<u32> {
    let n = all_units();
    return vec2<u32>(ws[n / 8u + n / 2u + row * (COLS / 32u) + u], 0u);
}

fn unit_high_q6_k(row: u32, u: u32) -> vec2<u32> {
    let at = all_units() + 2u * (row * (COLS / 32u) + u);
    return vec2<u32>(ws[at], ws[at + 1u]);
}

// (d, dmin) of the block holding unit u of `row` (Q2_K, Q4_K, Q5_K): the first region.
fn block_dm_k(row: u32, u: u32) -> vec2<f32> {
    return unpack2x16float(ws[(row * (COLS / 32u) + u) / 8u]);
}

// Small unsigned integers (< 2^31) to f32, through the signed conversion (cheaper on CPUs).
fn small_f32x2(v: vec2<u32>) -> vec2<f32> {
    return vec2<f32>(bitcast<vec2<i32>>(v));
}

// Q5_0 and Q5_1 keep their scales as Q4_0 and Q4_1 do (weights.wgsl).
fn unit_dm_q5_0(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    return unit_dm_packed_d(row, u, -16.0);
}

fn unit_dm_q5_1(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    return unit_dm_q4_1(row, u, block);
}

// Half g % 2 of word g / 2 of the region after the block words: the unit's two scale bytes.
fn unit_scale_bytes(row: u32, u: u32) -> u32 {
    let g = row * (COLS / 32u) + u;
    let pair = ws[all_units() / 8u + g / 2u];
    return select(pair >> 16u, pair, g % 2u == 0u);
}

// Q4_K and Q5_K: the unit's six-bit scale and min (bytes 0 and 1) times the block's d and dmin,
// in f32 as ggml does (exact: an f16 times an integer below 64).
fn unit_dm_q4_k(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    let v = unit_scale_bytes(row, u);
    let dm = block * small_f32x2(vec2<u32>(v, v >> 8u) & vec2<u32>(0xffu));
    return vec4<f32>(dm.x, -dm.y, dm.x, -dm.y);
}

// Q2_K: the file's scale bytes of the unit's halves (scale in the low nibble, min in the high).
fn unit_dm_q2_k(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    let v = unit_scale_bytes(row, u);
    let sm = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v, v >> 4u, v >> 8u, v >> 12u) & vec4<u32>(0xfu)));
    let dm = block.xyxy * sm;
    return vec4<f32>(dm.x, -dm.y, dm.z, -dm.w);
}

// Q3_K and Q6_K: the unit's word [d | i8 scale of slot a | of slot b]; raw quants biased by
// `bias` (4, 32). d * scale in f32 as ggml does (exact).
fn unit_dm_signed(row: u32, u: u32, bias: f32) -> vec4<f32> {
    let w = ws[row * (COLS / 32u) + u];
    let sc = vec2<f32>(bitcast<vec2<i32>>(vec2<u32>(w << 8u, w)) >> vec2<u32>(24u));
    let d = unpack2x16float(w).x * sc;
    return vec4<f32>(d.x, -bias * d.x, d.y, -bias * d.y);
}

fn unit_dm_q3_k(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    return unit_dm_signed(row, u, 4.0);
}

fn unit_dm_q6_k(row: u32, u: u32, block: vec2<f32>) -> vec4<f32> {
    return unit_dm_signed(row, u, 32.0);
}
