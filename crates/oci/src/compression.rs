//! Decompression by magic number, in one place for image layers and ADD's archives (the
//! formats of go-archive's `DecompressStream`: gzip, bzip2, xz, zstd or none).

use crate::layer::LayerError;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// A stream's compression, as its first bytes tell (the media type can lie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// go-archive's and containerd's `DetectCompression` on the first (up to 10) bytes.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if is_zstd(head) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// A file opened for reading, whatever its compression (ADD's archives).
pub fn open_decompressed(path: &Path) -> io::Result<Box<dyn Read>> {
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
    Ok(match Compression::detect(head) {
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(br)),
        // Go's gzip reader reads concatenated members too.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::Xz => Box::new(XzReader::spawn(br)),
        Compression::Zstd => Box::new(ZstdReader {
            src: br,
            dec: FrameDecoder::new(),
            in_frame: false,
        }),
        Compression::None => Box::new(br),
    })
}

/// A layer stream with its compression removed.
pub enum Decompressed<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<MultiGzDecoder<BufReader<R>>>),
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressed::Plain(r) => r.read(buf),
            Decompressed::Gzip(r) => r.read(buf),
        }
    }
}

/// Wraps a layer blob so that reading yields the tar, whatever the compression (by magic
/// number, as containerd does: the media type can lie).
pub fn decompress<R: Read>(r: R) -> Result<Decompressed<R>, LayerError> {
    let mut br = BufReader::with_capacity(64 * 1024, r);
    let head = br.fill_buf().map_err(LayerError::Read)?;
    // Layers take gzip only, as before; ADD's other formats are refused by name.
    match Compression::detect(head) {
        Compression::None => Ok(Decompressed::Plain(br)),
        Compression::Gzip => Ok(Decompressed::Gzip(Box::new(MultiGzDecoder::new(br)))),
        c => Err(LayerError::Compression { format: c.name() }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_magic() {
        assert!(is_zstd(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]));
        assert!(is_zstd(&[0x5a, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]));
        assert!(!is_zstd(b"ustar\0\0\0\0\0"));
    }
}
