//! Hostile inputs: truncations, byte flips, absurd counts and lengths, bad tensor entries. Each
//! must give a typed error (never a panic, never a huge allocation) in bounded time.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use mobilellm_web::gguf::{GgufError, GgufFile};
use mobilellm_web::model::{synth_gguf, Arch, ModelConfig, ModelTensors, SynthSpec};

/// Parses, then (if that worked) loads config and tensors and dequantises everything, proving
/// nothing downstream panics either. Returns the parse result.
fn parse_all(bytes: &[u8]) -> Result<(), GgufError> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let t0 = Instant::now();
        let f = GgufFile::parse(bytes);
        assert!(t0.elapsed() < Duration::from_secs(2), "parse took {:?}", t0.elapsed());
        let f = f?;
        if let Ok(cfg) = ModelConfig::from_gguf(&f) {
            if let Ok(t) = ModelTensors::from_gguf(&f, bytes, &cfg) {
                for l in &t.layers {
                    l.wq.to_f32().unwrap();
                    l.attn_norm.to_f32().unwrap();
                }
                t.lm_head().to_f32().unwrap();
            }
        }
        Ok(())
    }));
    match r {
        Ok(v) => v,
        Err(_) => panic!("panicked on a {}-byte input", bytes.len()),
    }
}

fn synth() -> Vec<u8> {
    synth_gguf(&SynthSpec::tiny(Arch::MobileLlm)).unwrap()
}

#[test]
fn truncated_everywhere_is_an_error() {
    let bytes = synth();
    let f = GgufFile::parse(&bytes).unwrap();
    let data_end = f.tensors.iter().map(|t| f.data_offset + t.offset + t.n_bytes).max().unwrap() as usize;
    let header = f.data_offset as usize;
    let cuts = (0..header).chain((header..bytes.len()).step_by(97)).chain([data_end - 1, data_end, bytes.len()]);
    let mut n = 0;
    for cut in cuts {
        let r = parse_all(&bytes[..cut]);
        if cut < data_end {
            assert!(r.is_err(), "cut at {cut} of {} parsed", bytes.len());
            n += 1;
        } else {
            assert_eq!(r, Ok(()), "cut at {cut} (only end padding lost)");
        }
    }
    assert!(n > header);
    // Inside the header, the error says what ran out.
    assert!(matches!(GgufFile::parse(&bytes[..30]), Err(GgufError::Truncated { .. }) | Err(GgufError::ImplausibleCount { .. })));
    assert!(matches!(GgufFile::parse(&bytes[..header / 2]), Err(GgufError::Truncated { .. })));
    assert!(matches!(GgufFile::parse(&bytes[..data_end - 1]), Err(GgufError::BadTensor { .. })));
}

#[test]
fn random_byte_flips_never_panic() {
    let bytes = synth();
    let header = GgufFile::parse(&bytes).unwrap().data_offset as usize;
    let mut s = 0x9E3779B97F4A7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut errs, mut oks) = (0, 0);
    let t0 = Instant::now();
    for case in 0..600 {
        let mut b = bytes.clone();
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            // Mostly the header (where structure lives); some anywhere; small tensors region too.
            let pos = if case % 5 == 4 { next() as usize % b.len() } else { next() as usize % header };
            b[pos] = match next() % 3 {
                0 => b[pos] ^ (1 << (next() % 8)),
                1 => 0xFF,
                _ => next() as u8,
            };
        }
        match parse_all(&b) {
            Ok(()) => oks += 1,
            Err(_) => errs += 1,
        }
    }
    eprintln!("byte flips: {errs} errors, {oks} parsed, {:?}", t0.elapsed());
    assert!(errs > 100, "flips in the header should mostly be caught");
}

/// Builds GGUF bytes by hand so that fields can hold any value.
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// Tensor info entry.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len().div_ceil(32) * 32 + n, 0);
        self
    }
    fn parse(&self) -> Result<(), GgufError> {
        parse_all(&self.0)
    }
}

