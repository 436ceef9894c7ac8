//! `mobilellm quantize`: a GGUF re-encoded in another type or mix (src/convert/requantize.rs).

use std::io::Write;

use mobilellm_web::convert::OutputType;
use mobilellm_web::Error;

use crate::args::Args;
use crate::commands::{CliError, CliResult};

pub fn quantize(raw: &[String]) -> CliResult {
    let args = Args::parse(raw, &[], &["model", "out", "type"])?;
    let in_path = args.required("model")?;
    let out_path = args.required("out")?.to_string();
    let ty_name = args.required("type")?;
    let ty = OutputType::parse(ty_name).ok_or_else(|| CliError::Usage(format!("--type {ty_name:?}: use f32, f16, q8_0, q4_0, q4_1 or q4_k_m")))?;
    let bytes = std::fs::read(in_path).map_err(|e| Error::Io(format!("{in_path}: {e}")))?;
    // A temporary name renamed at the end: a failed run leaves no broken file.
    let tmp_path = format!("{out_path}.part");
    let file = std::fs::File::create(&tmp_path).map_err(|e| Error::Io(format!("{tmp_path}: {e}")))?;
    let mut out = std::io::BufWriter::new(file);
    let result = mobilellm_web::convert::requantize(&bytes, &mut out, ty, &mut |done, total, name| {
        if done == total || done % 50 == 0 {
            eprint!("\rquantize: {done}/{total} tensors  {name:<40}");
        }
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
