//! Interoperability with an independent implementation: tests/fixtures/gguf_py_quants.gguf was
//! written by the PyPI `gguf` package (see make_gguf_py_quants.py next to it). Our reader must
//! read its metadata and tensors, our quantisers must reproduce its bytes exactly, and our
//! dequantisation must reproduce its floats bit for bit.

use mobilellm_web::gguf::GgufFile;
use mobilellm_web::quant::{dequantize, quantize, GgmlType};

const FIXTURE: &[u8] = include_bytes!("fixtures/gguf_py_quants.gguf");

#[test]
fn reads_gguf_py_metadata() {
    let f = GgufFile::parse(FIXTURE).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_str("general.name"), Some("gguf-py quant reference"));
    assert_eq!(f.get_u64("test.u32"), Some(7));
    assert_eq!(f.get_i64_array("test.ints"), Some(vec![1, -2, 3]));
    assert_eq!(f.get("test.i8").and_then(|v| v.as_i64()), Some(-5));
    assert_eq!(f.get_f32("test.f64"), Some(0.1));
    assert_eq!(f.get_bool("test.bool"), Some(true));
    assert_eq!(f.get_str_array("test.strs"), Some(vec!["a", "▁b", "cé"]));
    assert_eq!(f.get_f32_array("test.floats"), Some(vec![0.5, -1.25]));
    assert_eq!(f.tensors.len(), 15);
}

fn f32s(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(t.ty, GgmlType::F32);
    dequantize(t.ty, f.tensor_data(FIXTURE, t), t.n_elements() as usize).unwrap()
}

#[test]
fn quantize_and_dequantize_match_gguf_py_bit_for_bit() {
    let f = GgufFile::parse(FIXTURE).unwrap();
    for ty in [GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
        let src = f32s(&f, &format!("src.{}", ty.name()));
        let qt = f.tensor(&format!("q.{}", ty.name())).unwrap();
        assert_eq!(qt.ty, ty);
        assert_eq!(qt.dims, vec![64, 10]);
        let reference = f.tensor_data(FIXTURE, qt);
        let ours = quantize(ty, &src).unwrap();
        if let Some(i) = ours.iter().zip(reference).position(|(a, b)| a != b) {
            panic!("{}: quantised byte {i} (block {}) ours {:#04x} gguf-py {:#04x}", ty.name(), i / ty.block_bytes(), ours[i], reference[i]);
        }
        assert_eq!(ours.len(), reference.len());

        let deq_ref = f32s(&f, &format!("deq.{}", ty.name()));
        let deq = dequantize(ty, reference, src.len()).unwrap();
        for (i, (a, b)) in deq.iter().zip(&deq_ref).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{} dequantised element {i}: {a} vs {b}", ty.name());
        }
    }
}

const KQUANTS: &[u8] = include_bytes!("fixtures/gguf_py_kquants.gguf");

/// Random Q5 and K-quant blocks (every bit random, f16 scales over many magnitudes, zero and
/// subnormal among them) dequantise to gguf-py's floats bit for bit; gguf-py's Q5 quantisers'
/// bytes are reproduced by ours.
#[test]
fn q5_and_k_quants_match_gguf_py_bit_for_bit() {
    let f = GgufFile::parse(KQUANTS).unwrap();
    for ty in GgmlType::K_AND_Q5 {
        let qt = f.tensor(&format!("q.{}", ty.name())).unwrap();
        assert_eq!(qt.ty, ty);
        let n = qt.n_elements() as usize;
        let deq = dequantize(ty, f.tensor_data(KQUANTS, qt), n).unwrap();
        let dt = f.tensor(&format!("deq.{}", ty.name())).unwrap();
        let reference = dequantize(GgmlType::F32, f.tensor_data(KQUANTS, dt), n).unwrap();
        for (i, (a, b)) in deq.iter().zip(&reference).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{} element {i} (block {}): ours {a} gguf-py {b}", ty.name(), i / ty.block_len());
        }
        if let Some(zt) = f.tensor(&format!("qz.{}", ty.name())) {
            let st = f.tensor(&format!("src.{}", ty.name())).unwrap();
            let src = dequantize(GgmlType::F32, f.tensor_data(KQUANTS, st), st.n_elements() as usize).unwrap();
            let want = f.tensor_data(KQUANTS, zt);
            let ours = quantize(ty, &src).unwrap();
            if let Some(i) = ours.iter().zip(want).position(|(a, b)| a != b) {
                panic!("{}: quantised byte {i} (block {}) ours {:#04x} gguf-py {:#04x}", ty.name(), i / ty.block_bytes(), ours[i], want[i]);
            }
            assert_eq!(ours.len(), want.len());
        }
    }
}
