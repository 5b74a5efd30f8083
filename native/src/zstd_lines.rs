//! A whole-file zstd stream of JSON lines (`file_reader._read_zstd`, format `zstd+json-lines`):
//! decompressed on a thread of its own into a bounded channel while the calling thread reads the
//! lines and aggregates them (`read_lines`, the same loop as for a plain file), so decompression
//! and parsing overlap: the stream is read about as fast as the same lines uncompressed. A part of
//! the stream can be read (`Window`): two processes read one large stream at once, each its part
//! (`parallel.read_zstd_in_parallel`).
//!
//! What the Python reader does, and so this does too:
//!
//! * frames one after the other are one stream (`stream_reader(read_across_frames=True)`);
//! * a stream cut short (a file still being written) ends where the decoder stops giving bytes: the
//!   complete blocks are read, the unterminated last line is a partial tail, no error;
//! * a continued build decompresses from the start again and skips the bytes read last time (a zstd
//!   stream cannot be resumed in the middle); a stream that ends before them is an error there.
//!
//! Any decoder error (a corrupt block, a bad checksum, junk after a frame, a window beyond the
//! decoder's limit), a stream ending before the skipped bytes, or a read error declines the part:
//! the Python reader then reads the file and reports the error its way. Memory: the decoder's
//! window (at most 128 MiB, zstd's default limit, which python-zstandard keeps too), at most
//! `DEPTH + 2` chunks of `CHUNK` bytes, and the line buffer of `read_lines`; never the whole
//! decompressed file.
//!
//! (Decoding the lines on a third thread, the calling one only aggregating, was tried: decoded
//! requests handed between threads lose the cache, and the whole took more CPU time than this, and
//! as much wall time on two cores shared with other work.)

use crate::part::{self, Aggregator, Stop, R};
use crate::table_loops::writable;
use crate::tables::{FpMap, FpSet};
use crate::values::Helpers;
use crate::{read_lines, result, Lines};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

/// Bytes of decompressed output per message, and messages waiting in the channel at most.
const CHUNK: usize = 256 << 10;
const DEPTH: usize = 2;
/// Compressed bytes read from the file at a time.
const INPUT: usize = 256 << 10;

/// The decompressed stream as `Read`: chunks from the decompressing thread, copied out; each
/// emptied chunk is sent back to be filled again. The end of the channel is the end of the stream
/// (whether it ended well is the thread's result, checked after the lines are read).
struct Decompressed {
    chunks: Receiver<Vec<u8>>,
    spent: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for Decompressed {
    fn read(&mut self, target: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let Ok(next) = self.chunks.recv() else { return Ok(0) };
            let spent = std::mem::replace(&mut self.current, next);
            let _ = self.spent.send(spent); // the thread may be done: then the chunk is dropped here
            self.pos = 0;
        }
        let count = target.len().min(self.current.len() - self.pos);
        target[..count].copy_from_slice(&self.current[self.pos..self.pos + count]);
        self.pos += count;
        Ok(count)
    }
}

