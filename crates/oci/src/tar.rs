//! The one hardened tar reader, for image layers and ADD's archives alike, in the manner of Go's
//! `archive/tar`. The `tar` crate parses the header blocks; PAX records and GNU long names are
//! read here with a size cap, so a hostile size field can never make us buffer more than a fixed
//! limit.

use crate::layer::{LayerError, lossy};
use std::io::{self, Read};

const BLOCK: usize = 512;
/// Largest PAX extended header or GNU long name we buffer (Go's `maxSpecialFileSize`).
const MAX_META: u64 = 1 << 20;

/// Entry kinds. The reader reports every kind; what a consumer accepts is its own business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `'0'`, or the old `'\0'` flag on a name without a trailing `/`.
    Regular,
    /// `'7'`: contiguous file; image layers take it as a regular file, go-archive refuses it.
    Contiguous,
    HardLink,
    Symlink,
    Char,
    Block,
    /// `'5'`, or the old `'\0'` flag on a name ending in `/`.
    Dir,
    Fifo,
    /// GNU sparse file (`'S'`, or `GNU.sparse.*` PAX records).
    Sparse,
    /// Any other type flag.
    Other(u8),
}

impl Kind {
    /// Go's `isHeaderOnlyType`: these carry no data whatever their size field says.
    fn header_only(self) -> bool {
        matches!(
            self,
            Kind::HardLink | Kind::Symlink | Kind::Char | Kind::Block | Kind::Dir | Kind::Fifo
        )
    }
}

/// One entry's header, with PAX and GNU extensions already applied.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of data that follow the header (0 for header-only kinds).
    pub size: u64,
    /// Seconds; a PAX `mtime` may add [`Self::mtime_nsec`].
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// A PAX `atime` or a GNU header's access time, as (seconds, nanoseconds).
    pub atime: Option<(i64, u32)>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// `SCHILY.xattr.*` records, in the order they appeared.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A sequential tar reader; [`Reader::data`] reads the current entry's data.
pub struct Reader<R> {
    inner: R,
    /// Unread data bytes of the current entry.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
}

fn malformed(entry: &[u8], reason: &'static str) -> LayerError {
    LayerError::Malformed {
        entry: lossy(entry),
        reason,
    }
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Strips trailing NULs, as GNU long names carry one.
fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    atime: Option<(i64, u32)>,
    sparse: bool,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            remaining: 0,
            padding: 0,
        }
    }

    fn skip(&mut self, n: u64) -> Result<(), LayerError> {
        let copied =
            io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(LayerError::Read)?;
        if copied != n {
            return Err(LayerError::Read(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    /// Reads the current entry's data, at most `MAX_META` bytes.
    fn read_meta(&mut self, name: &[u8]) -> Result<Vec<u8>, LayerError> {
        if self.remaining > MAX_META {
            return Err(malformed(name, "extended header too large"));
        }
        let mut v = vec![0u8; self.remaining as usize];
        self.inner.read_exact(&mut v).map_err(LayerError::Read)?;
        self.remaining = 0;
        Ok(v)
    }

    /// The next entry's header, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        let mut pending = Pending::default();
        loop {
            let rest = self.remaining + self.padding;
            self.remaining = 0;
            self.padding = 0;
            self.skip(rest)?;

            let mut block = [0u8; BLOCK];
            if !read_block(&mut self.inner, &mut block)? {
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                // As Go: two zero blocks (or one and the end) end it; one followed by more is
                // corrupt.
                if !read_block(&mut self.inner, &mut block)? || block.iter().all(|&b| b == 0) {
                    return Ok(None);
                }
                return Err(malformed(b"", "zero block followed by data"));
            }
            let hdr = ::tar::Header::from_byte_slice(&block);
            let raw_name = hdr.path_bytes().into_owned();
            if !checksum_ok(&block) {
                return Err(malformed(&raw_name, "bad header checksum"));
            }
            let size = match pending.size.take() {
                Some(s) => s,
                None => hdr
                    .entry_size()
                    .map_err(|_| malformed(&raw_name, "bad size field"))?,
            };
            self.remaining = size;
            self.padding = pad(size);

            let flag = hdr.entry_type().as_byte();
            match flag {
                b'x' => {
                    let data = self.read_meta(&raw_name)?;
                    parse_pax(&data, &mut pending).map_err(|r| malformed(&raw_name, r))?;
                    continue;
                }
                b'g' => {
                    // Global headers carry nothing we use (git archive writes a comment).
                    self.read_meta(&raw_name)?;
                    continue;
                }
                b'L' => {
                    pending.path = Some(trim_nul(self.read_meta(&raw_name)?));
                    continue;
                }
                b'K' => {
                    pending.link = Some(trim_nul(self.read_meta(&raw_name)?));
                    continue;
                }
                _ => {}
            }
            return self.entry(hdr, raw_name, flag, size, pending).map(Some);
        }
    }

    fn entry(
        &mut self,
        hdr: &::tar::Header,
        raw_name: Vec<u8>,
        flag: u8,
        size: u64,
        pending: Pending,
    ) -> Result<Entry, LayerError> {
        let name = pending.path.unwrap_or(raw_name);
        let kind = match flag {
            _ if pending.sparse => Kind::Sparse,
            // The old "regular file" flag; a trailing slash made it a directory.
            0 if name.ends_with(b"/") => Kind::Dir,
            b'0' | 0 => Kind::Regular,
            b'7' => Kind::Contiguous,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'S' => Kind::Sparse,
            k => Kind::Other(k),
        };
        let link = match pending.link {
            Some(l) => l,
            None => hdr
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default(),
        };
        // Go reads a blank numeric field as 0.
        let blank = |f: &[u8]| f.iter().all(|&b| b == 0 || b == b' ');
        let old = hdr.as_old();
        let mode = match blank(&old.mode) {
            true => 0,
            false => hdr.mode().map_err(|_| malformed(&name, "bad mode field"))?,
        };
        let uid = match pending.uid {
            Some(u) => u,
            None if blank(&old.uid) => 0,
            None => hdr.uid().map_err(|_| malformed(&name, "bad uid field"))?,
        };
        let gid = match pending.gid {
            Some(g) => g,
            None if blank(&old.gid) => 0,
            None => hdr.gid().map_err(|_| malformed(&name, "bad gid field"))?,
        };
        let (mtime, mtime_nsec) = match pending.mtime {
            Some(m) => m,
            None if blank(&old.mtime) => (0, 0),
            None => {
                let m = hdr
                    .mtime()
                    .map_err(|_| malformed(&name, "bad mtime field"))?;
                (i64::try_from(m).unwrap_or(i64::MAX), 0)
            }
        };
        // GNU headers may carry an access time (offset 345).
        let mut atime = pending.atime;
        if atime.is_none()
            && let Some(g) = hdr.as_gnu()
            && hdr.as_bytes()[345] != 0
        {
            let at = g.atime().map_err(|_| malformed(&name, "bad atime field"))?;
            atime = Some((i64::try_from(at).unwrap_or(i64::MAX), 0));
        }
        let (dev_major, dev_minor) = if matches!(kind, Kind::Char | Kind::Block) {
            let major = hdr.device_major().ok().flatten().unwrap_or(0);
            let minor = hdr.device_minor().ok().flatten().unwrap_or(0);
            (major, minor)
        } else {
            (0, 0)
        };
        // As Go: header-only kinds have no data, so the next header follows at once.
        let size = if kind.header_only() { 0 } else { size };
        self.remaining = size;
        self.padding = pad(size);
        Ok(Entry {
            name,
            link,
            kind,
            mode,
            uid,
            gid,
            size,
            mtime,
            mtime_nsec,
            atime,
            dev_major,
            dev_minor,
            xattrs: pending.xattrs,
        })
    }

    /// The data of the entry last returned by [`Reader::next_entry`].
    pub fn data(&mut self) -> impl Read + '_ {
        DataReader { r: self }
    }
}

struct DataReader<'a, R> {
    r: &'a mut Reader<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf
            .len()
            .min(usize::try_from(self.r.remaining).unwrap_or(usize::MAX));
        if max == 0 {
            return Ok(0);
        }
        let n = self.r.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.r.remaining -= n as u64;
        Ok(n)
    }
}

