//! Loading a model onto the GPU while its bytes arrive (from the network or the cache), so the
//! whole GGUF is never held in memory: a 1.6 GB model in a browser tab costs its GPU buffers
//! plus a window of about one tensor, not the file (wasm memory never shrinks once grown).
//!
//! The header and tables are parsed as soon as they are complete and everything they describe is
//! validated (config, tensor shapes, tokenizer, buffer limits) before the first upload. Then each
//! tensor, in file order, is handed to [`GpuModelBuilder`] the moment its last byte arrives;
//! bytes between tensors are skipped. A chunk that holds whole tensors is read in place: only a
//! tensor split across chunks is copied into the window.

use std::rc::Rc;

use super::loaded::{LoadedModel, Parsed};
use super::ModelBackend;
use crate::gguf::{GgufError, GgufFile};
use crate::gpu::{Gpu, GpuModelBuilder};
use crate::model::{Slot, TensorPlaces, TensorRef};
use crate::{Error, Result};

/// Header bytes gathered before the first parse attempt, and the factor by which the next
/// attempt waits for more (parsing a multi-megabyte vocabulary again for every 64 KB chunk would
/// cost quadratic time).
const FIRST_HEADER_TRY: usize = 1 << 16;

pub struct StreamingGpuLoad {
    gpu: Rc<Gpu>,
    file_len: u64,
    received: u64,
    phase: Phase,
    /// The most bytes held at once (header buffer, window, parts of stacked matrices).
    peak_buffered: usize,
}

enum Phase {
    /// Gathering the header: parse again once `buf` reaches `retry_at` bytes.
    Header {
        buf: Vec<u8>,
        retry_at: usize,
    },
    Tensors(Box<Tensors>),
    /// An error was returned; every later call fails (the caller frees the loader).
    Failed,
}

/// A tensor's slot and place, owned (the places borrow from the parsed file this sits beside).
struct Planned {
    slot: Slot,
    name: String,
    ty: crate::quant::GgmlType,
    rows: usize,
    cols: usize,
    start: u64,
    len: u64,
}

struct Tensors {
    parsed: Parsed,
    /// Every tensor, in file order.
    order: Vec<Planned>,
    /// Index in `order` of the next tensor to complete.
    next: usize,
    /// Absolute file offset of the next byte `feed` receives when `window` is empty, or of
    /// `window[0]` (the start of `order[next]`) when it is not.
    pos: u64,
    /// The first bytes of `order[next]`, when it spans chunks.
    window: Vec<u8>,
    builder: GpuModelBuilder,
}

impl StreamingGpuLoad {
    /// A load of a `file_len`-byte GGUF onto `gpu`; feed it with [`push`](Self::push).
    pub fn new(gpu: Rc<Gpu>, file_len: u64) -> Self {
        StreamingGpuLoad { gpu, file_len, received: 0, phase: Phase::Header { buf: Vec::new(), retry_at: FIRST_HEADER_TRY }, peak_buffered: 0 }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// The most bytes of the file held in memory at once so far.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.peak_buffered
    }

    /// The next bytes of the file. Invalid data fails here, as early as it can be seen.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let r = self.push_inner(chunk);
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    fn push_inner(&mut self, chunk: &[u8]) -> Result<()> {
        if self.received + chunk.len() as u64 > self.file_len {
            return Err(Error::InvalidArgument(format!("model data exceeds the announced size of {} bytes", self.file_len)));
        }
        self.received += chunk.len() as u64;
        let complete = self.received == self.file_len;
        match &mut self.phase {
            Phase::Failed => Err(Error::InvalidArgument("this model load failed earlier".into())),
            Phase::Tensors(t) => {
                t.feed(chunk)?;
                self.peak_buffered = self.peak_buffered.max(t.buffered());
                Ok(())
            }
            Phase::Header { buf, retry_at } => {
                let found = if buf.is_empty() {
                    // A big enough first chunk is parsed in place: a whole file held in memory
                    // (the native load) is never copied.
                    let tried = chunk.len() >= *retry_at || complete;
                    match if tried { GgufFile::parse_prefix(chunk, self.file_len)? } else { None } {
                        Some(file) => Some((file, None)),
                        None => {
                            buf.extend_from_slice(chunk);
                            if tried {
                                *retry_at = buf.len() * 2;
                            }
                            None
                        }
                    }
                } else {
                    buf.extend_from_slice(chunk);
                    if buf.len() >= *retry_at || complete {
                        match GgufFile::parse_prefix(buf, self.file_len)? {
                            Some(file) => Some((file, Some(std::mem::take(buf)))),
                            None => {
                                *retry_at = buf.len() * 2;
                                None
                            }
                        }
                    } else {
                        None
                    }
                };
                let Some((file, gathered)) = found else {
                    self.peak_buffered = self.peak_buffered.max(buf.capacity());
                    return Ok(());
                };
                let mut tensors = Box::new(Tensors::plan(file, self.gpu.clone())?);
                // The data that came with the header (fed from offset 0: the header is skipped).
                tensors.feed(gathered.as_deref().unwrap_or(chunk))?;
                self.peak_buffered = self.peak_buffered.max(tensors.buffered() + gathered.map_or(0, |g| g.capacity()));
                self.phase = Phase::Tensors(tensors);
                Ok(())
            }
        }
    }

