//! Synchronous streaming codecs for the compressions barman-cloud uses on WAL
//! objects (see `barrelman_core::Compression`).
//!
//! Everything here streams through bounded buffers ([`BUFFER_SIZE`]); nothing reads a
//! whole input into memory. The byte formats are the ones barman-cloud 3.19.1 writes
//! and reads:
//!
//! | kind   | what we write                                                       |
//! |--------|---------------------------------------------------------------------|
//! | gzip   | one member; no FNAME, MTIME 0, XFL by level (2 @9, 4 @1), OS 255     |
//! | bzip2  | one `BZh<level>` stream                                              |
//! | xz     | one xz stream, preset = level, CRC64 check (Python `lzma` default)   |
//! | snappy | snappy *framing* format (stream identifier chunk first)              |
//! | zstd   | one frame with a content checksum; content size only when pledged    |
//! | lz4    | one frame, 64 KiB linked blocks, content checksum, size when pledged |
//!
//! Decoders accept concatenated members/streams/frames (gzip, bzip2, xz, zstd, lz4)
//! and report corrupt, truncated or empty input as [`io::ErrorKind::InvalidData`].
//! Errors of the underlying reader are passed through unchanged. Snappy's framing
//! format has no end marker, so a snappy object cut exactly at a chunk boundary
//! cannot be told from a complete one (barman's Python reader has the same limit);
//! every other cut is detected.

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, BufReader, ErrorKind, Read, Write};

use barrelman_core::counting::CountingWriter;
use barrelman_core::Compression;

/// Size of the copy buffers and of the read buffers put under decoders.
pub const BUFFER_SIZE: usize = 128 * 1024;

/// The snappy framing format's stream identifier chunk.
const SNAPPY_STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// The LZ4 frame magic number, little endian on the wire (`04 22 4D 18`).
const LZ4_MAGIC: u32 = 0x184D_2204;

// ---------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------

enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    // boxed: snap keeps a 2 KiB hash table inline
    Snappy(Box<snap::write::FrameEncoder<W>>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Lz4(lz4_flex::frame::FrameEncoder<W>),
}

macro_rules! each_encoder {
    ($enc:expr, $e:ident => $body:expr) => {
        match $enc {
            Encoder::None($e) => $body,
            Encoder::Gzip($e) => $body,
            Encoder::Bzip2($e) => $body,
            Encoder::Xz($e) => $body,
            Encoder::Snappy($e) => $body,
            Encoder::Zstd($e) => $body,
            Encoder::Lz4($e) => $body,
        }
    };
}

/// Wraps a writer so that what is written to it comes out compressed into `inner`.
///
/// [`CompressWriter::finish`] must be called to write the trailers and get `inner`
/// back; dropping the writer instead leaves the output incomplete.
pub struct CompressWriter<W: Write> {
    kind: Compression,
    enc: Encoder<W>,
    consumed: u64,
    pledged: Option<u64>,
}

impl<W: Write> CompressWriter<W> {
    /// A writer compressing with `kind` at `level` (ignored for None and snappy; must
    /// be inside [`Compression::level_range`] otherwise, or `InvalidInput`).
    pub fn new(kind: Compression, level: i32, inner: W) -> io::Result<Self> {
        Self::build(kind, level, None, inner)
    }

    /// Like [`CompressWriter::new`], pledging that exactly `size` bytes will be
    /// written. zstd and lz4 record the size in their frame header (barman's WAL
    /// `.lz4` objects carry it too). For every kind, writing more than `size` bytes
    /// fails at once and [`finish`](Self::finish) fails if fewer were written
    /// (`InvalidInput`): a file that changes size while it is compressed is caught.
    pub fn with_size(kind: Compression, level: i32, size: u64, inner: W) -> io::Result<Self> {
        Self::build(kind, level, Some(size), inner)
    }

