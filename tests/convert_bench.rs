//! Conversion time and memory on a full-size checkpoint (ignored by default: it needs a 125M
//! checkpoint on disk). Make one and measure:
//!   python3 tests/fixtures/make_checkpoint.py /tmp/mllm125 --format bin --dim 576 --layers 30 \
//!       --heads 9 --kv-heads 3 --ffn 1536 --vocab 32000 --no-reference
//!   MOBILELLM_CONVERT_DIR=/tmp/mllm125 MOBILELLM_CONVERT_TYPE=q8_0 /usr/bin/time -v \
//!       cargo test --release --test convert_bench -- --ignored --nocapture

use std::time::Instant;

use mobilellm_web::convert::convert_dir;
use mobilellm_web::gguf::GgufFile;
use mobilellm_web::model::ModelConfig;
use mobilellm_web::quant::GgmlType;

#[test]
#[ignore]
fn convert_full_size_checkpoint() {
    let dir = std::env::var("MOBILELLM_CONVERT_DIR").expect("MOBILELLM_CONVERT_DIR");
    let ty = GgmlType::parse_name(&std::env::var("MOBILELLM_CONVERT_TYPE").unwrap_or("f16".into())).expect("a type name");
    let out_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench.gguf");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&out_path).unwrap());
    let start = Instant::now();
    let mut last = 0;
    let report = convert_dir(std::path::Path::new(&dir), &mut out, ty, &mut |p| last = p.done).unwrap();
    drop(out);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(last, report.n_tensors);
    eprintln!("converted {dir} to {ty:?} in {secs:.2} s: {report}");
    // Peak memory of the conversion itself, before the check below reads the output back.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?");
        eprintln!("peak resident memory during conversion: {}", hwm.trim_start_matches("VmHWM:").trim());
    }
    let bytes = std::fs::read(&out_path).unwrap();
    let cfg = ModelConfig::from_gguf(&GgufFile::parse(&bytes).unwrap()).unwrap();
    assert_eq!(cfg.n_vocab, report.n_vocab);
}
