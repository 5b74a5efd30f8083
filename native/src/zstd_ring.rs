//! The decompressing thread's output for `zstd_lines`: zstd's buffer-less API decodes each block
//! straight into a ring, and the reading thread reads the lines where they were decoded.
//!
//! Through zstd's streaming API every decoded byte was copied twice: from the decoder's own window
//! buffer into a chunk, then from the chunk into the line buffer. Here a block is decoded into the
//! ring (`ZSTD_decompressContinue`: the ring is the decoder's window too) and its lines are parsed
//! there (`RingReader`, `zstd_lines::read_ring_lines`); only a line the reader cannot hold together
//! in the ring is copied. The second part of a split one-frame stream, which decodes the first
//! part only to drop it, copies nothing at all (docs/benchmarks.md "The decoder's ring").
//!
//! The ring follows zstd's rule for a round buffer (`zstd.h`, "Buffer-less streaming
//! decompression"): each block is decoded right after the one before, and decoding starts again
//! from the ring's start when the room left could not hold a whole block; the ring holds the
//! frame's window, two blocks and `LAG` more bytes for what the reader holds and what is on its way
//! to it. A block is never decoded over bytes sent to the reader and not yet released by it
//! (`Ring::room`), and the reader never waits for a piece while it holds one (`RingReader::more`):
//! so neither waits for the other at once.
//!
//! What zstd's streaming decoder does, and so this does too: frames one after the other are one
//! stream; a skippable frame is skipped; a frame whose window passes zstd's default limit
//! (128 MiB) is an error; a stream cut short ends after its last complete block (and the bytes of a
//! raw block cut short), with no error.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use zstd_sys as sys;

/// Bytes of the ring beyond the frame's window and two blocks: what the reader may hold unread (the
/// line it is reading, in place) and what is on its way to it.
const LAG: usize = 2 << 20;
/// Contiguous decoded bytes gathered before they are sent to the reader (about 4 blocks).
const PIECE: usize = 256 << 10;
/// What zstd may write past a block's end while decoding it (`WILDCOPY_OVERLENGTH`, twice: the margin
/// of `ZSTD_decodingBufferSize_min`).
const OVERRUN: usize = 64;
/// zstd's default window limit for streaming (`ZSTD_WINDOWLOG_LIMIT_DEFAULT`, plus the one byte its
/// `ZSTD_MAXWINDOWSIZE_DEFAULT` allows).
const MAX_WINDOW: u64 = (1 << sys::ZSTD_WINDOWLOG_LIMIT_DEFAULT) + 1;
/// Compressed bytes read from the file at a time.
const INPUT: usize = 256 << 10;

/// One ring's memory, shared by the decoding thread (which writes it) and the reader (which reads
/// the pieces sent to it); freed when the last piece of it is dropped.
struct RingMemory {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the decoding thread writes only bytes that no unreleased piece covers (`Ring::room`), and
// the reader reads only the bytes of the pieces it holds; the channels order the two.
unsafe impl Send for RingMemory {}
unsafe impl Sync for RingMemory {}

impl RingMemory {
    fn new(len: usize) -> Arc<Self> {
        let memory = vec![0u8; len].into_boxed_slice(); // zeroed pages, touched only when written
        let len = memory.len();
        Arc::new(RingMemory {
            ptr: Box::into_raw(memory).cast::<u8>(),
            len,
        })
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are those of the boxed slice made in `new`, freed once here
        unsafe { drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len))) }
    }
}

/// Decoded bytes sent to the reader: `start..end` of a ring. Dropping it does not release it; the
/// reader says so on its release channel once it has read every byte of it.
pub(crate) struct Piece {
    memory: Arc<RingMemory>,
    start: usize,
    end: usize,
}

/// The reader has gone (it declined the part, or stopped): the decoding thread stops too.
pub(crate) struct ReaderGone;

/// The decoding thread's side of the ring.
pub(crate) struct Ring {
    memory: Option<Arc<RingMemory>>,
    generation: u64,
    /// where the next block is decoded
    at: usize,
    /// pieces sent and not yet released, in order: (ring generation, start, end)
    unreleased: VecDeque<(u64, usize, usize)>,
    /// decoded bytes to send, contiguous, not sent yet
    gathered: Option<(usize, usize)>,
    pieces: SyncSender<Piece>,
    released: Receiver<()>,
    /// the ring's bytes beyond a frame's window and two blocks (`LAG`)
    lag: usize,
    /// times a block waited for the reader to release what it held (tests)
    waits: u64,
}

