// The decode path of matvec.wgsl (TT = 1): one token, R rows per group, in two loop orders
// (UNIT_X) for the two software JITs; the GPU form uses "by unit" with R = 4.

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
