//! Where checkpoint bytes come from: a directory on disk (native CLI) or an in-memory file map
//! (the browser, which hands us the files the user picked). Big files are read by range, so a
//! conversion from disk holds at most one tensor's bytes at a time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Random access to one file's bytes.
pub trait ByteSource {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Exactly `len` bytes at `offset`; an error (never a short read) past the end.
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>>;

    fn read_all(&self) -> Result<Vec<u8>> {
        self.read_at(0, self.len())
    }
}

/// A set of named files: the checkpoint directory.
pub trait Files {
    /// Opens `name` (a plain file name, e.g. "config.json"); Ok(None) when it does not exist.
    fn open(&self, name: &str) -> Result<Option<Box<dyn ByteSource + '_>>>;

    fn exists(&self, name: &str) -> bool {
        matches!(self.open(name), Ok(Some(_)))
    }

    /// Opens a file that must exist.
    fn open_required(&self, name: &str) -> Result<Box<dyn ByteSource + '_>> {
        self.open(name)?.ok_or_else(|| Error::Convert(format!("checkpoint file {name} is missing")))
    }
}

fn check_range(offset: u64, len: u64, total: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= total => Ok(()),
        _ => Err(Error::Convert(format!("read of {len} bytes at offset {offset} runs past the end of a {total}-byte file"))),
    }
}

impl ByteSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_range(offset, len, ByteSource::len(self))?;
        Ok(self[offset as usize..(offset + len) as usize].to_vec())
    }
}

struct DiskFile {
    file: RefCell<std::fs::File>,
    len: u64,
}

impl ByteSource for DiskFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_range(offset, len, self.len)?;
        let mut f = self.file.borrow_mut();
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf)?;
        Ok(buf)
    }
}

pub(crate) struct DirFiles {
    pub dir: PathBuf,
}

impl DirFiles {
    pub fn new(dir: &Path) -> Self {
        DirFiles { dir: dir.to_path_buf() }
    }
}

/// Names come from config/index files we read; refuse anything that could leave the directory.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err(Error::Convert(format!("invalid checkpoint file name {name:?}")));
    }
    Ok(())
}

impl Files for DirFiles {
    fn open(&self, name: &str) -> Result<Option<Box<dyn ByteSource + '_>>> {
        check_name(name)?;
        let path = self.dir.join(name);
        match std::fs::File::open(&path) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some(Box::new(DiskFile { file: RefCell::new(file), len })))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(format!("{}: {e}", path.display()))),
        }
    }
}

/// The browser's file map. Keys may carry a folder prefix ("MobileLLM-125M/config.json"): we match
/// on the last path component, so a dropped folder works as well as a list of files.
pub(crate) struct MapFiles<'a> {
    by_name: BTreeMap<&'a str, &'a [u8]>,
}

impl<'a> MapFiles<'a> {
    pub fn new(files: &'a BTreeMap<String, Vec<u8>>) -> Self {
        let by_name = files.iter().map(|(k, v)| (k.rsplit(['/', '\\']).next().unwrap_or(k), v.as_slice())).collect();
        MapFiles { by_name }
    }
}

impl Files for MapFiles<'_> {
    fn open(&self, name: &str) -> Result<Option<Box<dyn ByteSource + '_>>> {
        check_name(name)?;
        Ok(self.by_name.get(name).map(|b| Box::new(*b) as Box<dyn ByteSource + '_>))
    }
}