impl Ring {
    pub(crate) fn new(pieces: SyncSender<Piece>, released: Receiver<()>) -> Self {
        Ring::with_lag(pieces, released, LAG)
    }

    fn with_lag(pieces: SyncSender<Piece>, released: Receiver<()>, lag: usize) -> Self {
        Ring {
            memory: None,
            generation: 0,
            at: 0,
            unreleased: VecDeque::new(),
            gathered: None,
            pieces,
            released,
            lag,
            waits: 0,
        }
    }

    /// Made ready for a frame of this window and block size: a larger ring when it needs one (the
    /// pieces sent keep the smaller one until they are released).
    fn frame(&mut self, window: u64, block: usize) -> Result<(), ReaderGone> {
        let needed = window as usize + 2 * (block + OVERRUN) + self.lag;
        if self.memory.as_ref().is_none_or(|memory| memory.len < needed) {
            self.send_gathered()?;
            self.memory = Some(RingMemory::new(needed));
            self.generation += 1;
            self.at = 0;
        }
        Ok(())
    }

    /// Where a block of at most `block` bytes may be decoded now, and the room given to zstd there:
    /// from the ring's start when too little is left before its end; after waiting, if need be,
    /// for the reader to release what it still holds there.
    fn room(&mut self, block: usize) -> Result<(*mut u8, usize), ReaderGone> {
        let memory = Arc::clone(self.memory.as_ref().expect("a frame's ring"));
        let room = block + OVERRUN;
        if memory.len - self.at < room {
            self.send_gathered()?; // not contiguous with what comes next
            self.at = 0;
        }
        let (low, high, current) = (self.at, self.at + room, self.generation);
        let overlaps = move |&(generation, start, end): &(u64, usize, usize)| generation == current && start < high && low < end;
        while let Ok(()) = self.released.try_recv() {
            self.unreleased.pop_front();
        }
        if self.gathered.is_some_and(|(start, end)| start < high && low < end) {
            self.send_gathered()?;
        }
        while self.unreleased.iter().any(overlaps) {
            self.waits += 1;
            self.released.recv().map_err(|_| ReaderGone)?;
            self.unreleased.pop_front();
        }
        // SAFETY: `at + room <= len` (checked above)
        Ok((unsafe { memory.ptr.add(self.at) }, room))
    }

    /// The `count` bytes just decoded at `at`: their place in the ring, `at` moved past them.
    fn decoded(&mut self, count: usize) -> (usize, usize) {
        let start = self.at;
        self.at += count;
        (start, self.at)
    }

    /// Bytes of the block just decoded, `start..end` (all of it or a part), to the reader: gathered
    /// into pieces of about `PIECE` bytes.
    pub(crate) fn send(&mut self, start: usize, end: usize) -> Result<(), ReaderGone> {
        if start == end {
            return Ok(());
        }
        match self.gathered {
            Some((first, last)) if last == start => self.gathered = Some((first, end)),
            _ => {
                self.send_gathered()?;
                self.gathered = Some((start, end));
            }
        }
        if end - self.gathered.unwrap().0 >= PIECE {
            self.send_gathered()?;
        }
        Ok(())
    }

    /// What was gathered, sent now.
    pub(crate) fn send_gathered(&mut self) -> Result<(), ReaderGone> {
        let Some((start, end)) = self.gathered.take() else { return Ok(()) };
        let memory = Arc::clone(self.memory.as_ref().expect("a frame's ring"));
        self.unreleased.push_back((self.generation, start, end));
        self.pieces.send(Piece { memory, start, end }).map_err(|_| ReaderGone)
    }

    /// The bytes at `start..end` of the current ring (just decoded).
    pub(crate) fn bytes(&self, start: usize, end: usize) -> &[u8] {
        let memory = self.memory.as_ref().expect("a frame's ring");
        // SAFETY: within the ring, written by zstd just now and not sent yet
        unsafe { std::slice::from_raw_parts(memory.ptr.add(start), end - start) }
    }
}

/// The reader's side: the pieces it holds, in order and contiguous in one ring, read in place as one
/// view (`view`); a piece is released once every byte of it is consumed (`consume`). The end of
/// the channel is the end of the stream.
///
/// It never waits for a piece while it holds any (`more`): a decoder waiting for it to release one
/// could not send the piece it waits for. So the reader takes what it holds out of the ring first
/// (the caller copies the line it was reading), and only then waits.
pub(crate) struct RingReader {
    pieces: Receiver<Piece>,
    released: Sender<()>,
    held: VecDeque<Piece>,
    /// where the view starts in the ring (in the first piece held)
    pos: usize,
    /// a piece received that does not follow the held ones (another ring, or after a wrap): held once
    /// they are all consumed
    apart: Option<Piece>,
}

