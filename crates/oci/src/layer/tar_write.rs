//! Writing tar headers the way Go's archive/tar does with `Format = PAX` (what containerd and
//! BuildKit write): a ustar block, preceded by a PAX extended header only when a field does not
//! fit (long or non-ASCII names, large ids or sizes) or xattrs are present.

use std::collections::BTreeMap;
use std::io::{self, Write};

const BLOCK: usize = 512;
const MAX_OCTAL_7: u64 = 0o7_777_777;
const MAX_OCTAL_11: u64 = 0o77_777_777_777;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WKind {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

/// What to write for one entry.
#[derive(Debug, Clone)]
pub(crate) struct WHead {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: WKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// xattr name -> value; sorted, so output is deterministic.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl WHead {
    pub fn new(name: Vec<u8>, kind: WKind) -> WHead {
        WHead {
            name,
            link: Vec::new(),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            dev_major: 0,
            dev_minor: 0,
            xattrs: BTreeMap::new(),
        }
    }
}

/// A tar stream writer counting the bytes it wrote.
pub(crate) struct TarWriter<W> {
    out: W,
    pub written: u64,
}

fn fits_ustar(s: &[u8], max: usize) -> bool {
    s.len() <= max && s.iter().all(|&b| b.is_ascii() && b != 0)
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // The length prefix counts itself.
    let rest = 3 + key.len() + value.len();
    let mut len = rest + 1;
    while len.to_string().len() + rest > len {
        len += 1;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out, written: 0 }
    }

    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Writes zero bytes up to the next block boundary after `size` data bytes.
    pub fn pad(&mut self, size: u64) -> io::Result<()> {
        let n = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.raw(&[0u8; BLOCK][..n as usize])
    }

    /// Writes the header block(s) of `h`; the caller then writes `h.size` bytes and `pad`.
    pub fn header(&mut self, h: &WHead) -> io::Result<()> {
        // Records sorted by key, as Go writes them.
        let mut records: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        if !fits_ustar(&h.link, 100) {
            records.insert(b"linkpath".to_vec(), h.link.clone());
        }
        if !fits_ustar(&h.name, 100) {
            records.insert(b"path".to_vec(), h.name.clone());
        }
        for (key, value, max) in [
            (&b"gid"[..], h.gid, MAX_OCTAL_7),
            (b"uid", h.uid, MAX_OCTAL_7),
            (b"size", h.size, MAX_OCTAL_11),
            (b"mtime", h.mtime, MAX_OCTAL_11),
        ] {
            if value > max {
                records.insert(key.to_vec(), value.to_string().into_bytes());
            }
        }
        for (k, v) in &h.xattrs {
            records.insert([&b"SCHILY.xattr."[..], k].concat(), v.clone());
        }
        let mut pax = Vec::new();
        for (k, v) in &records {
            pax_record(&mut pax, k, v);
        }
        if h.dev_major > MAX_OCTAL_7 as u32 || h.dev_minor > MAX_OCTAL_7 as u32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "device number too large",
            ));
        }

        if !pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            // Go's name for the record: DIR/PaxHeaders.0/BASE, ASCII, at most 100 bytes.
            let trimmed = h.name.strip_suffix(b"/").unwrap_or(&h.name);
            let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
                Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
                None => (&b""[..], trimmed),
            };
            let xname: Vec<u8> = [dir, b"PaxHeaders.0/", base]
                .concat()
                .into_iter()
                .map(|b| if b.is_ascii() && b != 0 { b } else { b'_' })
                .collect();
            put(&mut x.as_old_mut().name[..100], &xname);
            x.set_mode(0);
            x.set_uid(0);
            x.set_gid(0);
            x.set_mtime(0);
            x.set_size(pax.len() as u64);
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_cksum();
            self.raw(x.as_bytes())?;
            self.raw(&pax)?;
            self.pad(pax.len() as u64)?;
        }

        let mut t = tar::Header::new_ustar();
        {
            let old = t.as_old_mut();
            put(&mut old.name, &h.name);
            put(&mut old.linkname, &h.link);
        }
        t.set_mode(h.mode & 0o7777);
        t.set_uid(if h.uid > MAX_OCTAL_7 { 0 } else { h.uid });
        t.set_gid(if h.gid > MAX_OCTAL_7 { 0 } else { h.gid });
        t.set_size(if h.size > MAX_OCTAL_11 { 0 } else { h.size });
        t.set_mtime(if h.mtime > MAX_OCTAL_11 { 0 } else { h.mtime });
        t.set_entry_type(match h.kind {
            WKind::Regular => tar::EntryType::Regular,
            WKind::HardLink => tar::EntryType::Link,
            WKind::Symlink => tar::EntryType::Symlink,
            WKind::Char => tar::EntryType::Char,
            WKind::Block => tar::EntryType::Block,
            WKind::Dir => tar::EntryType::Directory,
            WKind::Fifo => tar::EntryType::Fifo,
        });
        t.set_device_major(h.dev_major)?;
        t.set_device_minor(h.dev_minor)?;
        t.set_cksum();
        self.raw(t.as_bytes())
    }

    /// Writes file data (exactly what the caller announced in the header).
    pub fn data(&mut self, b: &[u8]) -> io::Result<()> {
        self.raw(b)
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.raw(&[0u8; BLOCK * 2])?;
        self.out.flush()?;
        Ok(self.out)
    }
}
