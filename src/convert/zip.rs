//! The few parts of the ZIP format that `torch.save` uses: a central directory (ZIP64 when the
//! archive is large) of entries stored without compression, each 64-byte aligned through the
//! local header's extra field. We only locate entries; their bytes are read by range later, so a
//! multi-GB pytorch_model.bin is never loaded whole.

use super::source::ByteSource;
use crate::{Error, Result};

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
/// End-of-central-directory record without comment, plus the longest possible comment.
const EOCD_LEN: u64 = 22;
const MAX_COMMENT: u64 = 0xFFFF;

#[derive(Debug, Clone)]
pub(crate) struct ZipEntry {
    pub name: String,
    /// Absolute offset of the entry's (uncompressed) bytes in the archive.
    pub data_offset: u64,
    pub size: u64,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Convert(format!("zip: {}", msg.into()))
}

fn u16_at(b: &[u8], i: usize) -> Result<u16> {
    b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| err("truncated record"))
}
fn u32_at(b: &[u8], i: usize) -> Result<u32> {
    b.get(i..i + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| err("truncated record"))
}
fn u64_at(b: &[u8], i: usize) -> Result<u64> {
    b.get(i..i + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| err("truncated record"))
}

/// Reads the central directory of the archive in `src`.
pub(crate) fn read_entries(src: &dyn ByteSource) -> Result<Vec<ZipEntry>> {
    let len = src.len();
    if len < EOCD_LEN {
        return Err(err("file too short to be a zip archive"));
    }
    let tail_len = len.min(EOCD_LEN + MAX_COMMENT);
    let tail_start = len - tail_len;
    let tail = src.read_at(tail_start, tail_len)?;
    let eocd = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&i| u32_at(&tail, i).ok() == Some(EOCD_SIG))
        .ok_or_else(|| err("no end-of-central-directory record (not a zip archive)"))?;
    let mut n_entries = u16_at(&tail, eocd + 10)? as u64;
    let mut cd_size = u32_at(&tail, eocd + 12)? as u64;
    let mut cd_offset = u32_at(&tail, eocd + 16)? as u64;
    if n_entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        // ZIP64: the locator sits right before the classic record and points at the real one.
        let loc = (tail_start + eocd as u64).checked_sub(20).ok_or_else(|| err("missing ZIP64 locator"))?;
        let locator = src.read_at(loc, 20)?;
        if u32_at(&locator, 0)? != ZIP64_LOCATOR_SIG {
            return Err(err("missing ZIP64 locator"));
        }
        let rec_off = u64_at(&locator, 8)?;
        let rec = src.read_at(rec_off, 56)?;
        if u32_at(&rec, 0)? != ZIP64_EOCD_SIG {
            return Err(err("bad ZIP64 end-of-central-directory record"));
        }
        n_entries = u64_at(&rec, 32)?;
        cd_size = u64_at(&rec, 40)?;
        cd_offset = u64_at(&rec, 48)?;
    }
    // Each central record is at least 46 bytes: reject counts the directory cannot hold.
    if n_entries.saturating_mul(46) > cd_size {
        return Err(err(format!("{n_entries} entries cannot fit in a {cd_size}-byte central directory")));
    }
    let cd = src.read_at(cd_offset, cd_size)?;
    let mut entries = Vec::with_capacity(n_entries as usize);
    let mut p = 0usize;
    for _ in 0..n_entries {
        if u32_at(&cd, p)? != CENTRAL_SIG {
            return Err(err("bad central directory record"));
        }
        let method = u16_at(&cd, p + 10)?;
        let flags = u16_at(&cd, p + 8)?;
        let mut comp_size = u32_at(&cd, p + 20)? as u64;
        let mut size = u32_at(&cd, p + 24)? as u64;
        let name_len = u16_at(&cd, p + 28)? as usize;
        let extra_len = u16_at(&cd, p + 30)? as usize;
        let comment_len = u16_at(&cd, p + 32)? as usize;
        let mut local_off = u32_at(&cd, p + 42)? as u64;
        let name_bytes = cd.get(p + 46..p + 46 + name_len).ok_or_else(|| err("truncated file name"))?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let extra = cd.get(p + 46 + name_len..p + 46 + name_len + extra_len).ok_or_else(|| err("truncated extra field"))?;
        read_zip64_extra(extra, &mut size, &mut comp_size, &mut local_off)?;
        p += 46 + name_len + extra_len + comment_len;
        if flags & 1 != 0 {
            return Err(err(format!("entry {name} is encrypted")));
        }
        if method != 0 || comp_size != size {
            return Err(err(format!("entry {name} is compressed (method {method}); torch.save stores entries uncompressed")));
        }
        let local = src.read_at(local_off, 30)?;
        if u32_at(&local, 0)? != LOCAL_SIG {
            return Err(err(format!("bad local header for {name}")));
        }
        let data_offset = local_off + 30 + u16_at(&local, 26)? as u64 + u16_at(&local, 28)? as u64;
        match data_offset.checked_add(size) {
            Some(end) if end <= src.len() => {}
            _ => return Err(err(format!("entry {name} runs past the end of the archive"))),
        }
        entries.push(ZipEntry { name, data_offset, size });
    }
    Ok(entries)
}