/// A read that an interrupted system call does not end.
fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Which bytes of the decompressed stream the reader gets: from byte `skip` (`align`: from the first
/// line start at or after it), to the end, or (`stop`) to the first line start at or after `stop`.
/// A stream cut at a line start by `stop` in one process and started there by `align` in another
/// (`parallel.read_zstd_in_parallel`) is read in two parts that meet exactly.
#[derive(Clone, Copy)]
struct Window {
    skip: u64,
    align: bool,
    stop: Option<u64>,
    /// A compressed offset where a frame starts: the window stops at the first line start at or
    /// after that frame's first decompressed byte (`skip` 0), if the decoder is at a frame's end
    /// there (else the window goes on to the end of the stream).
    frame_cut: Option<u64>,
}

/// Where the bytes sent start in the stream, and whether they were cut at the window's `stop`.
struct Sent {
    start: u64,
    stopped: bool,
    /// The decompressed offset of the frame at `Window::frame_cut`, when the decoder met its start.
    frame_start: Option<u64>,
}

/// The decompressing thread: decode `file` from its start, send the window's bytes in chunks.
/// Err: why the stream cannot be read as the Python reader reads it. Returns early when the reader
/// has gone (it declined the part).
fn decompress(mut file: File, window: Window, chunks: SyncSender<Vec<u8>>, spent: Receiver<Vec<u8>>) -> Result<Sent, String> {
    let mut decoder = Decoder::new().map_err(|e| format!("zstd decoder: {e}"))?;
    let mut input = vec![0u8; INPUT];
    let (mut in_pos, mut in_len, mut at_end) = (0usize, 0usize, false);
    let mut out = vec![0u8; CHUNK];
    let mut filled = 0usize; // bytes in `out`: still to drop (before the window), or to send
    let mut skip = window.skip; // bytes still to drop
    let mut aligning = window.align && window.skip > 0; // then dropping up to a line start
    let mut start = window.skip; // where the bytes sent start
    let mut sent = 0u64; // bytes sent so far (so `out[i]` is byte `start + sent + i`)
    let mut scanned = 0usize; // bytes of `out` searched for the stop's newline
    let (mut stop, mut frame_cut, mut frame_start) = (window.stop, window.frame_cut, None);
    if frame_cut.is_some() && (skip > 0 || stop.is_some()) {
        return Err("a frame cut is for a window from the start without a stop".into());
    }
    let mut fed = 0u64; // compressed bytes read from the file
    loop {
        if in_pos == in_len && !at_end {
            // up to the frame cut first, so that the decoder's state there can be checked
            let want = frame_cut.map_or(input.len(), |cut| (cut - fed).min(input.len() as u64) as usize);
            if want > 0 {
                in_len = read_some(&mut file, &mut input[..want]).map_err(|e| format!("reading the compressed file: {e}"))?;
                in_pos = 0;
                at_end = in_len == 0;
                fed += in_len as u64;
            }
        }
        let mut source = InBuffer::around(&input[in_pos..in_len]);
        let mut target = OutBuffer::around_pos(&mut out[..], filled);
        let hint = decoder.run(&mut source, &mut target).map_err(|e| format!("zstd decoder: {e}"))?;
        let (taken, now) = (source.pos(), target.pos());
        let produced = now - filled;
        in_pos += taken;
        filled = now;
        if frame_cut == Some(fed) && in_pos == in_len {
            if hint == 0 {
                // every byte before the cut decoded, a frame ended and all of it is out: the cut is
                // a frame's start, this its decompressed offset
                let at = start + sent + filled as u64;
                frame_start = Some(at);
                stop = Some(at + 1); // the first newline at or after it ends the window
                frame_cut = None;
            } else if produced == 0 && taken == 0 {
                frame_cut = None; // not a frame's start after all: read on to the end
            }
        }
        if skip > 0 && filled > 0 {
            let dropped = (filled as u64).min(skip) as usize;
            skip -= dropped as u64;
            if skip == 0 && aligning && out[dropped - 1] == b'\n' {
                aligning = false; // the window starts at a line start already
            }
            out.copy_within(dropped..filled, 0);
            filled -= dropped;
        }
        if skip == 0 && aligning && filled > 0 {
            let dropped = memchr::memchr(b'\n', &out[..filled]).map_or(filled, |at| {
                aligning = false;
                at + 1
            });
            start += dropped as u64;
            out.copy_within(dropped..filled, 0);
            filled -= dropped;
        }
        if let (Some(stop), false, 0) = (stop, aligning, skip) {
            // the first newline at or after byte `stop - 1` ends the window
            let first = stop.saturating_sub(1).saturating_sub(start + sent).min(filled as u64) as usize;
            let from = scanned.max(first);
            if let Some(at) = memchr::memchr(b'\n', &out[from..filled]) {
                out.truncate(from + at + 1);
                let _ = chunks.send(out);
                return Ok(Sent {
                    start,
                    stopped: true,
                    frame_start,
                });
            }
            scanned = filled;
        }
        if filled == out.len() {
            let next = spent.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            if chunks.send(std::mem::replace(&mut out, next)).is_err() {
                return Ok(Sent {
                    start,
                    stopped: false,
                    frame_start,
                });
            }
            sent += filled as u64;
            filled = 0;
            scanned = 0;
        }
        // The end: no more input, and a call with none gave nothing (a stream cut short mid-frame
        // ends here too, as python-zstandard's reader ends it: no error, the complete blocks read).
        // One call without progress is the last: libzstd counts such calls and errs after 16.
        if at_end && in_pos == in_len && produced == 0 && taken == 0 {
            break;
        }
    }
    if skip > 0 {
        return Err(format!("the stream ends {skip} bytes before the offset already read"));
    }
    if filled > 0 {
        out.truncate(filled);
        let _ = chunks.send(out);
    }
    Ok(Sent {
        start,
        stopped: false,
        frame_start,
    })
}

/// `read_lines` over the window of the decompressed stream, the decompression on a scoped thread
/// (always joined, on every path out of here). A decoder error declines the part.
fn read_stream(agg: &mut Aggregator, file: File, window: Window, progress: Option<&Bound<PyAny>>, max_line: usize) -> R<(Lines, Sent)> {
    std::thread::scope(|scope| {
        let (chunk_sender, chunk_receiver) = sync_channel(DEPTH);
        let (spent_sender, spent_receiver) = channel();
        let worker = std::thread::Builder::new()
            .name("zstd-decompress".into())
            .spawn_scoped(scope, move || decompress(file, window, chunk_sender, spent_receiver))
            .map_err(|e| Stop::Python(e.into()))?;
        let mut stream = Decompressed {
            chunks: chunk_receiver,
            spent: spent_sender,
            current: Vec::new(),
            pos: 0,
        };
        let read = read_lines(agg, &mut stream, None, progress, max_line);
        drop(stream); // the thread, if still decompressing, stops at its next send
        let ended = worker.join();
        let lines = read?;
        match ended {
            Ok(Ok(sent)) => Ok((lines, sent)),
            Ok(Err(why)) => part::decline(&why),
            Err(_) => part::decline("the zstd decompressing thread panicked"),
        }
    })
}

/// Read the zstd stream of JSON lines in `path` from decompressed byte `skip` (what earlier builds
/// read) to its end, as `file_reader._read_zstd` does after skipping. Returns the same dict as
/// `read_part` (consumed: decompressed bytes after `skip`), or a string: why the part was declined
/// (read it with the Python reader).
///
/// `tables`, when given, are those of an empty aggregator (as for `read_part`), filled in place.
/// The decompressed size is not known before the end, so they were sized from an estimate and may
/// turn out too small: a table that must grow then grows out of its array into slots of its own,
/// and is returned like a part's (`span_fps`, or `closed_keys` and `closed_states`), with
/// `tables_in_place` false: the caller puts them back. Otherwise the part's own tables are sized
/// for `expected_spans` and grow.
///
/// `align` and `stop` make the part one of two read in parallel (`Window`): `start` in the result
/// is where its bytes start (`skip`, or the line start after it), `stopped` whether it ended at
/// the first line start at or after `stop` (else at the end of the stream).
///
/// A stream of many frames can be split where a frame starts, each part decoded by its reader
/// alone (`ZSTD_FRAME_CUT`): the first part's `frame_cut` (a compressed offset, `skip` 0, no
/// `stop`) stops it at the first line start at or after that frame's first byte, if the decoder
/// is at a frame's end right there (`frame_start` in the result: its decompressed offset; else
/// None, and the part goes on to the end of the stream); the second part's `seek` starts the
/// stream at that offset (`skip` 1 and `align`: from the first line start at or after the frame's
/// first byte; `start` counts from that byte).
#[pyfunction]
#[pyo3(signature = (path, skip, since_ns, until_ns, collect_signals, helpers, progress=None, tables=None, expected_spans=None, *, max_line, max_open_runs, align=false, stop=None, spill=None, latencies=None, frame_cut=None, seek=None))]
#[allow(clippy::too_many_arguments)]
pub fn read_zstd_part<'py>(
    py: Python<'py>,
    path: &str,
    skip: u64,
    since_ns: Option<i128>,
    until_ns: Option<i128>,
    collect_signals: bool,
    helpers: Bound<'py, PyAny>,
    progress: Option<Bound<'py, PyAny>>,
    tables: Option<(PyBuffer<u64>, PyBuffer<u64>, PyBuffer<u8>)>,
    expected_spans: Option<usize>,
    max_line: usize,
    max_open_runs: usize,
    align: bool,
    stop: Option<u64>,
    spill: Option<Bound<'py, PyAny>>,
    latencies: Option<(i32, u64, usize)>,
    frame_cut: Option<u64>,
    seek: Option<u64>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut file = File::open(path)?;
    if let Some(at) = seek {
        file.seek(SeekFrom::Start(at))?; // a frame's start: the stream from there on
    }
    let mut spill = crate::spill::SpillArg::parse(spill.as_ref(), tables.is_some())?;
    let handoff = spill.handoff();
    let window = Window {
        skip,
        align,
        stop,
        frame_cut,
    };
    let own_tables;
    let chosen = match &tables {
        Some((seen, keys, states)) => (
            FpSet::detachable(writable(py, seen)?),
            FpMap::detachable(writable(py, keys)?, writable(py, states)?),
        ),
        None => {
            let expected = expected_spans.unwrap_or(0);
            let expected = spill.table_spans(expected);
            own_tables = (FpSet::new(expected), FpMap::new(expected / 2));
            own_tables
        }
    };
    let chosen = spill.attach(chosen, expected_spans.unwrap_or(0));
    let mut agg = Aggregator::new(Helpers::new(helpers), since_ns, until_ns, collect_signals, chosen, max_open_runs);
    agg.latency_spill = latencies.map(crate::latency_spill::LatencySpill::new).transpose()?;
    match read_stream(&mut agg, file, window, progress.as_ref(), max_line) {
        Ok((read, sent)) => {
            let in_place = tables.is_some() && agg.seen.in_place() && agg.closed.in_place();
            let out = result(py, agg, &read, in_place, handoff)?;
            out.set_item("tables_in_place", in_place)?;
            out.set_item("start", sent.start)?;
            out.set_item("stopped", sent.stopped)?;
            out.set_item("frame_start", sent.frame_start)?;
            Ok(out.into_any())
        }
        Err(Stop::Decline(why)) => Ok(why.into_pyobject(py)?.into_any()),
        Err(Stop::Python(err)) => Err(err),
    }
}

/// The version of the bundled libzstd, as `zstandard.ZSTD_VERSION` gives python-zstandard's: the
/// core reads zstd only when the two are the same library (`native_reader.read_zstd_part`).
#[pyfunction]
pub fn zstd_version() -> (u32, u32, u32) {
    let n = zstd::zstd_safe::version_number();
    (n / 10000, n / 100 % 100, n % 100)
}