    fn build(kind: Compression, level: i32, pledged: Option<u64>, inner: W) -> io::Result<Self> {
        if let Some((min, max)) = kind.level_range() {
            if level < min || level > max {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!("{kind} compression level {level} is outside {min}..={max}"),
                ));
            }
        }
        let enc = match kind {
            Compression::None => Encoder::None(inner),
            Compression::Gzip => Encoder::Gzip(
                // Same header as Python's gzip module without a file name:
                // FLG 0, XFL chosen from the level by flate2 exactly like Python
                // does (2 for 9, 4 for 1, else 0), OS 255. MTIME stays 0 ("no time
                // stamp"), so the output is reproducible.
                flate2::GzBuilder::new()
                    .operating_system(255)
                    .write(inner, flate2::Compression::new(level as u32)),
            ),
            Compression::Bzip2 => Encoder::Bzip2(bzip2::write::BzEncoder::new(
                inner,
                bzip2::Compression::new(level as u32),
            )),
            Compression::Xz => Encoder::Xz(xz_encoder(inner, level as u32)?),
            Compression::Snappy => Encoder::Snappy(Box::new(snap::write::FrameEncoder::new(inner))),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(inner, level)?;
                e.include_checksum(true)?;
                // Worker threads inside libzstd: a 16 MiB segment compresses on every
                // core and still comes out as one frame.
                let cores = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(4);
                if cores > 1 {
                    e.multithread(cores as u32)?;
                    // Small jobs keep the workers' buffers (and peak memory) small.
                    e.set_parameter(zstd::stream::raw::CParameter::JobSize(1 << 20))?;
                }
                if let Some(size) = pledged {
                    e.include_contentsize(true)?;
                    e.set_pledged_src_size(Some(size))?;
                }
                Encoder::Zstd(e)
            }
            Compression::Lz4 => {
                use lz4_flex::frame::{BlockMode, BlockSize, FrameInfo};
                // lz4_flex has a single compression level, so `level` only gets
                // validated. The frame settings are python-lz4's defaults (64 KiB
                // linked blocks) plus a content checksum.
                let info = FrameInfo::new()
                    .block_size(BlockSize::Max64KB)
                    .block_mode(BlockMode::Linked)
                    .content_checksum(true)
                    .content_size(pledged);
                Encoder::Lz4(lz4_flex::frame::FrameEncoder::with_frame_info(info, inner))
            }
        };
        Ok(Self {
            kind,
            enc,
            consumed: 0,
            pledged,
        })
    }

    /// The compression this writer applies.
    pub fn kind(&self) -> Compression {
        self.kind
    }

    /// Uncompressed bytes accepted so far.
    pub fn bytes_in(&self) -> u64 {
        self.consumed
    }

    /// Writes the trailers, flushes and returns the wrapped writer.
    pub fn finish(self) -> io::Result<W> {
        if let Some(size) = self.pledged {
            if self.consumed != size {
                return Err(size_mismatch(size, self.consumed));
            }
        }
        let mut w = match self.enc {
            Encoder::None(w) => w,
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Bzip2(e) => e.finish()?,
            Encoder::Xz(e) => e.finish()?,
            Encoder::Snappy(e) => {
                let mut w = (*e).into_inner().map_err(|e| e.into_error())?;
                if self.consumed == 0 {
                    // snap writes its stream identifier lazily; an empty input still
                    // gets one so that every object is a well-formed framed stream.
                    w.write_all(SNAPPY_STREAM_ID)?;
                }
                w
            }
            Encoder::Zstd(e) => e.finish()?,
            Encoder::Lz4(e) => e.finish().map_err(io::Error::from)?,
        };
        w.flush()?;
        Ok(w)
    }
}

/// Largest xz dictionary used. The match finder's tables grow with the dictionary:
/// preset 6's 8 MiB dictionary put one archive call of a 16 MiB random segment at
/// 61 MiB of RSS (2 MiB: 45 MiB), and preset 9's 64 MiB dictionary needs hundreds of
/// MiB. WAL's redundancy is local: on a real segment a 2 MiB window stores 1.5 %
/// more than 8 MiB. Any xz decoder reads the result.
const XZ_DICT_MAX: u32 = 2 << 20;

