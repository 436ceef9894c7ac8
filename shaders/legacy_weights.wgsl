// The repacked weight layout shared by embed.wgsl and matmul.wgsl (prepended to both; see
// src/gpu/repack.rs): each row of W is a run of 16-byte units (one vec4<u32> load), and the
// type-specific scales live in a separate array of u32 words.

override WTYPE: u32;            // 0 F32, 1 F16, 2 BF16, 3 Q8_0, 4 Q4_0, 5 Q4_1
override ROWS: u32;             // rows of W
override COLS: u32;             // columns of W (elements per row)
override ROW_UNITS: u32;        // vec4<u32> units per row

// Elements per 16-byte unit of a row.
fn epu() -> u32 {
    switch WTYPE {
        case 0u: { return 4u; }
        case 1u, 2u: { return 8u; }
        case 3u: { return 16u; }
        default: { return 32u; }
    }
}