/// What `RingReader::more` found.
pub(crate) enum More {
    /// a piece of this many bytes, now at the end of the view
    Grew(usize),
    /// the stream's end
    Ended,
}

impl RingReader {
    pub(crate) fn new(pieces: Receiver<Piece>, released: Sender<()>) -> Self {
        RingReader {
            pieces,
            released,
            held: VecDeque::new(),
            pos: 0,
            apart: None,
        }
    }

    /// The bytes held and not consumed, contiguous.
    pub(crate) fn view(&self) -> &[u8] {
        match (self.held.front(), self.held.back()) {
            // SAFETY: the held pieces are contiguous in one ring (`more`), `pos` within them, and
            // none is written until released (`Ring::room`)
            (Some(first), Some(last)) => unsafe { std::slice::from_raw_parts(first.memory.ptr.add(self.pos), last.end - self.pos) },
            _ => &[],
        }
    }

    /// The view's first `count` bytes read: the pieces read to their end released.
    pub(crate) fn consume(&mut self, count: usize) {
        self.pos += count;
        while self.held.front().is_some_and(|first| first.end <= self.pos) {
            self.held.pop_front();
            let _ = self.released.send(()); // the thread may be done
        }
        if let Some(first) = self.held.front() {
            self.pos = self.pos.max(first.start);
        }
    }

    /// One more piece, at the end of the view (`Grew`), or the stream's end (the view, if any, is
    /// its unterminated rest). When the next piece cannot join the view (none has come yet, or it
    /// does not follow the view in the ring), the view's bytes are first appended to `spill` and
    /// let go of: the reader never waits for a piece while it holds one.
    pub(crate) fn more(&mut self, spill: &mut Vec<u8>) -> More {
        if let Some(last) = self.held.back() {
            if self.apart.is_none() {
                match self.pieces.try_recv() {
                    Ok(piece) if Arc::ptr_eq(&last.memory, &piece.memory) && last.end == piece.start => return self.hold(piece),
                    Ok(piece) => self.apart = Some(piece),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => return More::Ended,
                }
            }
            let view = self.view();
            spill.extend_from_slice(view);
            let count = view.len();
            self.consume(count);
        }
        let piece = match self.apart.take() {
            Some(piece) => piece,
            None => match self.pieces.recv() {
                Ok(piece) => piece,
                Err(_) => return More::Ended,
            },
        };
        self.pos = piece.start;
        self.hold(piece)
    }

    fn hold(&mut self, piece: Piece) -> More {
        let count = piece.end - piece.start;
        self.held.push_back(piece);
        More::Grew(count)
    }
}

/// A zstd decompression context (buffer-less), freed when dropped.
struct Context(*mut sys::ZSTD_DCtx);

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: made by ZSTD_createDCtx, freed once
        unsafe { sys::ZSTD_freeDCtx(self.0) };
    }
}

fn zstd_error(code: usize) -> String {
    // SAFETY: zstd's error names are static C strings
    let name = unsafe { std::ffi::CStr::from_ptr(sys::ZSTD_getErrorName(code)) };
    format!("zstd decoder: {}", name.to_string_lossy())
}

fn is_error(code: usize) -> bool {
    // SAFETY: a pure function of its argument
    unsafe { sys::ZSTD_isError(code) != 0 }
}

/// The compressed file, read a piece at a time into a buffer from which each unit zstd asks for is
/// given whole.
struct Input {
    file: File,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    at_end: bool,
    /// compressed bytes consumed so far (the file's offset of `buf[pos]`, counting from where it was opened)
    consumed: u64,
}

