//! `convert --type q4_k_m` against llama.cpp itself: our Q4_K_M file must hold exactly the
//! tensors (types and bytes) that llama.cpp's `llama_model_quantize` makes from our F32
//! conversion of the same checkpoint, and llama.cpp must run our file like our CPU reference does.
//! Needs tools/reference's npm packages (scripts/setup.sh installs them; the library comes from
//! node-llama-cpp's prebuilt linux-x64 binaries).

use super::*;

/// Where node-llama-cpp keeps llama.cpp's shared libraries.
fn llama_cpp_lib_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/reference/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64");
    assert!(dir.join("libllama.v0.5.0.so").exists(), "{} has no libllama: scripts/setup.sh installs tools/reference's npm packages", dir.display());
    dir
}

/// llama.cpp's Q4_K_M (llama_ftype 15) of the GGUF at `src`, through
/// tests/fixtures/llama_cpp_quantize_model.py.
fn llama_cpp_q4_k_m(src: &Path, dst: &Path) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp_quantize_model.py");
    let out = Command::new("python3").arg(script).arg(llama_cpp_lib_dir()).arg(src).arg(dst).arg("15").output().expect("python3 runs");
    assert!(out.status.success(), "llama_model_quantize: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dst).unwrap()
}

/// Every tensor of `ours` has llama.cpp's type, shape and bytes, and neither file has a tensor
/// the other lacks (the order differs: llama.cpp sorts by layer, then by name). Returns the
/// number of tensors per type.
fn assert_same_tensors(what: &str, ours: &[u8], theirs: &[u8]) -> BTreeMap<&'static str, usize> {
    let (a, b) = (GgufFile::parse(ours).unwrap(), GgufFile::parse(theirs).unwrap());
    assert_eq!(a.tensors.len(), b.tensors.len(), "{what}: tensor count");
    let mut types = BTreeMap::new();
    for t in &a.tensors {
        let l = b.tensor(&t.name).unwrap_or_else(|| panic!("{what}: llama.cpp has no {}", t.name));
        assert_eq!((t.ty, &t.dims), (l.ty, &l.dims), "{what}: {} type and shape (ours, llama.cpp)", t.name);
        let (x, y) = (a.tensor_data(ours, t), b.tensor_data(theirs, l));
        if let Some(i) = x.iter().zip(y).position(|(p, q)| p != q) {
            panic!("{what}: {} ({}) byte {i} (block {}) differs from llama.cpp's", t.name, t.ty.name(), i / t.ty.block_bytes());
        }
        *types.entry(t.ty.name()).or_insert(0) += 1;
    }
    for f in [&a, &b] {
        assert_eq!(f.get_u64("general.file_type"), Some(15), "{what}: LLAMA_FTYPE_MOSTLY_Q4_K_M");
        assert_eq!(f.get_u64("general.quantization_version"), Some(2));
    }
    types
}