/// One xz stream with a CRC64 check and the LZMA2 settings of `preset`, like
/// Python's `lzma.compress(data, preset=level)`, with the dictionary capped at
/// [`XZ_DICT_MAX`].
fn xz_encoder<W: Write>(inner: W, preset: u32) -> io::Result<liblzma::write::XzEncoder<W>> {
    use liblzma::stream::{Check, Filters, LzmaOptions, Stream};
    // The presets' dictionary sizes (xz(1)), levels 0 to 9.
    const PRESET_DICT: [u32; 10] = [
        256 << 10,
        1 << 20,
        2 << 20,
        4 << 20,
        4 << 20,
        8 << 20,
        8 << 20,
        16 << 20,
        32 << 20,
        64 << 20,
    ];
    let mut opts = LzmaOptions::new_preset(preset).map_err(io::Error::other)?;
    let dict = PRESET_DICT
        .get(preset as usize)
        .copied()
        .unwrap_or(XZ_DICT_MAX);
    opts.dict_size(dict.min(XZ_DICT_MAX));
    let mut filters = Filters::new();
    filters.lzma2(&opts);
    let stream = Stream::new_stream_encoder(&filters, Check::Crc64).map_err(io::Error::other)?;
    Ok(liblzma::write::XzEncoder::new_stream(inner, stream))
}

fn size_mismatch(pledged: u64, actual: u64) -> io::Error {
    io::Error::new(
        ErrorKind::InvalidInput,
        format!("input size changed: {pledged} bytes were pledged, {actual} were written"),
    )
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.pledged {
            if self.consumed + buf.len() as u64 > size {
                return Err(size_mismatch(size, self.consumed + buf.len() as u64));
            }
        }
        let n = each_encoder!(&mut self.enc, e => e.write(buf))?;
        self.consumed += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        each_encoder!(&mut self.enc, e => e.flush())
    }
}

impl<W: Write> fmt::Debug for CompressWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressWriter")
            .field("kind", &self.kind)
            .field("consumed", &self.consumed)
            .field("pledged", &self.pledged)
            .finish_non_exhaustive()
    }
}

/// Copies `input` to `output` through one [`BUFFER_SIZE`] buffer; returns bytes copied.
fn copy(input: &mut dyn Read, output: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Compresses everything from `input` into `output` with `kind` at `level` (ignored
/// for None/Snappy), streaming with a bounded buffer. Returns (bytes read, bytes
/// written). For [`Compression::None`] it is a plain copy.
pub fn compress(
    kind: Compression,
    level: i32,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> io::Result<(u64, u64)> {
    compress_sized(kind, level, None, input, output)
}

/// [`compress`] with an optional pledged input size (see
/// [`CompressWriter::with_size`]): zstd and lz4 then record the content size in
/// their frame header, and an input of a different length is an `InvalidInput`
/// error. Use it with the WAL file's length to match barman's `.lz4` WAL objects.
pub fn compress_sized(
    kind: Compression,
    level: i32,
    size: Option<u64>,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> io::Result<(u64, u64)> {
    let mut counter = CountingWriter::new(output);
    let mut w = match size {
        Some(size) => CompressWriter::with_size(kind, level, size, &mut counter)?,
        None => CompressWriter::new(kind, level, &mut counter)?,
    };
    let read = copy(input, &mut w)?;
    w.finish()?;
    Ok((read, counter.count()))
}

// ---------------------------------------------------------------------------
// Decompression
// ---------------------------------------------------------------------------

/// An error of the reader under a decoder, carried through the decoder unchanged
/// and unwrapped again by [`Checked`].
#[derive(Debug)]
struct InnerError(io::Error);

impl fmt::Display for InnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for InnerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg.into())
}

/// Sits between a decoder and the compressed source. It marks the source's own
/// errors (so they are not reported as corruption), rejects an empty object for
/// kinds whose format has a mandatory header, and, for lz4, follows the frame
/// layout so that a premature end of input is an error instead of a clean EOF
/// (lz4_flex treats an end of input at a block boundary as the end of the data).
struct Tap<R> {
    inner: R,
    kind: Compression,
    total: u64,
    eof: bool,
    lz4: Option<Lz4Tracker>,
}

impl<R: Read> Tap<R> {
    fn new(kind: Compression, inner: R) -> Self {
        Tap {
            inner,
            kind,
            total: 0,
            eof: false,
            lz4: (kind == Compression::Lz4).then(Lz4Tracker::default),
        }
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.eof = true;
                if self.total == 0 && self.kind != Compression::Snappy {
                    return Err(invalid(format!("empty {} object", self.kind)));
                }
                if let Some(t) = &self.lz4 {
                    if !t.at_frame_boundary() {
                        return Err(invalid("truncated lz4 frame"));
                    }
                }
                Ok(0)
            }
            Ok(n) => {
                self.total += n as u64;
                if let Some(t) = &mut self.lz4 {
                    t.feed(&buf[..n]).map_err(invalid)?;
                }
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Err(e),
            // Kind Other, so that no decoder mistakes it for its own EOF handling.
            Err(e) => Err(io::Error::other(InnerError(e))),
        }
    }
}

/// Where the LZ4 frame parser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lz4Phase {
    /// Collecting a frame header (magic + descriptor); `have == 0` is a clean
    /// boundary between frames.
    Header,
    /// Collecting a 4-byte block size (or the end mark).
    BlockSize,
    /// Skipping a block's bytes (and its checksum), then another block size.
    Block,
    /// Skipping the content checksum after the end mark, then a frame ends.
    Trailer,
}

