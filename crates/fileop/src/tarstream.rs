//! Reading ADD's archives: decompression by magic number (go-archive's
//! `DecompressStream`: gzip, bzip2, xz, zstd or none) and a tar reader in the
//! manner of Go's `archive/tar`. The `tar` crate only parses header blocks;
//! PAX records and GNU long names are read here with a size cap, so no
//! header value decides how much memory is taken.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// Go's `maxSpecialFileSize`: PAX headers and GNU long names are capped.
const MAX_SPECIAL: u64 = 1 << 20;
const BLOCK: usize = 512;

/// Type flags (after normalisation of the old regular-file flag).
pub(crate) const REG: u8 = b'0';
pub(crate) const LINK: u8 = b'1';
pub(crate) const SYMLINK: u8 = b'2';
pub(crate) const CHAR: u8 = b'3';
pub(crate) const BLOCK_DEV: u8 = b'4';
pub(crate) const DIR: u8 = b'5';
pub(crate) const FIFO: u8 = b'6';
pub(crate) const GLOBAL: u8 = b'g';
pub(crate) const SPARSE: u8 = b'S';

/// A compressed or plain stream, opened for reading its tar.
pub(crate) fn open_decompressed(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = File::open(path)?;
    let mut head = [0u8; 10];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = &head[..n];
    let br = BufReader::with_capacity(64 * 1024, io::Cursor::new(head.to_vec()).chain(f));
    Ok(if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(br))
    } else if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        // Go's gzip reader reads concatenated members too.
        Box::new(flate2::bufread::MultiGzDecoder::new(br))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(XzReader::spawn(br))
    } else if is_zstd(head) {
        Box::new(ZstdReader {
            src: br,
            dec: FrameDecoder::new(),
            in_frame: false,
        })
    } else {
        Box::new(br)
    })
}

/// A zstd frame, or a skippable frame (magic 0x184D2A5?).
fn is_zstd(h: &[u8]) -> bool {
    if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return true;
    }
    h.len() >= 8 && u32::from_le_bytes([h[0], h[1], h[2], h[3]]) & 0xFFFF_FFF0 == 0x184D_2A50
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// All frames of a zstd stream, skipping skippable ones. The decoder's
/// window is capped (ruzstd's default), whatever a frame header asks for.
struct ZstdReader<R: BufRead> {
    src: R,
    dec: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                if self.dec.can_collect() > 0 {
                    let n = self.dec.read(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                if self.dec.is_finished() {
                    self.in_frame = self.dec.can_collect() > 0;
                    continue;
                }
                self.dec
                    .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(|e| bad(format!("zstd: {e}")))?;
                continue;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.dec.init(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let want = u64::from(length);
                    let got = io::copy(&mut (&mut self.src).take(want), &mut io::sink())?;
                    if got < want {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(bad(format!("zstd: {e}"))),
            }
        }
    }
}

/// xz through lzma-rs, which only decodes into a writer: a thread decodes
/// into a bounded channel. Dropping the reader makes its next send fail,
/// which ends the thread.
struct XzReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    worker: Option<JoinHandle<io::Result<()>>>,
}

struct ChanWriter(SyncSender<Vec<u8>>);

impl Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(256 * 1024);
        self.0
            .send(buf[..n].to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl XzReader {
    fn spawn<R: BufRead + Send + 'static>(mut src: R) -> Self {
        let (tx, rx) = sync_channel(2);
        let worker = std::thread::spawn(move || {
            let mut w = ChanWriter(tx);
            lzma_rs::xz_decompress(&mut src, &mut w).map_err(|e| match e {
                lzma_rs::error::Error::IoError(e) => e,
                e => bad(format!("xz: {e}")),
            })
        });
        XzReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            worker: Some(worker),
        }
    }
}

