//! Writer -> reader round trips for every metadata type and tensor type (v3), a hand-built v2
//! file, alignment handling, and writer argument checks.

use mobilellm_web::gguf::{GgufFile, GgufWriter, MetaType, MetaValue};
use mobilellm_web::quant::{quantize, GgmlType};

fn write(w: &GgufWriter, data: &[Vec<u8>]) -> mobilellm_web::Result<Vec<u8>> {
    let mut out = Vec::new();
    w.write(&mut out, &mut |i| Ok(data[i].clone()))?;
    Ok(out)
}

fn every_meta_value() -> Vec<(String, MetaValue)> {
    use MetaValue::*;
    let arr = |elem, values| Array { elem, values };
    vec![
        ("u8".into(), U8(250)),
        ("i8".into(), I8(-100)),
        ("u16".into(), U16(65000)),
        ("i16".into(), I16(-32000)),
        ("u32".into(), U32(4_000_000_000)),
        ("i32".into(), I32(-2_000_000_000)),
        ("f32".into(), F32(-1.5e-7)),
        ("bool.t".into(), Bool(true)),
        ("bool.f".into(), Bool(false)),
        ("str".into(), String("héllo ▁wörld".into())),
        ("str.empty".into(), String(std::string::String::new())),
        ("u64".into(), U64(u64::MAX)),
        ("i64".into(), I64(i64::MIN)),
        ("f64".into(), F64(std::f64::consts::PI)),
        ("arr.empty".into(), arr(MetaType::F64, vec![])),
        ("arr.str".into(), arr(MetaType::String, vec![String("a".into()), String("▁b".into()), String("".into())])),
        ("arr.i32".into(), arr(MetaType::I32, vec![I32(1), I32(-2), I32(3)])),
        ("arr.u8".into(), arr(MetaType::U8, (0..=255).map(U8).collect())),
        ("arr.bool".into(), arr(MetaType::Bool, vec![Bool(true), Bool(false)])),
        (
            "arr.nested".into(),
            arr(MetaType::Array, vec![arr(MetaType::U16, vec![U16(1), U16(2)]), arr(MetaType::String, vec![String("x".into())]), arr(MetaType::F32, vec![])]),
        ),
    ]
}

#[test]
fn metadata_of_every_type_round_trips() {
    let mut w = GgufWriter::new();
    for (k, v) in every_meta_value() {
        w.add_meta(&k, v);
    }
    let bytes = write(&w, &[]).unwrap();
    assert_eq!(bytes.len() % 32, 0, "file padded to the alignment");
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 32);
    assert_eq!(f.metadata, every_meta_value());
    assert!(f.tensors.is_empty());
}

#[test]
fn typed_getters_convert() {
    let mut w = GgufWriter::new();
    for (k, v) in every_meta_value() {
        w.add_meta(&k, v);
    }
    let f = GgufFile::parse(&write(&w, &[]).unwrap()).unwrap();
    assert_eq!(f.get_u64("u8"), Some(250));
    assert_eq!(f.get_u64("u32"), Some(4_000_000_000));
    assert_eq!(f.get_u64("u64"), Some(u64::MAX));
    assert_eq!(f.get_u64("i8"), None, "negative integers are not u64");
    assert_eq!(f.get_u64("f32"), None);
    assert_eq!(f.get_u64("missing"), None);
    assert_eq!(f.get_f32("f32"), Some(-1.5e-7));
    assert_eq!(f.get_f32("f64"), Some(std::f32::consts::PI));
    assert_eq!(f.get_f32("i16"), Some(-32000.0));
    assert_eq!(f.get_f32("str"), None);
    assert_eq!(f.get_str("str"), Some("héllo ▁wörld"));
    assert_eq!(f.get_str("u8"), None);
    assert_eq!(f.get_bool("bool.t"), Some(true));
    assert_eq!(f.get_bool("bool.f"), Some(false));
    assert_eq!(f.get_bool("u8"), None);
    assert_eq!(f.get_str_array("arr.str"), Some(vec!["a", "▁b", ""]));
    assert_eq!(f.get_str_array("arr.i32"), None);
    assert_eq!(f.get_f32_array("arr.i32"), Some(vec![1.0, -2.0, 3.0]));
    assert_eq!(f.get_f32_array("arr.empty"), Some(vec![]));
    assert_eq!(f.get_i64_array("arr.i32"), Some(vec![1, -2, 3]));
    assert_eq!(f.get_i64_array("arr.u8").map(|v| v[255]), Some(255));
    assert_eq!(f.get_i64_array("arr.str"), None);
}

