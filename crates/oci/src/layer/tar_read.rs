//! A small streaming tar reader with bounded allocations. The `tar` crate parses the header
//! blocks; this module handles PAX and GNU long-name records itself so that a hostile size field
//! can never make us buffer more than a fixed limit.

use super::LayerError;
use std::io::{self, Read};

const BLOCK: usize = 512;
/// Largest PAX extended header or GNU long name we buffer.
const MAX_META: u64 = 1 << 20;

/// Entry kinds of a layer tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

/// One entry's header, with PAX and GNU extensions already applied.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// `SCHILY.xattr.*` records, in the order they appeared.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(crate) struct TarReader<R> {
    inner: R,
    /// Unread data bytes of the current entry.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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
    mtime: Option<i64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
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
    pub fn next_head(&mut self) -> Result<Option<Head>, LayerError> {
        let mut pending = Pending::default();
        loop {
            let rest = self.remaining + self.padding;
            self.remaining = 0;
            self.padding = 0;
            self.skip(rest)?;

            let mut block = [0u8; BLOCK];
            match read_block(&mut self.inner, &mut block)? {
                false => return Ok(None),
                true if block.iter().all(|&b| b == 0) => return Ok(None),
                true => {}
            }
            let hdr = tar::Header::from_byte_slice(&block);
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
                    // Global headers carry nothing a layer needs (git archive writes a comment).
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

            let name = pending.path.take().unwrap_or(raw_name);
            let kind = match flag {
                b'0' | 0 | b'7' => Kind::Regular,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::Char,
                b'4' => Kind::Block,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                b'S' => return Err(malformed(&name, "gnu sparse files are not supported")),
                _ => return Err(malformed(&name, "unsupported entry type")),
            };
            let link = match pending.link.take() {
                Some(l) => l,
                None => hdr
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default(),
            };
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
            let mtime = match pending.mtime {
                Some(m) => m,
                None if blank(&old.mtime) => 0,
                None => hdr
                    .mtime()
                    .map_err(|_| malformed(&name, "bad mtime field"))?
                    as i64,
            };
            let (dev_major, dev_minor) = if matches!(kind, Kind::Char | Kind::Block) {
                let major = hdr.device_major().ok().flatten().unwrap_or(0);
                let minor = hdr.device_minor().ok().flatten().unwrap_or(0);
                (major, minor)
            } else {
                (0, 0)
            };
            // Only regular files have data; a link or device with a size has padding we skip.
            return Ok(Some(Head {
                name,
                link,
                kind,
                mode,
                uid,
                gid,
                size: if kind == Kind::Regular { size } else { 0 },
                mtime,
                dev_major,
                dev_minor,
                xattrs: std::mem::take(&mut pending.xattrs),
            }));
        }
    }

    /// The data of the entry last returned by `next_head`.
    pub fn data(&mut self) -> impl Read + '_ {
        DataReader { r: self }
    }
}

struct DataReader<'a, R> {
    r: &'a mut TarReader<R>,
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

fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    let field = &block[148..156];
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|b| (b'0'..=b'7').contains(b))
        .collect();
    let Ok(s) = std::str::from_utf8(&text) else {
        return false;
    };
    let Ok(stored) = u32::from_str_radix(s, 8) else {
        return false;
    };
    let unsigned: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    // Some old writers summed signed bytes.
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                i64::from(b' ')
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    stored == unsigned || i64::from(stored) == signed
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Result<T, &'static str> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("bad pax number")
}

/// Parses PAX records (`"<len> <key>=<value>\n"`) into `p`.
fn parse_pax(mut data: &[u8], p: &mut Pending) -> Result<(), &'static str> {
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
        let (key, value) = (&rec[..eq], &rec[eq + 1..]);
        match key {
            b"path" => p.path = Some(value.to_vec()),
            b"linkpath" => p.link = Some(value.to_vec()),
            b"size" => p.size = Some(parse_num(value)?),
            b"uid" => p.uid = Some(parse_num(value)?),
            b"gid" => p.gid = Some(parse_num(value)?),
            b"mtime" => {
                // Seconds with an optional fraction, which we drop.
                let secs = value.split(|&b| b == b'.').next().unwrap_or(value);
                p.mtime = Some(parse_num(secs)?);
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    p.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], flag: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(tar::EntryType::new(flag));
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn huge_pax_header_is_refused_without_reading_it() {
        // Claims 1 TiB of PAX records; only the header block exists.
        let tar = header(b"x", b'x', 1 << 40);
        let err = TarReader::new(&tar[..]).next_head().unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::Malformed {
                    reason: "extended header too large",
                    ..
                }
            ),
            "{err}"
        );
        let tar = header(b"././@LongLink", b'L', u64::MAX >> 2);
        assert!(TarReader::new(&tar[..]).next_head().is_err());
    }

    #[test]
    fn pax_records_override_the_header() {
        let mut pax = Vec::new();
        for rec in [
            "30 mtime=1700000000.123456789\n",
            "15 uid=3000000\n",
            "20 path=a/long/name\n",
        ] {
            pax.extend_from_slice(rec.as_bytes());
        }
        pax.extend_from_slice(b"32 SCHILY.xattr.user.k=v\xffbinary\n");
        let mut tar = header(b"PaxHeaders.0/x", b'x', pax.len() as u64);
        tar.extend_from_slice(&pax);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
        tar.extend(header(b"short", b'0', 0));
        tar.extend([0u8; 1024]);
        let mut r = TarReader::new(&tar[..]);
        let h = r.next_head().unwrap().unwrap();
        assert_eq!(h.name, b"a/long/name");
        assert_eq!((h.uid, h.mtime), (3_000_000, 1_700_000_000));
        assert_eq!(
            h.xattrs,
            vec![(b"user.k".to_vec(), b"v\xffbinary".to_vec())]
        );
        assert!(r.next_head().unwrap().is_none());
    }

    #[test]
    fn bad_pax_records_are_errors() {
        let mut p = Pending::default();
        assert!(parse_pax(b"99 path=x\n", &mut p).is_err());
        assert!(parse_pax(b"x path=x\n", &mut p).is_err());
        assert!(parse_pax(b"11 uid=abc\n", &mut p).is_err());
        assert!(parse_pax(b"3 \n", &mut p).is_err());
    }
}