/// Follows the layout of concatenated LZ4 frames in the bytes a decoder consumes.
#[derive(Debug)]
struct Lz4Tracker {
    phase: Lz4Phase,
    hdr: [u8; 19],
    have: usize,
    need: usize,
    skip: u64,
    block_checksum: bool,
    content_checksum: bool,
    frames: u64,
}

impl Default for Lz4Tracker {
    fn default() -> Self {
        Lz4Tracker {
            phase: Lz4Phase::Header,
            hdr: [0; 19],
            have: 0,
            need: 6,
            skip: 0,
            block_checksum: false,
            content_checksum: false,
            frames: 0,
        }
    }
}

impl Lz4Tracker {
    fn at_frame_boundary(&self) -> bool {
        self.phase == Lz4Phase::Header && self.have == 0 && self.frames > 0
    }

    fn end_frame(&mut self) {
        self.frames += 1;
        self.phase = Lz4Phase::Header;
        self.have = 0;
        self.need = 6;
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), &'static str> {
        while !data.is_empty() {
            match self.phase {
                Lz4Phase::Header | Lz4Phase::BlockSize => {
                    let take = (self.need - self.have).min(data.len());
                    self.hdr[self.have..self.have + take].copy_from_slice(&data[..take]);
                    self.have += take;
                    data = &data[take..];
                    if self.have == self.need {
                        self.field_complete()?;
                    }
                }
                Lz4Phase::Block | Lz4Phase::Trailer => {
                    let take = self.skip.min(data.len() as u64);
                    self.skip -= take;
                    data = &data[take as usize..];
                    if self.skip == 0 {
                        self.skip_complete();
                    }
                }
            }
        }
        Ok(())
    }

    fn skip_complete(&mut self) {
        match self.phase {
            Lz4Phase::Block => {
                self.phase = Lz4Phase::BlockSize;
                self.have = 0;
                self.need = 4;
            }
            _ => self.end_frame(),
        }
    }

    fn field_complete(&mut self) -> Result<(), &'static str> {
        match self.phase {
            Lz4Phase::Header if self.need == 6 => {
                let magic =
                    u32::from_le_bytes([self.hdr[0], self.hdr[1], self.hdr[2], self.hdr[3]]);
                if magic != LZ4_MAGIC {
                    return Err("not an LZ4 frame (bad magic number)");
                }
                let flg = self.hdr[4];
                if flg >> 6 != 0b01 {
                    return Err("unsupported LZ4 frame version");
                }
                self.block_checksum = flg & 0x10 != 0;
                self.content_checksum = flg & 0x04 != 0;
                let content_size = if flg & 0x08 != 0 { 8 } else { 0 };
                let dict_id = if flg & 0x01 != 0 { 4 } else { 0 };
                // + 1 for the header checksum byte
                self.need = 6 + content_size + dict_id + 1;
                Ok(())
            }
            Lz4Phase::Header => {
                self.phase = Lz4Phase::BlockSize;
                self.have = 0;
                self.need = 4;
                Ok(())
            }
            Lz4Phase::BlockSize => {
                let v = u32::from_le_bytes([self.hdr[0], self.hdr[1], self.hdr[2], self.hdr[3]]);
                if v == 0 {
                    if self.content_checksum {
                        self.phase = Lz4Phase::Trailer;
                        self.skip = 4;
                    } else {
                        self.end_frame();
                    }
                } else {
                    self.phase = Lz4Phase::Block;
                    self.skip =
                        u64::from(v & 0x7FFF_FFFF) + if self.block_checksum { 4 } else { 0 };
                    if self.skip == 0 {
                        self.skip_complete();
                    }
                }
                Ok(())
            }
            Lz4Phase::Block | Lz4Phase::Trailer => unreachable!("not a header phase"),
        }
    }
}