    /// The loaded model, once every byte has arrived.
    pub fn finish(self) -> Result<Rc<LoadedModel>> {
        if self.received != self.file_len {
            return Err(Error::InvalidArgument(format!("model data incomplete: {} of {} bytes", self.received, self.file_len)));
        }
        match self.phase {
            Phase::Tensors(t) => {
                let t = *t;
                debug_assert_eq!(t.next, t.order.len(), "every tensor lies inside the file");
                let places = TensorPlaces::from_gguf(&t.parsed.file, &t.parsed.cfg)?;
                let model = t.builder.finish(&places)?;
                Ok(t.parsed.finish(self.file_len, ModelBackend::Gpu(model)))
            }
            Phase::Failed => Err(Error::InvalidArgument("this model load failed earlier".into())),
            // A complete file always leaves the header phase (or fails).
            Phase::Header { .. } => Err(Error::Gguf(GgufError::Truncated { offset: 0, needed: 1, len: self.file_len })),
        }
    }
}

impl Tensors {
    /// Validates everything the header describes and plans the upload, before any byte of data.
    fn plan(file: GgufFile, gpu: Rc<Gpu>) -> Result<Self> {
        let parsed = Parsed::from_file(file)?;
        let places = TensorPlaces::from_gguf(&parsed.file, &parsed.cfg)?;
        let builder = GpuModelBuilder::new(gpu, &places)?;
        let mut order: Vec<Planned> = places
            .iter()
            .map(|(slot, p)| Planned { slot, name: p.name.to_string(), ty: p.ty, rows: p.rows, cols: p.cols, start: p.start, len: p.len })
            .collect();
        drop(places);
        order.sort_by_key(|p| (p.start, p.len));
        // One pass over the bytes: a tensor that starts inside the previous one (no real file
        // does that) cannot be read from a stream.
        for w in order.windows(2) {
            if w[1].start < w[0].start + w[0].len {
                return Err(Error::UnsupportedModel(format!("tensors {} and {} overlap in the file", w[0].name, w[1].name)));
            }
        }
        Ok(Tensors { parsed, order, next: 0, pos: 0, window: Vec::new(), builder })
    }

    fn buffered(&self) -> usize {
        self.window.capacity() + self.builder.peak_held_bytes
    }

    /// Consumes the next bytes of the file (they start at `pos`, or after `window`).
    fn feed(&mut self, mut chunk: &[u8]) -> Result<()> {
        while let Some(&Planned { start, len, .. }) = self.order.get(self.next) {
            if chunk.is_empty() {
                break;
            }
            if self.window.is_empty() {
                if self.pos < start {
                    // Header, padding or bytes no tensor claims.
                    let skip = (start - self.pos).min(chunk.len() as u64) as usize;
                    chunk = &chunk[skip..];
                    self.pos += skip as u64;
                    continue;
                }
                if chunk.len() as u64 >= len {
                    let (now, later) = chunk.split_at(len as usize);
                    self.complete(now)?;
                    chunk = later;
                } else {
                    self.window.try_reserve_exact(len as usize).map_err(|_| Error::Gpu(format!("out of memory buffering a {len}-byte tensor")))?;
                    self.window.extend_from_slice(chunk);
                    break;
                }
            } else {
                let take = ((len - self.window.len() as u64) as usize).min(chunk.len());
                self.window.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.window.len() as u64 == len {
                    let window = std::mem::take(&mut self.window);
                    self.complete(&window)?;
                    // Keep the allocation for the next tensor that spans chunks.
                    self.window = window;
                    self.window.clear();
                }
            }
        }
        Ok(())
    }

    /// `bytes` is the whole of tensor `order[next]`.
    fn complete(&mut self, bytes: &[u8]) -> Result<()> {
        let p = &self.order[self.next];
        let view = TensorRef { name: &p.name, ty: p.ty, rows: p.rows, cols: p.cols, data: bytes };
        self.builder.add(p.slot, &view)?;
        self.pos = p.start + p.len;
        self.next += 1;
        Ok(())
    }
}