/// Fills `block`; `false` on a clean end of stream before any byte.
fn read_block(r: &mut impl Read, block: &mut [u8; BLOCK]) -> Result<bool, LayerError> {
    let mut got = 0;
    while got < BLOCK {
        match r.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(LayerError::Read(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::Read(e)),
        }
    }
    Ok(true)
}

/// Go accepts the unsigned and the (historic) signed sum.
fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    let text: Vec<u8> = block[148..156]
        .iter()
        .copied()
        .filter(|b| (b'0'..=b'7').contains(b))
        .collect();
    let Ok(s) = std::str::from_utf8(&text) else {
        return false;
    };
    let Ok(stored) = i64::from_str_radix(s, 8) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored == signed
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Result<T, &'static str> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("bad pax number")
}

/// One PAX record: key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// PAX records (`"<len> <key>=<value>\n"`), in order; trailing NUL padding is ignored.
fn pax_records(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, &'static str> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("bad pax record")?;
        let len: usize = parse_num(&data[..sp])?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("bad pax record length");
        }
        let rec = &data[sp + 1..len - 1];
        data = &data[len..];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or("bad pax record")?;
        out.push((&rec[..eq], &rec[eq + 1..]));
    }
    Ok(out)
}

/// Parses PAX records into `p`; later records win.
fn parse_pax(data: &[u8], p: &mut Pending) -> Result<(), &'static str> {
    for (key, value) in pax_records(data)? {
        match key {
            b"path" => p.path = Some(value.to_vec()),
            b"linkpath" => p.link = Some(value.to_vec()),
            b"size" => p.size = Some(parse_num(value)?),
            b"uid" => p.uid = Some(parse_num(value)?),
            b"gid" => p.gid = Some(parse_num(value)?),
            b"mtime" => p.mtime = Some(pax_time(value)?),
            b"atime" => p.atime = Some(pax_time(value)?),
            k if k.starts_with(b"GNU.sparse.") => p.sparse = true,
            k => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    p.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

/// `sec[.frac]`, possibly negative, as (seconds, nanoseconds).
fn pax_time(v: &[u8]) -> Result<(i64, u32), &'static str> {
    const BAD: &str = "bad pax time";
    let s = std::str::from_utf8(v).map_err(|_| BAD)?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().map_err(|_| BAD)?;
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(BAD);
    }
    let mut ns = 0u32;
    for c in frac.bytes().chain(std::iter::repeat(b'0')).take(9) {
        ns = ns * 10 + u32::from(c - b'0');
    }
    if s.starts_with('-') && ns > 0 {
        return Ok((sec - 1, 1_000_000_000 - ns));
    }
    Ok((sec, ns))
}

#[cfg(test)]
#[path = "tar_tests.rs"]
mod tests;
