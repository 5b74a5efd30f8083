//! A whole-file zstd stream of JSON lines (`file_reader._read_zstd`, format `zstd+json-lines`):
//! decompressed on a thread of its own into a ring (`zstd_ring`) while the calling thread reads the
//! lines there and aggregates them (`read_ring_lines`: `read_lines`' rules, the lines read in
//! place), so decompression and parsing overlap: the stream is read about as fast as the same lines
//! uncompressed. A part of the stream can be read (`Window`): two processes read one large stream
//! at once, each its part (`parallel.read_zstd_in_parallel`).
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
//! the Python reader then reads the file and reports the error its way. Memory: the ring (the
//! decoder's window, at most 128 MiB, zstd's default limit, which python-zstandard keeps too; two
//! blocks; 2 MiB), and a line copied out of it when it cannot be read in place; never the whole
//! decompressed file.
//!
//! (Decoding the lines on a third thread, the calling one only aggregating, was tried: decoded
//! requests handed between threads lose the cache, and the whole took more CPU time than this, and
//! as much wall time on two cores shared with other work.)

use crate::part::{self, Aggregator, Stop, R};
use crate::table_loops::writable;
use crate::tables::{FpMap, FpSet};
use crate::values::Helpers;
use crate::zstd_ring::{self, Ended, More, ReaderGone, Ring, RingReader, Sink};
use crate::{last_line, result, whole_line, Lines};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::sync::mpsc::{channel, sync_channel};

/// Pieces of decoded bytes (`zstd_ring`, ~256 KiB each) waiting in the channel at most.
const DEPTH: usize = 2;

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

/// The window's bytes out of the decoded stream (`zstd_ring::Sink`): those before it dropped, where
/// it starts and where it stops found, the rest sent to the reader.
struct WindowSink {
    /// bytes still to drop
    skip: u64,
    /// dropping up to a line start (after `skip`)
    aligning: bool,
    /// where the bytes sent start
    start: u64,
    /// bytes sent so far (so the next byte to send is byte `start + sent`)
    sent: u64,
    stop: Option<u64>,
    frame_cut: Option<u64>,
    frame_start: Option<u64>,
}

impl WindowSink {
    fn new(window: Window) -> Self {
        WindowSink {
            skip: window.skip,
            aligning: window.align && window.skip > 0,
            start: window.skip,
            sent: 0,
            stop: window.stop,
            frame_cut: window.frame_cut,
            frame_start: None,
        }
    }

    fn sent(&self, stopped: bool) -> Sent {
        Sent {
            start: self.start,
            stopped,
            frame_start: self.frame_start,
        }
    }
}

impl Sink for WindowSink {
    fn decoded(&mut self, ring: &mut Ring, mut start: usize, end: usize) -> Result<bool, ReaderGone> {
        if self.skip > 0 {
            let dropped = ((end - start) as u64).min(self.skip) as usize;
            self.skip -= dropped as u64;
            if self.skip == 0 && self.aligning && ring.bytes(start, start + dropped)[dropped - 1] == b'\n' {
                self.aligning = false; // the window starts at a line start already
            }
            start += dropped;
        }
        if self.skip == 0 && self.aligning && start < end {
            let bytes = ring.bytes(start, end);
            let dropped = memchr::memchr(b'\n', bytes).map_or(bytes.len(), |at| {
                self.aligning = false;
                at + 1
            });
            self.start += dropped as u64;
            start += dropped;
        }
        if start == end {
            return Ok(false);
        }
        if let (Some(stop), false) = (self.stop, self.aligning) {
            // the first newline at or after byte `stop - 1` ends the window
            let first = stop
                .saturating_sub(1)
                .saturating_sub(self.start + self.sent)
                .min((end - start) as u64) as usize;
            if let Some(at) = memchr::memchr(b'\n', &ring.bytes(start, end)[first..]) {
                let last = start + first + at + 1;
                ring.send(start, last)?;
                self.sent += (last - start) as u64;
                return Ok(true);
            }
        }
        ring.send(start, end)?;
        self.sent += (end - start) as u64;
        Ok(false)
    }

    fn frame_ended(&mut self, consumed: u64) {
        match self.frame_cut {
            // every byte before the cut decoded and a frame ended right there: the cut is a frame's
            // start, this its decompressed offset (with a frame cut, nothing is dropped or held
            // back before it: every byte decoded was sent); the first newline at or after it ends
            // the window
            Some(cut) if consumed == cut => {
                let at = self.start + self.sent;
                self.frame_start = Some(at);
                self.stop = Some(at + 1);
                self.frame_cut = None;
            }
            Some(cut) if consumed > cut => self.frame_cut = None, // not a frame's start: read on to the end
            _ => {}
        }
    }
}