/// Two models cover every rule: a Llama with rows of 256 (the K-quants themselves: Q4_K, Q6_K
/// on attn_v / ffn_down of layers 0, 3, 6, 7 of 8, a Q6_K output and a Q4_K untied embedding)
/// and a tied MobileLLM with rows of 64 and 80 (the fallbacks: Q5_0, Q8_0 for the Q6_K picks and
/// the tied embedding, F16 for ffn_down whose rows are not whole 32-element blocks).
#[test]
fn q4_k_m_equals_llama_cpp_quantize() {
    let common = ["--layers", "8", "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--format", "safetensors", "--no-reference"];
    /// Fixture name, its options, and the tensors per type the mix must give.
    type Case = (&'static str, &'static [&'static str], &'static [(&'static str, usize)]);
    let models: [Case; 2] = [
        ("q4km_llama", &["--kind", "llama", "--dim", "256", "--ffn", "512", "--seed", "21"], &[("F32", 17), ("Q4_K", 49), ("Q6_K", 9)]),
        ("q4km_mobilellm", &["--kind", "mobilellm", "--dim", "64", "--ffn", "80", "--seed", "22"], &[("F16", 8), ("F32", 17), ("Q5_0", 44), ("Q8_0", 5)]),
    ];
    for (name, args, want_types) in models {
        let dir = fixture(name, &[&common[..], args].concat());
        let (f32_gguf, _) = convert(&dir, GgmlType::F32);
        let f32_path = dir.join("f32.gguf");
        std::fs::write(&f32_path, &f32_gguf).unwrap();
        let theirs = llama_cpp_q4_k_m(&f32_path, &dir.join("llama_cpp_q4_k_m.gguf"));
        let (ours, report) = convert(&dir, OutputType::Q4KM);
        let types = assert_same_tensors(name, &ours, &theirs);
        assert_eq!(types.into_iter().collect::<Vec<_>>(), want_types.to_vec(), "{name}: tensors per type");
        let reported: BTreeMap<&str, usize> = report.tensor_types.iter().map(|(t, n)| (t.name(), *n)).collect();
        assert_eq!(reported.into_iter().collect::<Vec<_>>(), want_types.to_vec(), "{name}: the report's count");
        eprintln!("{name}: {report}");
    }
}

/// llama.cpp runs our Q4_K_M file (a Llama with rows of 256: real K-quant blocks) like our CPU
/// reference on the same file. llama.cpp's K-quant dot products quantise the input to 8 bits
/// (Q8_K), so its logits are not ours exactly: over the top 8 of every position they must stay
/// within a quarter of what Q4_K_M itself moves them from the Hugging Face reference (mean) and
/// 3% of the largest logit (max), and its arg-max must be ours wherever our margin is twice that.
#[test]
fn llama_cpp_runs_our_q4_k_m_like_our_reference() {
    let dir = fixture(
        "q4km_logits",
        &["--kind", "llama", "--dim", "256", "--layers", "4", "--heads", "4", "--kv-heads", "2", "--ffn", "512", "--vocab", "512", "--seed", "23"],
    );
    let (gguf, _) = convert(&dir, OutputType::Q4KM);
    let path = dir.join("q4_k_m.gguf");
    std::fs::write(&path, &gguf).unwrap();
    let tokens = [1u32, 300, 17, 511, 260, 42, 42, 99, 7, 450];
    let (_, ours) = gguf_logits_for(&gguf, &tokens);
    let hf = hf_forward(&Original::load(&dir), &tokens, 1);
    let json = llama_cpp_logits(&path, &tokens, 0);
    let top = json["top"].as_array().unwrap();
    assert_eq!(top.len(), tokens.len());
    // (|llama.cpp - ours|, |ours - HF|) for every logit llama.cpp reports.
    let mut diffs = Vec::new();
    for (pos, top) in top.iter().enumerate() {
        for pair in top.as_array().unwrap() {
            let (id, logit) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
            diffs.push(((logit - ours[pos][id]).abs(), (ours[pos][id] - hf[pos][id]).abs()));
        }
    }
    assert_eq!(diffs.len(), tokens.len() * 8);
    let mean = |f: fn(&(f32, f32)) -> f32| diffs.iter().map(f).sum::<f32>() / diffs.len() as f32;
    let (llama_mean, quant_mean) = (mean(|d| d.0), mean(|d| d.1));
    let llama_max = diffs.iter().fold(0f32, |m, d| m.max(d.0));
    let largest = hf.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "llama.cpp vs our reference on our Q4_K_M: max {llama_max:.4}, mean {llama_mean:.4}; Q4_K_M vs HF: mean {quant_mean:.4}; largest logit {largest:.2}"
    );
    assert!(llama_mean <= 0.25 * quant_mean, "llama.cpp's mean logit difference {llama_mean} against Q4_K_M's own {quant_mean}");
    assert!(llama_max <= 0.03 * largest, "llama.cpp's logits differ from ours by up to {llama_max}");
    let mut called = 0;
    for (pos, top) in top.iter().enumerate() {
        let mut order: Vec<usize> = (0..ours[pos].len()).collect();
        order.sort_by(|&a, &b| ours[pos][b].total_cmp(&ours[pos][a]));
        if ours[pos][order[0]] - ours[pos][order[1]] > 2.0 * llama_max {
            assert_eq!(top[0][0].as_u64().unwrap() as usize, order[0], "pos {pos}: llama.cpp's arg-max");
            called += 1;
        }
    }
    assert!(called >= tokens.len() / 2, "only {called} positions with a clear arg-max");

    // The mix is smaller than Q4_1 and closer to the unquantised model (random weights are
    // harder to quantise than trained ones: Q4_1 is off by 0.21 here, Q8_0 by 0.016).
    let err = rel_error(&ours, &hf);
    let (q4_1, _) = convert(&dir, GgmlType::Q4_1);
    let q4_1_err = rel_error(&gguf_logits_for(&q4_1, &tokens).1, &hf);
    eprintln!("relative logit error against HF: Q4_K_M {err:.4} ({} bytes), Q4_1 {q4_1_err:.4} ({} bytes)", gguf.len(), q4_1.len());
    assert!(gguf.len() < q4_1.len());
    assert!(err > 0.0 && err < q4_1_err, "Q4_K_M: relative logit error {err}, Q4_1's {q4_1_err}");
}

/// Q4_K_M against Q8_0 and llama.cpp on a full-size checkpoint (ignored by default: it needs a
/// 125M checkpoint on disk and a few minutes). Make one and run:
///   python3 tests/fixtures/make_checkpoint.py /tmp/mllm125 --format bin --dim 576 --layers 30 \
///       --heads 9 --kv-heads 3 --ffn 1536 --vocab 32000 --no-reference
///   MOBILELLM_CONVERT_DIR=/tmp/mllm125 cargo test --profile ci --test convert_models full_size -- --ignored --nocapture
/// Prints the file sizes and the teacher-forced agreement of the two (top-1 match rate, max and
/// mean logit difference over the whole vocabulary), after checking llama.cpp's bytes.
#[test]
#[ignore]
fn full_size_q4_k_m_against_q8_0_and_llama_cpp() {
    let dir = PathBuf::from(std::env::var("MOBILELLM_CONVERT_DIR").expect("MOBILELLM_CONVERT_DIR"));
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("q4km_full");
    std::fs::create_dir_all(&scratch).unwrap();
    let (f32_gguf, _) = convert(&dir, GgmlType::F32);
    let f32_path = scratch.join("f32.gguf");
    std::fs::write(&f32_path, &f32_gguf).unwrap();
    let theirs = llama_cpp_q4_k_m(&f32_path, &scratch.join("llama_cpp_q4_k_m.gguf"));
    let (q4km, report) = convert(&dir, OutputType::Q4KM);
    let types = assert_same_tensors("full size", &q4km, &theirs);
    eprintln!("Q4_K_M equals llama.cpp's byte for byte: {types:?}\n{report}");
    drop(theirs);
    let (q8, q8_report) = convert(&dir, GgmlType::Q8_0);
    eprintln!("Q8_0: {q8_report}");
    // A fixed pseudo-random sequence, teacher-forced through both.
    let mut s = 12345u32;
    let tokens: Vec<u32> = (0..64)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) % report.n_vocab as u32
        })
        .collect();
    let (_, a) = gguf_logits_for(&q4km, &tokens);
    let (_, b) = gguf_logits_for(&q8, &tokens);
    let (_, exact) = gguf_logits_for(&f32_gguf, &tokens);
    eprintln!("Q4_K_M {:.1} MB, Q8_0 {:.1} MB, F32 {:.1} MB", q4km.len() as f64 / 1e6, q8.len() as f64 / 1e6, f32_gguf.len() as f64 / 1e6);
    for (what, x, y) in [("Q4_K_M vs Q8_0", &a, &b), ("Q4_K_M vs F32", &a, &exact), ("Q8_0 vs F32", &b, &exact)] {
        let argmax = |v: &[f32]| v.iter().enumerate().max_by(|p, q| p.1.total_cmp(q.1)).unwrap().0;
        let same_top1 = x.iter().zip(y).filter(|(p, q)| argmax(p) == argmax(q)).count();
        let diffs: Vec<f32> = x.iter().flatten().zip(y.iter().flatten()).map(|(p, q)| (p - q).abs()).collect();
        let max = diffs.iter().fold(0f32, |m, &d| m.max(d));
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        let largest = y.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "{what}, {} positions: top-1 equal {same_top1}, |logit diff| max {max:.3} mean {mean:.3} (largest |logit| {largest:.1}), relative {:.4}",
            tokens.len(),
            rel_error(x, y)
        );
    }
}