impl Read for XzReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                // The sender is gone: the decoder finished, well or not.
                Err(_) => {
                    return match self.worker.take().map(JoinHandle::join) {
                        Some(Ok(r)) => r.map(|()| 0),
                        Some(Err(_)) => Err(io::Error::other("xz decoder panicked")),
                        None => Ok(0),
                    };
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One archive member, with PAX and GNU extensions applied.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of content that follow the header.
    pub size: u64,
    pub mtime: (i64, u32),
    pub atime: Option<(i64, u32)>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// `SCHILY.xattr.*` PAX records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Sequential tar reader; `data` reads the current member's content.
pub(crate) struct TarReader<R> {
    r: R,
    /// Content not yet read of the current member.
    left: u64,
    /// Padding after that content.
    pad: u64,
}

#[derive(Default)]
struct Ext {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader { r, left: 0, pad: 0 }
    }

    /// The current member's content (`size` bytes at most).
    pub fn data(&mut self) -> impl Read + '_ {
        DataReader { t: self }
    }

    fn skip_rest(&mut self) -> io::Result<()> {
        let want = self.left + self.pad;
        let got = io::copy(&mut (&mut self.r).take(want), &mut io::sink())?;
        self.left = 0;
        self.pad = 0;
        if got < want {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Reads one block; Ok(false) on a clean end of stream before it.
    fn block(&mut self, b: &mut [u8; BLOCK]) -> io::Result<bool> {
        let mut n = 0;
        while n < BLOCK {
            match self.r.read(&mut b[n..]) {
                Ok(0) if n == 0 => return Ok(false),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Content of a special member (PAX header, long name), size-capped.
    fn special(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > MAX_SPECIAL {
            return Err(bad(format!("tar: special header of {size} bytes")));
        }
        let mut v = Vec::with_capacity(size as usize);
        (&mut self.r).take(size).read_to_end(&mut v)?;
        if (v.len() as u64) < size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let pad = padding(size);
        io::copy(&mut (&mut self.r).take(pad), &mut io::sink())?;
        Ok(v)
    }

    /// The next member, or None at the end of the archive.
    pub fn next(&mut self) -> io::Result<Option<Entry>> {
        self.skip_rest()?;
        let mut ext = Ext::default();
        let mut b = [0u8; BLOCK];
        loop {
            if !self.block(&mut b)? {
                return Ok(None);
            }
            if b.iter().all(|&c| c == 0) {
                // Two zero blocks end it; one followed by more is corrupt.
                if !self.block(&mut b)? || b.iter().all(|&c| c == 0) {
                    return Ok(None);
                }
                return Err(bad("tar: zero block followed by data"));
            }
            check_sum(&b)?;
            let h = tar::Header::from_byte_slice(&b);
            let size = h.entry_size()?;
            match b[156] {
                b'x' => ext.pax.extend(parse_pax(&self.special(size)?)?),
                b'L' => ext.name = Some(trim_nul(self.special(size)?)),
                b'K' => ext.link = Some(trim_nul(self.special(size)?)),
                _ => return self.entry(h, size, ext).map(Some),
            }
        }
    }

    fn entry(&mut self, h: &tar::Header, size: u64, ext: Ext) -> io::Result<Entry> {
        let mut e = Entry {
            name: ext.name.unwrap_or_else(|| h.path_bytes().into_owned()),
            link: ext.link.unwrap_or_else(|| {
                h.link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default()
            }),
            kind: h.as_bytes()[156],
            mode: h.mode()?,
            uid: h.uid()?,
            gid: h.gid()?,
            size,
            mtime: (i64::try_from(h.mtime()?).unwrap_or(i64::MAX), 0),
            dev_major: h.device_major().ok().flatten().unwrap_or(0),
            dev_minor: h.device_minor().ok().flatten().unwrap_or(0),
            ..Entry::default()
        };
        // GNU headers may carry an access time (offset 345).
        if let Some(g) = h.as_gnu()
            && h.as_bytes()[345] != 0
        {
            let at = g.atime()?;
            e.atime = Some((i64::try_from(at).unwrap_or(i64::MAX), 0));
        }
        for (k, v) in ext.pax {
            let num = || -> io::Result<u64> {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(format!("tar: bad PAX {}", String::from_utf8_lossy(&k))))
            };
            match k.as_slice() {
                b"path" => e.name = v.clone(),
                b"linkpath" => e.link = v.clone(),
                b"uid" => e.uid = num()?,
                b"gid" => e.gid = num()?,
                b"size" => e.size = num()?,
                b"mtime" => e.mtime = pax_time(&v)?,
                b"atime" => e.atime = Some(pax_time(&v)?),
                k if k.starts_with(b"GNU.sparse.") => e.kind = SPARSE,
                k => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        e.xattrs.push((name.to_vec(), v.clone()));
                    }
                }
            }
        }
        if e.kind == 0 {
            // The old "regular file" flag; a trailing slash made it a dir.
            e.kind = if e.name.ends_with(b"/") { DIR } else { REG };
        }
        // Go's header-only types carry no content whatever the size says.
        if matches!(e.kind, LINK | SYMLINK | CHAR | BLOCK_DEV | DIR | FIFO) {
            e.size = 0;
        }
        self.left = e.size;
        self.pad = padding(e.size);
        Ok(e)
    }
}

struct DataReader<'a, R> {
    t: &'a mut TarReader<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.t.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.t.left).unwrap_or(usize::MAX));
        let n = self.t.r.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.t.left -= n as u64;
        Ok(n)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Go accepts the unsigned and the (historic) signed sum.
fn check_sum(b: &[u8; BLOCK]) -> io::Result<()> {
    let field = &b[148..156];
    let text: String = field
        .iter()
        .map(|&c| c as char)
        .filter(|c| c.is_ascii_digit())
        .collect();
    let stored = i64::from_str_radix(&text, 8).map_err(|_| bad("tar: invalid header"))?;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    if stored != unsigned && stored != signed {
        return Err(bad("tar: invalid header checksum"));
    }
    Ok(())
}

/// `"%d key=value\n"` records.
fn parse_pax(mut d: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let sp = d
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| bad("tar: bad PAX record"))?;
        let len: usize = std::str::from_utf8(&d[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > sp + 1 && l <= d.len())
            .ok_or_else(|| bad("tar: bad PAX record length"))?;
        let rec = &d[sp + 1..len];
        let rec = rec
            .strip_suffix(b"\n")
            .ok_or_else(|| bad("tar: bad PAX record"))?;
        let eq = rec
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| bad("tar: bad PAX record"))?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        d = &d[len..];
    }
    Ok(out)
}

/// `sec[.frac]`, possibly negative.
fn pax_time(v: &[u8]) -> io::Result<(i64, u32)> {
    let s = std::str::from_utf8(v).map_err(|_| bad("tar: bad PAX time"))?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().map_err(|_| bad("tar: bad PAX time"))?;
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("tar: bad PAX time"));
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
mod tests {
    use super::*;

    #[test]
    fn pax_records_and_times() {
        let recs = parse_pax(b"30 mtime=1700000000.123456789\n12 uid=1000\n").unwrap();
        assert_eq!(recs[0].0, b"mtime");
        assert_eq!(pax_time(&recs[0].1).unwrap(), (1_700_000_000, 123_456_789));
        assert_eq!(recs[1], (b"uid".to_vec(), b"1000".to_vec()));
        assert_eq!(pax_time(b"-1.5").unwrap(), (-2, 500_000_000));
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert!(parse_pax(b"5 a=b").is_err());
    }

    #[test]
    fn zstd_magic() {
        assert!(is_zstd(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]));
        assert!(is_zstd(&[0x5a, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]));
        assert!(!is_zstd(b"ustar\0\0\0\0\0"));
    }
}