impl Input {
    /// At least `count` bytes from `pos` in the buffer, unless the file ends first: how many there are.
    fn have(&mut self, count: usize) -> io::Result<usize> {
        if self.len - self.pos >= count || self.at_end {
            return Ok(self.len - self.pos);
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        if self.buf.len() < count {
            self.buf.resize(count, 0);
        }
        while self.len < count {
            let read = loop {
                match self.file.read(&mut self.buf[self.len..]) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if read == 0 {
                self.at_end = true;
                break;
            }
            self.len += read;
        }
        Ok(self.len - self.pos)
    }

    fn next(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    fn consume(&mut self, count: usize) {
        self.pos += count;
        self.consumed += count as u64;
    }

    /// `count` bytes passed over (a skippable frame); false when the file ends first.
    fn skip(&mut self, mut count: u64) -> io::Result<bool> {
        loop {
            let here = ((self.len - self.pos) as u64).min(count) as usize;
            self.consume(here);
            count -= here as u64;
            if count == 0 {
                return Ok(true);
            }
            if self.have(1)? == 0 {
                return Ok(false);
            }
        }
    }
}

/// What the decoding loop does with the bytes it decodes (`zstd_lines::Window`'s logic).
pub(crate) trait Sink {
    /// The bytes just decoded, at `ring` positions `start..end` (`Ring::bytes`): what to send of
    /// them is sent (`Ring::send`); `Ok(true)` to stop the stream here.
    fn decoded(&mut self, ring: &mut Ring, start: usize, end: usize) -> Result<bool, ReaderGone>;
    /// A frame (or a skippable frame) has just ended after `consumed` compressed bytes.
    fn frame_ended(&mut self, consumed: u64);
}

/// How the decoding loop ended: the stream's end (or where it was cut short), or the sink's stop.
pub(crate) enum Ended {
    Stream,
    Stopped,
    ReaderGone,
}

/// Decode the zstd stream in `file` from its start into `ring`, each block's bytes to `sink`.
/// Err: why the stream cannot be read as zstd's streaming decoder reads it.
pub(crate) fn decode(file: File, ring: &mut Ring, sink: &mut dyn Sink) -> Result<Ended, String> {
    let reading = |err: io::Error| format!("reading the compressed file: {err}");
    let mut input = Input {
        file,
        buf: vec![0u8; INPUT],
        pos: 0,
        len: 0,
        at_end: false,
        consumed: 0,
    };
    // SAFETY: a new context, checked, freed by `Context`'s drop
    let context = Context(unsafe { sys::ZSTD_createDCtx() });
    if context.0.is_null() {
        return Err("zstd decoder: out of memory".into());
    }
    let mut block = 0usize; // the frame's largest block, while in a frame
    loop {
        if block == 0 {
            // a frame's start, or the stream's end
            let available = input.have(sys::ZSTD_FRAMEHEADERSIZE_MAX as usize).map_err(reading)?;
            if available == 0 {
                break;
            }
            // SAFETY: a plain C struct that zstd fills; `available` bytes are readable
            let mut header: sys::ZSTD_FrameHeader = unsafe { std::mem::zeroed() };
            let wanted = unsafe { sys::ZSTD_getFrameHeader(&mut header, input.next().as_ptr().cast(), available) };
            if is_error(wanted) {
                return Err(zstd_error(wanted));
            }
            if wanted > 0 {
                break; // a header cut short: the stream ends here, as the streaming decoder ends it
            }
            if header.frameType == sys::ZSTD_FrameType_e::ZSTD_skippableFrame {
                if !input
                    .skip(u64::from(header.headerSize) + header.frameContentSize)
                    .map_err(reading)?
                {
                    break;
                }
                sink.frame_ended(input.consumed);
                continue;
            }
            if header.windowSize > MAX_WINDOW {
                // (the streaming decoder's words)
                return Err("zstd decoder: Frame requires too much memory for decoding".into());
            }
            block = (header.blockSizeMax as usize).max(1);
            if ring.frame(header.windowSize, block).is_err() {
                return Ok(Ended::ReaderGone);
            }
            // SAFETY: a valid context
            let begun = unsafe { sys::ZSTD_decompressBegin(context.0) };
            if is_error(begun) {
                return Err(zstd_error(begun));
            }
        }
        // SAFETY: a valid context
        let needed = unsafe { sys::ZSTD_nextSrcSizeToDecompress(context.0) };
        if needed == 0 {
            block = 0; // the frame's end
            sink.frame_ended(input.consumed);
            continue;
        }
        let available = input.have(needed).map_err(reading)?;
        if available == 0 {
            break;
        }
        let given = available.min(needed); // fewer only at the file's end: a raw block takes them
        let Ok((target, room)) = ring.room(block) else {
            return Ok(Ended::ReaderGone);
        };
        // SAFETY: `room` writable bytes at `target` (`Ring::room`), `given` readable input bytes
        let count = unsafe { sys::ZSTD_decompressContinue(context.0, target.cast(), room, input.next().as_ptr().cast(), given) };
        if is_error(count) {
            if given < needed {
                break; // cut short inside a block: its complete blocks were read
            }
            return Err(zstd_error(count));
        }
        input.consume(given);
        if count > 0 {
            let (start, end) = ring.decoded(count);
            match sink.decoded(ring, start, end) {
                Ok(false) => {}
                Ok(true) => return Ok(Ended::Stopped),
                Err(ReaderGone) => return Ok(Ended::ReaderGone),
            }
        }
    }
    Ok(Ended::Stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc::{channel, sync_channel};

    /// Every decoded byte to the reader.
    struct Everything;

    impl Sink for Everything {
        fn decoded(&mut self, ring: &mut Ring, start: usize, end: usize) -> Result<bool, ReaderGone> {
            ring.send(start, end).map(|()| false)
        }
        fn frame_ended(&mut self, _consumed: u64) {}
    }

    /// Lines of varied text, about `size` bytes: matches near and far for the compressor.
    fn text(size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size + 100);
        let mut state = 7u64;
        while out.len() < size {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            writeln!(
                out,
                "{{\"n\":{},\"word\":\"w{}\",\"pad\":\"{}\"}}",
                out.len(),
                state >> 50,
                "x".repeat((state >> 58) as usize)
            )
            .unwrap();
        }
        out
    }

    /// One frame of `data`, its window `2 ** window_log` bytes, no content size in its header.
    fn compressed(data: &[u8], window_log: u32) -> Vec<u8> {
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_contentsize(false).unwrap();
        encoder.window_log(window_log).unwrap();
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn file_of(bytes: &[u8], name: &str) -> File {
        let path = std::env::temp_dir().join(format!("zstd-ring-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    /// The stream decoded by a thread into a ring with `lag` spare bytes, read `read_size` bytes at a
    /// time in place (and only `limit` bytes of it, when given): what the reader read, and the
    /// thread's end and waits.
    fn decode_through_ring(blob: &[u8], lag: usize, read_size: usize, limit: Option<usize>) -> (Vec<u8>, Ended, u64) {
        let file = file_of(blob, &format!("{lag}-{read_size}"));
        let (piece_sender, piece_receiver) = sync_channel(2);
        let (released_sender, released_receiver) = channel();
        let thread = std::thread::spawn(move || {
            let mut ring = Ring::with_lag(piece_sender, released_receiver, lag);
            let ended = decode(file, &mut ring, &mut Everything).unwrap();
            let _ = ring.send_gathered();
            (ended, ring.waits)
        });
        let mut reader = RingReader::new(piece_receiver, released_sender);
        let mut out = Vec::new();
        loop {
            if limit.is_some_and(|limit| out.len() >= limit) {
                break;
            }
            // a few bytes at a time, the rest held in place while more is asked for (as a line
            // being read is; `more` copies it out when the next piece cannot join it)
            let view = reader.view();
            let count = view.len().min(read_size);
            out.extend_from_slice(&view[..count]);
            reader.consume(count);
            if reader.view().len() >= 2 * read_size {
                continue;
            }
            if matches!(reader.more(&mut out), More::Ended) {
                out.extend_from_slice(reader.view());
                break;
            }
        }
        drop(reader);
        let (ended, waits) = thread.join().unwrap();
        (out, ended, waits)
    }

    #[test]
    fn a_ring_barely_larger_than_the_window_gives_every_byte_in_order() {
        // a 1 KB window, no spare room: the decoder waits for the reader at almost every block
        let data = text(3 << 20);
        let blob = compressed(&data, 10);
        let (out, ended, waits) = decode_through_ring(&blob, 0, 1000, None);
        assert!(out == data, "the decoded bytes differ");
        assert!(matches!(ended, Ended::Stream));
        assert!(waits > 100, "the decoder never waited for the reader ({waits})");
        // the usual spare room: a reader taking large reads is never waited for
        let (out, _, waits) = decode_through_ring(&blob, LAG, 2 << 20, None);
        assert!(out == data && waits == 0);
    }

    #[test]
    fn frames_of_several_windows_one_after_the_other() {
        let data = text(1 << 20);
        let mut blob = Vec::new();
        for window_log in [10, 23, 10, 17] {
            blob.extend(compressed(&data, window_log));
        }
        let (out, ended, _) = decode_through_ring(&blob, 0, 777, None);
        assert!(matches!(ended, Ended::Stream));
        assert!(out == data.repeat(4), "the decoded bytes differ");
    }

    #[test]
    fn a_reader_that_stops_early_stops_the_decoder() {
        // the reader goes away holding pieces, the decoder waiting on them or sending more: no hang
        let data = text(2 << 20);
        let blob = compressed(&data, 10);
        let (out, ended, _) = decode_through_ring(&blob, 0, 1000, Some(100_000));
        assert!(out.len() >= 100_000 && out[..] == data[..out.len()]);
        assert!(matches!(ended, Ended::ReaderGone));
    }
}