/// lz4_flex's decoder returns `Ok(0)` at the end of every frame; this keeps going
/// until the source itself is exhausted, so concatenated frames are all read.
struct Lz4Reader<R: Read> {
    dec: lz4_flex::frame::FrameDecoder<Tap<BufReader<R>>>,
}

impl<R: Read> Read for Lz4Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.dec.read(buf)?;
            if n > 0 || buf.is_empty() || self.dec.get_ref().eof {
                return Ok(n);
            }
        }
    }
}

/// The outermost reader: decoder errors become `InvalidData` (with the codec's
/// name), errors of the source come out exactly as the source raised them.
struct Checked<'a> {
    kind: Compression,
    dec: Box<dyn Read + 'a>,
}

impl Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.dec.read(buf).map_err(|e| classify(self.kind, e))
    }
}

fn classify(kind: Compression, e: io::Error) -> io::Error {
    if e.kind() == ErrorKind::Interrupted {
        return e;
    }
    if e.get_ref().is_some_and(|inner| inner.is::<InnerError>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(inner) = inner.downcast::<InnerError>() {
                return inner.0;
            }
        }
        unreachable!("checked to be an InnerError");
    }
    invalid(format!("corrupt or truncated {kind} data: {e}"))
}

/// A reader yielding the decompressed bytes of `inner` (one object as barman-cloud
/// writes it; concatenated members/streams/frames are all decoded). Corrupt,
/// truncated or empty input (except for None and snappy, where empty is valid) is an
/// `InvalidData` error; errors of `inner` come through unchanged.
pub fn decompress_reader<'a, R: Read + 'a>(
    kind: Compression,
    inner: R,
) -> io::Result<Box<dyn Read + 'a>> {
    let buffered = |inner: R| BufReader::with_capacity(BUFFER_SIZE, Tap::new(kind, inner));
    let dec: Box<dyn Read + 'a> = match kind {
        Compression::None => return Ok(Box::new(inner)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered(inner))),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered(inner))),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered(
            inner,
        ))),
        Compression::Snappy => Box::new(snap::read::FrameDecoder::new(buffered(inner))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered(inner))?),
        Compression::Lz4 => Box::new(Lz4Reader {
            dec: lz4_flex::frame::FrameDecoder::new(Tap::new(
                kind,
                BufReader::with_capacity(BUFFER_SIZE, inner),
            )),
        }),
    };
    Ok(Box::new(Checked { kind, dec }))
}