/// The ZIP64 extended-information extra field (id 1) holds, in this order, whichever of the
/// sizes and offset were saturated (0xFFFFFFFF) in the fixed record.
fn read_zip64_extra(mut extra: &[u8], size: &mut u64, comp: &mut u64, off: &mut u64) -> Result<()> {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0)?;
        let n = u16_at(extra, 2)? as usize;
        let body = extra.get(4..4 + n).ok_or_else(|| err("truncated extra field"))?;
        if id == 1 {
            let mut q = 0;
            for field in [size, comp, off] {
                if *field == 0xFFFF_FFFF {
                    *field = u64_at(body, q)?;
                    q += 8;
                }
            }
            return Ok(());
        }
        extra = &extra[4 + n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One stored entry, with every size and offset moved to ZIP64 records as a >4 GiB archive has.
    fn zip64_archive(name: &str, data: &[u8]) -> Vec<u8> {
        let mut z = Vec::new();
        let le16 = |z: &mut Vec<u8>, v: u16| z.extend_from_slice(&v.to_le_bytes());
        let le32 = |z: &mut Vec<u8>, v: u32| z.extend_from_slice(&v.to_le_bytes());
        let le64 = |z: &mut Vec<u8>, v: u64| z.extend_from_slice(&v.to_le_bytes());
        // local header with 3 bytes of padding in its extra field
        le32(&mut z, LOCAL_SIG);
        z.extend_from_slice(&[0; 22]);
        le16(&mut z, name.len() as u16);
        le16(&mut z, 3);
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(b"pad");
        z.extend_from_slice(data);
        let cd_off = z.len() as u64;
        le32(&mut z, CENTRAL_SIG);
        z.extend_from_slice(&[0; 16]); // versions, flags, method 0, time, date, crc
        le32(&mut z, 0xFFFF_FFFF);
        le32(&mut z, 0xFFFF_FFFF);
        le16(&mut z, name.len() as u16);
        le16(&mut z, 28); // extra: id, len, size, comp size, offset
        z.extend_from_slice(&[0; 6]); // comment len, disk, internal attrs
        le32(&mut z, 0);
        le32(&mut z, 0xFFFF_FFFF);
        z.extend_from_slice(name.as_bytes());
        le16(&mut z, 1);
        le16(&mut z, 24);
        le64(&mut z, data.len() as u64);
        le64(&mut z, data.len() as u64);
        le64(&mut z, 0);
        let cd_size = z.len() as u64 - cd_off;
        let rec_off = z.len() as u64;
        le32(&mut z, ZIP64_EOCD_SIG);
        z.extend_from_slice(&[0; 28]);
        le64(&mut z, 1);
        le64(&mut z, cd_size);
        le64(&mut z, cd_off);
        le32(&mut z, ZIP64_LOCATOR_SIG);
        le32(&mut z, 0);
        le64(&mut z, rec_off);
        le32(&mut z, 1);
        le32(&mut z, EOCD_SIG);
        z.extend_from_slice(&[0; 6]);
        le16(&mut z, 0xFFFF);
        le32(&mut z, 0xFFFF_FFFF);
        le32(&mut z, 0xFFFF_FFFF);
        le16(&mut z, 0);
        z
    }

    #[test]
    fn reads_zip64_directory() {
        let z = zip64_archive("archive/data/0", b"hello tensor");
        let entries = read_entries(&z.as_slice()).unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!((e.name.as_str(), e.size), ("archive/data/0", 12));
        assert_eq!(&z[e.data_offset as usize..][..12], b"hello tensor");
        // Every truncation is an error, never a panic.
        for cut in 0..z.len() {
            let _ = read_entries(&&z[..cut]);
        }
        assert!(read_entries(&&z[..z.len() - 1]).is_err());
    }
}