/// The decompressing thread: decode `file` from its start, send the window's bytes to the reader.
/// Err: why the stream cannot be read as the Python reader reads it. Returns early when the reader
/// has gone (it declined the part).
fn decompress(file: File, window: Window, mut ring: Ring) -> Result<Sent, String> {
    if window.frame_cut.is_some() && (window.skip > 0 || window.stop.is_some()) {
        return Err("a frame cut is for a window from the start without a stop".into());
    }
    let mut sink = WindowSink::new(window);
    match zstd_ring::decode(file, &mut ring, &mut sink)? {
        Ended::ReaderGone => Ok(sink.sent(false)),
        Ended::Stopped => {
            let _ = ring.send_gathered();
            Ok(sink.sent(true))
        }
        Ended::Stream if sink.skip > 0 => Err(format!("the stream ends {} bytes before the offset already read", sink.skip)),
        Ended::Stream => {
            let _ = ring.send_gathered();
            Ok(sink.sent(false))
        }
    }
}

/// `read_lines` over the decoded stream's pieces (`zstd_ring::RingReader`): each line read where it
/// was decoded, in the ring; only a line whose bytes are not held together there (the ring wrapped
/// or was replaced within it, or the reader must wait for the rest of it) is copied into `carry`
/// and read from there. The same lines, records and tail as `read_lines` over the same bytes.
fn read_ring_lines(agg: &mut Aggregator, reader: &mut RingReader, progress: Option<&Bound<PyAny>>, max_line: usize) -> R<Lines> {
    let mut lines = Lines::default();
    let mut carry: Vec<u8> = Vec::new(); // a line begun in pieces let go of
    let mut scanned = 0usize; // how far the view was searched for the end of the line it starts with
    loop {
        if carry.is_empty() {
            let view = reader.view();
            let mut pos = 0usize;
            while let Some(offset) = memchr::memchr(b'\n', &view[scanned..]) {
                let end = scanned + offset;
                whole_line(agg, &view[pos..end], max_line, &mut lines)?;
                pos = end + 1;
                scanned = pos;
            }
            if view.len() - pos > max_line {
                return part::decline("a line longer than the line cap");
            }
            scanned = view.len() - pos;
            reader.consume(pos);
        } else {
            let view = reader.view();
            let taken = match memchr::memchr(b'\n', view) {
                Some(at) => {
                    carry.extend_from_slice(&view[..at]);
                    whole_line(agg, &carry, max_line, &mut lines)?;
                    carry.clear();
                    scanned = 0;
                    at + 1
                }
                None => {
                    carry.extend_from_slice(view);
                    if carry.len() > max_line {
                        return part::decline("a line longer than the line cap");
                    }
                    view.len()
                }
            };
            reader.consume(taken);
            if carry.is_empty() {
                continue; // the rest of the view read in place
            }
        }
        // (a line begun: copied into `carry` when the next piece cannot join it in the ring)
        match reader.more(&mut carry) {
            More::Grew(count) => {
                if let Some(callback) = progress {
                    callback.call1((count,))?;
                }
            }
            More::Ended => break,
        }
    }
    let rest = if carry.is_empty() { reader.view() } else { &carry[..] };
    last_line(agg, rest, &mut lines)?;
    Ok(lines)
}

/// The lines of the window of the decompressed stream, the decompression on a scoped thread
/// (always joined, on every path out of here). A decoder error declines the part.
fn read_stream(agg: &mut Aggregator, file: File, window: Window, progress: Option<&Bound<PyAny>>, max_line: usize) -> R<(Lines, Sent)> {
    std::thread::scope(|scope| {
        let (piece_sender, piece_receiver) = sync_channel(DEPTH);
        let (released_sender, released_receiver) = channel();
        let ring = Ring::new(piece_sender, released_receiver);
        let worker = std::thread::Builder::new()
            .name("zstd-decompress".into())
            .spawn_scoped(scope, move || decompress(file, window, ring))
            .map_err(|e| Stop::Python(e.into()))?;
        let mut reader = RingReader::new(piece_receiver, released_sender);
        let read = read_ring_lines(agg, &mut reader, progress, max_line);
        drop(reader); // the thread, if still decompressing, stops at its next send or wait
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