/// Decompresses `input` (one object as barman-cloud writes it) into `output`,
/// streaming. Returns bytes written. Corrupt/truncated input is an `InvalidData`
/// error, never a silently short output.
pub fn decompress(
    kind: Compression,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> io::Result<u64> {
    let mut reader = decompress_reader(kind, input)?;
    copy(&mut reader, output)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::compression::ALL_COMPRESSIONS;

    /// xorshift64* — deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// `len` bytes alternating incompressible noise, text-like runs, zero pages and
    /// small-alphabet noise, in pseudo-random segment lengths.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed | 1);
        let mut out = Vec::with_capacity(len);
        let text = b"INSERT INTO pgbench_accounts VALUES (42, 1, 0, '                    ');\n";
        while out.len() < len {
            let seg = (1 + rng.below(48 * 1024) as usize).min(len - out.len());
            match rng.below(4) {
                0 => (0..seg).for_each(|_| out.push(rng.next() as u8)),
                1 => (0..seg).for_each(|i| out.push(text[i % text.len()])),
                2 => out.resize(out.len() + seg, 0),
                _ => (0..seg).for_each(|_| out.push(b'a' + rng.below(6) as u8)),
            }
        }
        out
    }

    fn compressed_kinds() -> impl Iterator<Item = Compression> {
        ALL_COMPRESSIONS
            .into_iter()
            .filter(|k| *k != Compression::None)
    }

    fn pack(kind: Compression, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (read, written) =
            compress(kind, kind.default_level(), &mut &data[..], &mut out).unwrap();
        assert_eq!(read, data.len() as u64, "{kind}");
        assert_eq!(written, out.len() as u64, "{kind}");
        out
    }

    fn unpack(kind: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = decompress(kind, &mut &data[..], &mut out)?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    /// Reads `r` to the end with an odd buffer size (exercises partial reads).
    fn drain(mut r: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4093];
        loop {
            match r.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn magic(kind: Compression) -> &'static [u8] {
        match kind {
            Compression::None => b"",
            Compression::Gzip => b"\x1f\x8b\x08",
            Compression::Bzip2 => b"BZh",
            Compression::Xz => b"\xfd7zXZ\x00",
            Compression::Snappy => SNAPPY_STREAM_ID,
            Compression::Zstd => b"\x28\xb5\x2f\xfd",
            Compression::Lz4 => b"\x04\x22\x4d\x18",
        }
    }

    #[test]
    fn round_trip_every_kind() {
        let big = sample(3 * 1024 * 1024 + 12345, 7);
        for kind in ALL_COMPRESSIONS {
            for data in [&[][..], &[0x5a][..], &big[..]] {
                let packed = pack(kind, data);
                assert!(packed.starts_with(magic(kind)), "{kind} magic");
                assert_eq!(
                    unpack(kind, &packed).unwrap(),
                    data,
                    "{kind} len {}",
                    data.len()
                );
                let r = decompress_reader(kind, &packed[..]).unwrap();
                assert_eq!(drain(r).unwrap(), data, "{kind} reader");
                if kind != Compression::None && data.len() == big.len() {
                    assert!(packed.len() < data.len() * 3 / 4, "{kind} compresses");
                }
            }
        }
    }

    #[test]
    fn every_level_round_trips() {
        let data = sample(300 * 1024, 11);
        for kind in compressed_kinds() {
            let levels: Vec<i32> = match kind.level_range() {
                None => vec![0],
                Some((min, max)) => vec![min, kind.default_level(), max],
            };
            for level in levels {
                let mut out = Vec::new();
                compress(kind, level, &mut &data[..], &mut out).unwrap();
                assert_eq!(unpack(kind, &out).unwrap(), data, "{kind} level {level}");
            }
        }
    }

    #[test]
    fn out_of_range_level_is_rejected() {
        for kind in compressed_kinds() {
            if let Some((_, max)) = kind.level_range() {
                let err = CompressWriter::new(kind, max + 1, Vec::new()).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidInput, "{kind}");
            } else {
                assert!(CompressWriter::new(kind, 12345, Vec::new()).is_ok());
            }
        }
    }

    #[test]
    fn writer_accepts_odd_sized_writes() {
        let data = sample(700 * 1024, 3);
        for kind in ALL_COMPRESSIONS {
            let mut w = CompressWriter::new(kind, kind.default_level(), Vec::new()).unwrap();
            let mut rng = Rng(99);
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(70_000) as usize).min(rest.len());
                w.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
            }
            assert_eq!(w.bytes_in(), data.len() as u64);
            let packed = w.finish().unwrap();
            assert_eq!(unpack(kind, &packed).unwrap(), data, "{kind}");
        }
    }

    #[test]
    fn format_headers() {
        // bzip2 level digit
        for level in [1, 5, 9] {
            let mut out = Vec::new();
            compress(Compression::Bzip2, level, &mut &b"x"[..], &mut out).unwrap();
            assert_eq!(&out[..4], format!("BZh{level}").as_bytes());
        }
        // xz stream flags: CRC64 (0x04), like Python's lzma default
        let xz = pack(Compression::Xz, b"hello");
        assert_eq!(&xz[..8], b"\xfd7zXZ\x00\x00\x04");
        // snappy: identifier chunk first, also for empty input
        assert_eq!(pack(Compression::Snappy, b""), SNAPPY_STREAM_ID);
        // lz4: version 01, linked blocks, content checksum, no content size; 64 KiB blocks
        let lz4 = pack(Compression::Lz4, b"hello");
        assert_eq!(lz4[4] & 0xC0, 0x40);
        assert_eq!(lz4[4] & 0x20, 0, "linked blocks");
        assert_eq!(lz4[4] & 0x08, 0, "no content size without a pledge");
        assert_eq!(lz4[4] & 0x04, 0x04, "content checksum");
        assert_eq!(lz4[5], 0x40, "64 KiB max block size");
        // zstd: checksum flag, no content size without a pledge (or a single segment)
        let zst = pack(Compression::Zstd, &sample(200_000, 1));
        let fhd = zst[4];
        assert_eq!(fhd & 0x04, 0x04, "zstd content checksum flag");
        assert_eq!(fhd & 0xC0, 0, "no content size field");
        assert_eq!(fhd & 0x20, 0, "not single segment");
    }

    #[test]
    fn gzip_header_matches_python() {
        for (level, xfl) in [(1, 4u8), (6, 0), (9, 2)] {
            let mut out = Vec::new();
            compress(Compression::Gzip, level, &mut &b"abc"[..], &mut out).unwrap();
            // magic, CM=8, FLG=0 (no FNAME), MTIME=0, XFL, OS=255
            assert_eq!(
                &out[..10],
                &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255],
                "level {level}"
            );
        }
        // single member: the trailer (CRC32 + ISIZE) ends the output
        let data = sample(100_000, 5);
        let gz = pack(Compression::Gzip, &data);
        let isize = u32::from_le_bytes(gz[gz.len() - 4..].try_into().unwrap());
        assert_eq!(isize as usize, data.len());
    }

    #[test]
    fn pledged_size_is_recorded_and_enforced() {
        let data = sample(500_000, 21);
        let n = data.len() as u64;
        for kind in ALL_COMPRESSIONS {
            let mut out = Vec::new();
            let (r, w) = compress_sized(
                kind,
                kind.default_level(),
                Some(n),
                &mut &data[..],
                &mut out,
            )
            .unwrap();
            assert_eq!((r, w), (n, out.len() as u64));
            assert_eq!(unpack(kind, &out).unwrap(), data, "{kind}");
            match kind {
                Compression::Lz4 => {
                    assert_eq!(out[4] & 0x08, 0x08, "lz4 content size flag");
                    assert_eq!(u64::from_le_bytes(out[6..14].try_into().unwrap()), n);
                }
                Compression::Zstd => {
                    let fhd = out[4];
                    assert_eq!(fhd >> 6, 2, "4-byte frame content size");
                    let single = fhd & 0x20 != 0;
                    let at = 5 + usize::from(!single);
                    assert_eq!(
                        u64::from(u32::from_le_bytes(out[at..at + 4].try_into().unwrap())),
                        n
                    );
                }
                _ => {}
            }
            // too few bytes
            let err = compress_sized(
                kind,
                kind.default_level(),
                Some(n + 1),
                &mut &data[..],
                &mut Vec::new(),
            )
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{kind} short");
            // too many bytes
            let err = compress_sized(
                kind,
                kind.default_level(),
                Some(n - 1),
                &mut &data[..],
                &mut Vec::new(),
            )
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{kind} long");
        }
        // empty input with a pledge of zero
        for kind in [Compression::Zstd, Compression::Lz4] {
            let mut out = Vec::new();
            compress_sized(kind, kind.default_level(), Some(0), &mut &b""[..], &mut out).unwrap();
            assert_eq!(unpack(kind, &out).unwrap(), b"");
        }
    }

    /// Offsets of snappy chunk boundaries (where a cut is undetectable by design).
    fn snappy_chunk_ends(data: &[u8]) -> Vec<usize> {
        let mut ends = vec![];
        let mut at = 0;
        while at < data.len() {
            let len = u32::from_le_bytes([data[at + 1], data[at + 2], data[at + 3], 0]) as usize;
            at += 4 + len;
            ends.push(at);
        }
        ends
    }

    #[test]
    fn truncated_input_is_invalid_data() {
        let data = sample(400 * 1024, 13);
        for kind in compressed_kinds() {
            let packed = pack(kind, &data);
            let len = packed.len();
            let mut cuts: Vec<usize> = (0..64).collect();
            cuts.extend((1..=64).map(|d| len - d));
            cuts.extend((1..150).map(|i| len * i / 150));
            cuts.sort_unstable();
            cuts.dedup();
            let chunk_ends = if kind == Compression::Snappy {
                snappy_chunk_ends(&packed)
            } else {
                vec![]
            };
            for cut in cuts {
                if kind == Compression::Snappy && (cut == 0 || chunk_ends.contains(&cut)) {
                    continue;
                }
                match unpack(kind, &packed[..cut]) {
                    Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidData, "{kind} cut {cut}: {e}"),
                    Ok(out) => panic!("{kind} cut at {cut}/{len} decoded {} bytes", out.len()),
                }
            }
        }
    }

    #[test]
    fn empty_object_is_invalid_except_none_and_snappy() {
        for kind in ALL_COMPRESSIONS {
            let res = unpack(kind, b"");
            match kind {
                Compression::None | Compression::Snappy => assert_eq!(res.unwrap(), b""),
                _ => assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidData, "{kind}"),
            }
        }
    }

    #[test]
    fn corrupt_byte_is_invalid_data() {
        let data = sample(256 * 1024, 17);
        for kind in compressed_kinds() {
            let packed = pack(kind, &data);
            for at in [packed.len() / 3, packed.len() / 2, packed.len() - 5] {
                let mut bad = packed.clone();
                bad[at] ^= 0x41;
                let err = unpack(kind, &bad).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidData, "{kind} at {at}: {err}");
            }
        }
    }

    #[test]
    fn trailing_garbage_is_invalid_data() {
        let data = sample(50_000, 19);
        for kind in compressed_kinds() {
            let mut packed = pack(kind, &data);
            packed.extend_from_slice(b"garbage!");
            let err = unpack(kind, &packed).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{kind}: {err}");
        }
    }

    #[test]
    fn concatenated_streams_yield_everything() {
        let a = sample(200_000, 23);
        let b = sample(70_000, 29);
        for kind in compressed_kinds() {
            let mut both = pack(kind, &a);
            both.extend_from_slice(&pack(kind, &b));
            let mut expected = a.clone();
            expected.extend_from_slice(&b);
            assert_eq!(unpack(kind, &both).unwrap(), expected, "{kind}");
            // with an empty stream in the middle
            let mut three = pack(kind, &a);
            three.extend_from_slice(&pack(kind, b""));
            three.extend_from_slice(&pack(kind, &b));
            assert_eq!(
                unpack(kind, &three).unwrap(),
                expected,
                "{kind} with empty middle"
            );
        }
    }

    #[test]
    fn two_gzip_members() {
        let mut gz = pack(Compression::Gzip, b"first member, ");
        gz.extend_from_slice(&pack(Compression::Gzip, b"second member"));
        assert_eq!(
            unpack(Compression::Gzip, &gz).unwrap(),
            b"first member, second member"
        );
    }

    /// Yields `data`, then fails with `kind`.
    struct Failing<'a> {
        data: &'a [u8],
        kind: ErrorKind,
    }
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::Error::new(self.kind, "source failed"));
            }
            let n = buf.len().min(self.data.len()).min(1000);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn source_errors_pass_through() {
        let data = sample(100_000, 31);
        for kind in ALL_COMPRESSIONS {
            let packed = pack(kind, &data);
            for err_kind in [ErrorKind::ConnectionReset, ErrorKind::UnexpectedEof] {
                let mut src = Failing {
                    data: &packed[..packed.len() / 2],
                    kind: err_kind,
                };
                let err = decompress(kind, &mut src, &mut Vec::new()).unwrap_err();
                assert_eq!(err.kind(), err_kind, "{kind}: {err}");
                assert_eq!(err.to_string(), "source failed", "{kind}");
            }
        }
    }

    #[test]
    fn compress_reports_source_errors() {
        let mut src = Failing {
            data: b"abc",
            kind: ErrorKind::PermissionDenied,
        };
        let err = compress(Compression::Zstd, 4, &mut src, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }
}
