//! The wasm surface of the checkpoint converter ([`crate::convert`]), used by `www/convert.js`.
//!
//! The downloaded checkpoint stays on the JS side (files in the Origin Private File System, or
//! in-memory buffers where OPFS is missing): Rust reads each tensor's bytes by range through a
//! synchronous JS callback, and the GGUF leaves through another callback as it is written. The
//! wasm heap therefore holds about one tensor at a time, never the checkpoint: a 125M fp16
//! checkpoint is 250 MB, a 1.5B one 3.2 GB, more than wasm32 can even address.
//!
//! JS contract (all synchronous; the worker blocks while converting, which is fine in a worker):
//! - `files`: JSON object {file name: size in bytes} of every downloaded file;
//! - `read(name, offset, dest)`: fill the Uint8Array `dest` (a view into wasm memory, valid only
//!   during the call) with the bytes of `name` at `offset`; return the number of bytes read;
//! - `write(chunk)`: copy the Uint8Array `chunk` (also a transient view) to the output;
//! - `progress(done, total, bytes_written)`: after each tensor.

use std::collections::BTreeMap;
use std::io::Write;

use wasm_bindgen::prelude::*;

use crate::convert::{check_config, convert_source, output_type, ByteSource, ConvertReport, Files, OutputType};
use crate::wasm::js_error;
use crate::Error;

/// What a throwing JS callback said, as text.
fn describe(v: &JsValue) -> String {
    v.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| v.as_string()).unwrap_or_else(|| format!("{v:?}"))
}

struct JsFiles<'a> {
    sizes: BTreeMap<String, u64>,
    read: &'a js_sys::Function,
}

struct JsFile<'a> {
    name: &'a str,
    len: u64,
    read: &'a js_sys::Function,
}

impl Files for JsFiles<'_> {
    fn open(&self, name: &str) -> crate::Result<Option<Box<dyn ByteSource + '_>>> {
        Ok(self.sizes.get_key_value(name).map(|(name, &len)| Box::new(JsFile { name, len, read: self.read }) as Box<dyn ByteSource + '_>))
    }
}

impl ByteSource for JsFile<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: u64) -> crate::Result<Vec<u8>> {
        let past_end = offset.checked_add(len).is_none_or(|end| end > self.len);
        if past_end || len > u32::MAX as u64 {
            return Err(Error::Convert(format!("read of {len} bytes at offset {offset} runs past the end of {} ({} bytes)", self.name, self.len)));
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(len as usize).map_err(|_| Error::Convert(format!("out of memory reading {len} bytes of {}", self.name)))?;
        buf.resize(len as usize, 0);
        // SAFETY: the view is used only by the callback, which copies into it synchronously and
        // allocates nothing in wasm memory (so the memory cannot grow and detach the view).
        let dest = unsafe { js_sys::Uint8Array::view_mut_raw(buf.as_mut_ptr(), buf.len()) };
        let got = self
            .read
            .call3(&JsValue::NULL, &JsValue::from_str(self.name), &JsValue::from_f64(offset as f64), &dest)
            .map_err(|e| Error::Io(format!("reading {}: {}", self.name, describe(&e))))?;
        if got.as_f64() != Some(len as f64) {
            return Err(Error::Io(format!("reading {}: got {:?} of {len} bytes at offset {offset}", self.name, got.as_f64())));
        }
        Ok(buf)
    }
}

/// The GGUF output, handed to JS chunk by chunk.
struct JsWriter<'a> {
    write: &'a js_sys::Function,
}

impl Write for JsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: as in read_at: the callback copies the bytes out before returning.
        let chunk = unsafe { js_sys::Uint8Array::view(buf) };
        self.write.call1(&JsValue::NULL, &chunk).map_err(|e| std::io::Error::other(describe(&e)))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn report_json(r: &ConvertReport, ty: OutputType) -> String {
    serde_json::json!({
        "type": ty.name(),
        "arch": r.arch,
        "source_format": r.source_format,
        "tokenizer_source": r.tokenizer_source,
        "n_tensors": r.n_tensors,
        "n_params": r.n_params,
        "n_vocab": r.n_vocab,
        "n_layers": r.n_layers,
        "block_repeat": r.block_repeat,
        "tied_embeddings": r.tied_embeddings,
        "f16_fallback": r.f16_fallback,
        "tensor_types": r.tensor_types.iter().map(|(t, n)| (t.name(), *n)).collect::<BTreeMap<_, _>>(),
        "bytes_written": r.bytes_written,
        "summary": r.to_string(),
    })
    .to_string()
}

/// Converts the checkpoint described by `files_json` to GGUF of type `type_name`
/// (f32, f16, q8_0, q4_0, q4_1 or q4_k_m: llama.cpp's mix); `name` becomes `general.name` (the repository's name). Returns the report as JSON; errors are JS `Error`s named by
/// their code (`ConversionError` for a bad checkpoint, `InvalidArgument`, `IOError`).
#[wasm_bindgen]
pub fn convert_checkpoint(
    name: &str,
    files_json: &str,
    type_name: &str,
    read: &js_sys::Function,
    write: &js_sys::Function,
    progress: &js_sys::Function,
) -> Result<String, JsValue> {
    let ty = output_type(type_name)
        .ok_or_else(|| js_error(&Error::InvalidArgument(format!("conversion type {type_name:?}: expected f32, f16, q8_0, q4_0, q4_1 or q4_k_m"))))?;
    let sizes: BTreeMap<String, u64> = serde_json::from_str(files_json).map_err(|e| js_error(&Error::InvalidArgument(format!("files: {e}"))))?;
    let files = JsFiles { sizes, read };
    // One JS call per MiB of metadata, and tensors (already whole buffers) pass straight through.
    let mut out = std::io::BufWriter::with_capacity(1 << 20, JsWriter { write });
    let mut on_progress = |p: crate::convert::ConvertProgress| {
        let _ = progress.call3(&JsValue::NULL, &JsValue::from(p.done as u32), &JsValue::from(p.total as u32), &JsValue::from_f64(p.bytes_written as f64));
    };
    let report = convert_source(&files, name, &mut out, ty, &mut on_progress).map_err(|e| js_error(&e))?;
    out.flush().map_err(|e| js_error(&Error::Io(format!("writing the GGUF: {e}"))))?;
    Ok(report_json(&report, ty))
}

/// Checks config.json before the weights are downloaded: an unsupported model (another
/// architecture, biases, RoPE scaling) fails here with `ConversionError` instead of after a
/// multi-GB download.
#[wasm_bindgen]
pub fn check_checkpoint_config(config_json: &[u8]) -> Result<(), JsValue> {
    check_config(config_json).map_err(|e| js_error(&e))
}
