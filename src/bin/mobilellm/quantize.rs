//! `mobilellm quantize`: a GGUF re-encoded in another type or mix (src/convert/requantize.rs).

use std::io::Write;

use mobilellm_web::quant::GgmlType;
use mobilellm_web::Error;

use crate::args::Args;
use crate::commands::{CliError, CliResult};

/// The plan for `--type`: a uniform type for every matrix (the converter's output types), and
/// the file type llama.cpp would record.
fn plan(name: &str) -> Option<(Box<dyn Fn(&str, &[u64]) -> GgmlType>, u32)> {
    let ty = mobilellm_web::convert::output_type(name)?;
    // Rows that are not whole blocks of the type stay F16, as the converter does.
    let uniform = move |_: &str, dims: &[u64]| if dims[0] % ty.block_len() as u64 == 0 { ty } else { GgmlType::F16 };
    Some((Box::new(uniform), mobilellm_web::convert::file_type(ty)))
}

pub fn quantize(raw: &[String]) -> CliResult {
    let args = Args::parse(raw, &[], &["model", "out", "type"])?;
    let in_path = args.required("model")?;
    let out_path = args.required("out")?.to_string();
    let ty_name = args.required("type")?;
    let (plan, file_type) = plan(ty_name).ok_or_else(|| CliError::Usage(format!("--type {ty_name:?}: use f32, f16, q8_0, q4_0 or q4_1")))?;
    let bytes = std::fs::read(in_path).map_err(|e| Error::Io(format!("{in_path}: {e}")))?;
    // A temporary name renamed at the end: a failed run leaves no broken file.
    let tmp_path = format!("{out_path}.part");
    let file = std::fs::File::create(&tmp_path).map_err(|e| Error::Io(format!("{tmp_path}: {e}")))?;
    let mut out = std::io::BufWriter::new(file);
    let result = mobilellm_web::convert::requantize(&bytes, &mut out, &*plan, file_type, &mut |done, total, name| {
        eprint!("\rquantize: {done}/{total} tensors  {name:<40}");
    })
    .and_then(|r| out.flush().map(|_| r).map_err(Error::from));
    eprintln!();
    match result {
        Ok(report) => {
            std::fs::rename(&tmp_path, &out_path).map_err(|e| Error::Io(format!("{out_path}: {e}")))?;
            eprintln!("quantize: {report}");
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_path);
            Err(e.into())
        }
    }
}