#[test]
fn tensors_of_every_type_round_trip_with_data() {
    let mut w = GgufWriter::new();
    let mut data = Vec::new();
    let mut seed = 1u32;
    for (i, ty) in GgmlType::ALL.into_iter().enumerate() {
        // Odd shapes for float types, several blocks per row for block types.
        let (cols, rows) = match ty.block_len() {
            1 => (7 + i as u64, 3),
            bl => (2 * bl as u64, 5),
        };
        let x: Vec<f32> = (0..cols * rows)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect();
        let name = format!("t.{}", ty.name());
        w.add_tensor(&name, &[cols, rows], ty);
        data.push(quantize(ty, &x).unwrap());
    }
    w.add_tensor("vec", &[5], GgmlType::F32);
    data.push(quantize(GgmlType::F32, &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap());
    w.add_tensor("four_d", &[2, 3, 1, 2], GgmlType::F16);
    data.push(vec![0x3c; 24]);
    w.add_meta("general.name", MetaValue::String("rt".into()));
    let bytes = write(&w, &data).unwrap();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.tensors.len(), w.tensors.len());
    assert_eq!(f.data_offset % 32, 0);
    for (i, (t, (name, dims, ty))) in f.tensors.iter().zip(&w.tensors).enumerate() {
        assert_eq!(&t.name, name);
        assert_eq!(&t.dims, dims);
        assert_eq!(t.ty, *ty);
        assert_eq!(t.offset % 32, 0, "{name} aligned");
        assert_eq!(t.n_bytes, data[i].len() as u64);
        assert_eq!(f.tensor_data(&bytes, t), &data[i][..], "{name} data");
    }
    assert_eq!(f.tensor("four_d").unwrap().n_elements(), 12);
}

#[test]
fn custom_alignment_is_recorded_and_honoured() {
    let mut w = GgufWriter::new();
    w.alignment = 64;
    w.add_tensor("a", &[3], GgmlType::F32);
    w.add_tensor("b", &[32], GgmlType::Q8_0);
    let data = vec![vec![1u8; 12], vec![2u8; 34]];
    let bytes = write(&w, &data).unwrap();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.get_u64("general.alignment"), Some(64));
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.tensors[1].offset, 64);
    assert_eq!(f.tensor_data(&bytes, &f.tensors[1]), &data[1][..]);

    // A conflicting general.alignment is refused by the writer.
    let mut w2 = GgufWriter::new();
    w2.add_meta("general.alignment", MetaValue::U32(16));
    assert!(matches!(write(&w2, &[]), Err(mobilellm_web::Error::InvalidArgument(_))));
    w2.alignment = 16;
    assert_eq!(GgufFile::parse(&write(&w2, &[]).unwrap()).unwrap().alignment, 16);
    w2.alignment = 24;
    assert!(write(&w2, &[]).is_err(), "alignment must be a power of two");
}

#[test]
fn writer_checks_data_lengths_and_shapes_and_calls_in_order() {
    let mut w = GgufWriter::new();
    w.add_tensor("a", &[32, 2], GgmlType::Q4_0);
    w.add_tensor("b", &[4], GgmlType::F16);
    let mut calls = Vec::new();
    let mut out = Vec::new();
    w.write(&mut out, &mut |i| {
        calls.push(i);
        Ok(vec![0u8; if i == 0 { 36 } else { 8 }])
    })
    .unwrap();
    assert_eq!(calls, vec![0, 1]);

    let r = w.write(&mut Vec::new(), &mut |i| Ok(vec![0u8; if i == 0 { 36 } else { 7 }]));
    assert!(matches!(r, Err(mobilellm_web::Error::InvalidArgument(m)) if m.contains("\"b\"")));

    let mut bad = GgufWriter::new();
    bad.add_tensor("q", &[33], GgmlType::Q8_0);
    assert!(write(&bad, &[vec![]]).is_err(), "rows must be whole blocks");

    let mut mixed = GgufWriter::new();
    mixed.add_meta("m", MetaValue::Array { elem: MetaType::U8, values: vec![MetaValue::U16(1)] });
    assert!(write(&mixed, &[]).is_err(), "arrays are homogeneous");

    // The callback's error is passed through.
    let r = w.write(&mut Vec::new(), &mut |_| Err(mobilellm_web::Error::Io("boom".into())));
    assert!(matches!(r, Err(mobilellm_web::Error::Io(_))));
}

/// A GGUF v2 file written by hand, byte by byte, following the spec (not our writer).
#[test]
fn hand_built_v2_file_parses() {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&3u64.to_le_bytes()); // kv
    let s = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u64).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    s(&mut b, "general.architecture");
    b.extend_from_slice(&8u32.to_le_bytes());
    s(&mut b, "llama");
    s(&mut b, "llama.block_count");
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&7u32.to_le_bytes());
    s(&mut b, "tokenizer.ggml.scores");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&6u32.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    b.extend_from_slice(&0.5f32.to_le_bytes());
    b.extend_from_slice(&(-2.0f32).to_le_bytes());
    // tensor "w": 2 dims [4, 2], F32, offset 0
    s(&mut b, "w");
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&4u64.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    let header_end = b.len();
    while b.len() % 32 != 0 {
        b.push(0);
    }
    for i in 0..8 {
        b.extend_from_slice(&(i as f32).to_le_bytes());
    }
    let f = GgufFile::parse(&b).unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.data_offset as usize, header_end.div_ceil(32) * 32);
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_u64("llama.block_count"), Some(7));
    assert_eq!(f.get_f32_array("tokenizer.ggml.scores"), Some(vec![0.5, -2.0]));
    let t = f.tensor("w").unwrap();
    assert_eq!((t.dims.clone(), t.ty, t.n_bytes), (vec![4, 2], GgmlType::F32, 32));
    let vals = mobilellm_web::quant::dequantize(t.ty, f.tensor_data(&b, t), 8).unwrap();
    assert_eq!(vals, (0..8).map(|i| i as f32).collect::<Vec<_>>());
}