#[test]
fn absurd_counts_are_implausible_not_allocations() {
    let t0 = Instant::now();
    // A string array of 1e12 entries in a ~1 KB file.
    let mut r = Raw::new(3, 0, 1);
    r.str("tokenizer.ggml.tokens").u32(9).u32(8).u64(1_000_000_000_000).pad(1000);
    assert!(matches!(r.parse(), Err(GgufError::ImplausibleCount { what: "array element", count: 1_000_000_000_000, .. })));
    // Arrays of every element type, count u64::MAX.
    for elem in 0..=12u32 {
        let mut r = Raw::new(3, 0, 1);
        r.str("k").u32(9).u32(elem).u64(u64::MAX).pad(64);
        assert!(matches!(r.parse(), Err(GgufError::ImplausibleCount { .. })), "elem type {elem}");
    }
    for (nt, nkv) in [(1u64 << 40, 0u64), (0, 1 << 40), (u64::MAX, u64::MAX), (u64::MAX / 32 + 1, 0), (0, u64::MAX / 13 + 1)] {
        assert!(matches!(Raw::new(3, nt, nkv).pad(2048).parse(), Err(GgufError::ImplausibleCount { .. })), "{nt} {nkv}");
    }
    // Huge string lengths: key, value, tensor name.
    let mut r = Raw::new(3, 0, 1);
    r.u64(u64::MAX).pad(100);
    assert!(matches!(r.parse(), Err(GgufError::Truncated { .. })));
    let mut r = Raw::new(3, 0, 1);
    r.str("k").u32(8).u64(1 << 50).pad(100);
    assert!(matches!(r.parse(), Err(GgufError::Truncated { .. })));
    let mut r = Raw::new(3, 1, 0);
    r.u64(u64::MAX - 3).pad(100);
    assert!(matches!(r.parse(), Err(GgufError::Truncated { .. })));
    // Many values in a big-enough file: capped before allocating ~32 bytes per value.
    let mut r = Raw::new(3, 0, 1);
    let n = (1u64 << 24) + 1;
    r.str("k").u32(9).u32(0).u64(n);
    r.0.resize(r.0.len() + n as usize, 7);
    assert!(matches!(r.parse(), Err(GgufError::ImplausibleCount { .. })));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn structural_errors_are_typed() {
    assert_eq!(GgufFile::parse(b"").unwrap_err(), GgufError::Truncated { offset: 0, needed: 4, len: 0 });
    assert_eq!(GgufFile::parse(b"GGML\x03\0\0\0").unwrap_err(), GgufError::BadMagic);
    for v in [0u32, 1, 4, 0x0300_0000] {
        assert_eq!(Raw::new(v, 0, 0).parse().unwrap_err(), GgufError::UnsupportedVersion(v));
    }
    let mut r = Raw::new(3, 0, 1);
    r.str("k").u32(13).u32(0).pad(8);
    assert_eq!(r.parse().unwrap_err(), GgufError::UnknownValueType(13));
    let mut r = Raw::new(3, 0, 1);
    r.str("k").u32(9).u32(99).u64(0).pad(8);
    assert_eq!(r.parse().unwrap_err(), GgufError::UnknownValueType(99));
    let mut r = Raw::new(3, 0, 1);
    r.u64(2);
    r.0.extend_from_slice(&[0xC3, 0x28]);
    r.u32(7).pad(8);
    assert!(matches!(r.parse(), Err(GgufError::InvalidUtf8(_))));
    let mut r = Raw::new(3, 0, 1);
    r.str("flag").u32(7);
    r.0.push(2);
    r.pad(8);
    assert!(matches!(r.parse(), Err(GgufError::BadMetadata { .. })));
    let mut r = Raw::new(3, 0, 2);
    r.str("k").u32(4).u32(1).str("k").u32(4).u32(2).pad(8);
    assert_eq!(r.parse().unwrap_err(), GgufError::Duplicate { what: "metadata key", name: "k".into() });
    // Nesting: 4 levels are fine, 5 are too deep.
    for (levels, ok) in [(4, true), (5, false), (1000, false)] {
        let mut r = Raw::new(3, 0, 1);
        r.str("deep").u32(9);
        for _ in 0..levels - 1 {
            r.u32(9).u64(1);
        }
        r.u32(0).u64(0).pad(16);
        match r.parse() {
            Ok(()) => assert!(ok, "{levels} levels"),
            Err(e) => assert!(!ok && e == GgufError::TooDeep("deep".into()), "{levels}: {e:?}"),
        }
    }
    // Alignment must be a nonzero power of two.
    for a in [0u32, 3, 48] {
        let mut r = Raw::new(3, 0, 1);
        r.str("general.alignment").u32(4).u32(a).pad(8);
        assert!(matches!(r.parse(), Err(GgufError::BadMetadata { .. })), "alignment {a}");
    }
}

#[test]
fn bad_tensor_entries_are_typed() {
    let one = |dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut r = Raw::new(3, 1, 0);
        r.tensor("w", dims, ty, offset).pad(data);
        r.parse()
    };
    assert_eq!(one(&[32], 0, 0, 128), Ok(()));
    // Q4_K (12) is read now; IQ4_NL (20), a real ggml type we do not implement, is refused by id.
    assert_eq!(one(&[256], 12, 0, 4096), Ok(()));
    assert_eq!(one(&[256], 20, 0, 4096), Err(GgufError::UnsupportedTensorType { name: "w".into(), type_id: 20 }));
    assert_eq!(one(&[4], 1000, 0, 64), Err(GgufError::UnsupportedTensorType { name: "w".into(), type_id: 1000 }));
    let bad = |r: Result<(), GgufError>| matches!(r, Err(GgufError::BadTensor { name, .. }) if name == "w");
    assert!(bad(one(&[4], 0, 16, 64)), "misaligned offset");
    assert!(bad(one(&[4], 0, 1 << 60, 64)), "data outside the file");
    assert!(bad(one(&[4], 0, u64::MAX - 31, 64)), "offset overflow");
    assert!(bad(one(&[64], 0, 0, 200)), "data runs past the end");
    assert!(bad(one(&[u64::MAX], 0, 0, 64)), "byte size overflows");
    assert!(bad(one(&[1 << 32, 1 << 32], 0, 0, 64)), "huge");
    assert!(bad(one(&[1 << 40, 1 << 40, 1 << 40, 1 << 40], 0, 0, 64)), "element count overflows");
    assert!(bad(one(&[4, 0], 0, 0, 64)), "zero dim");
    assert!(bad(one(&[1, 1, 1, 1, 1], 0, 0, 64)), "five dims");
    assert!(bad(one(&[], 0, 0, 64)), "no dims");
    assert!(bad(one(&[33, 2], 8, 0, 256)), "row not whole Q8_0 blocks");
    assert!(bad(one(&[16, 4], 2, 0, 256)), "row not whole Q4_0 blocks even if the total is");
    // dims count is checked before reading dims: a count of 2^32-1 is an error, not a loop.
    let mut r = Raw::new(3, 1, 0);
    r.str("w").u32(u32::MAX).pad(64);
    assert!(bad(r.parse()));

    let mut r = Raw::new(3, 2, 0);
    r.tensor("w", &[4], 0, 0).tensor("w", &[4], 0, 32).pad(64);
    assert_eq!(r.parse(), Err(GgufError::Duplicate { what: "tensor", name: "w".into() }));
}

#[test]
fn errors_map_to_the_invalid_model_file_code() {
    let e: mobilellm_web::Error = GgufFile::parse(b"nope").unwrap_err().into();
    assert_eq!(e.code(), "InvalidModelFile");
    assert!(e.to_string().contains("bad magic"));
}
