//! A whole-file zstd stream of JSON lines (`trace_files._read_zstd`, format `zstd+json-lines`),
//! read in three stages that overlap: a thread decompresses the stream into a bounded channel, a
//! second splits the lines and decodes them (`decode`, the strict schema), and the calling thread
//! aggregates the decoded requests in order (`add_request`, as for a plain file) holding the GIL.
//! On the bench workload the decoding thread does about 60% of the CPU work, the aggregating one 30%
//! and the decompressing one 10% (`perf`): with two free cores, up to ~1.7 times one thread's speed.
//!
//! What the Python reader does, and so this does too:
//!
//! * frames one after the other are one stream (`stream_reader(read_across_frames=True)`);
//! * a stream cut short (a file still being written) ends where the decoder stops giving bytes: the
//!   complete blocks are read, the unterminated last line is a partial tail, no error;
//! * a continued build decompresses from the start again and skips the bytes read last time (a zstd
//!   stream cannot be resumed in the middle); a stream that ends before them is an error there;
//! * the lines: `read_lines` (`trace_reader.read_json_lines`) line by line, the same declines.
//!
//! Any decoder error (a corrupt block, a bad checksum, junk after a frame, a window beyond the
//! decoder's limit), a stream ending before the skipped bytes, or a read error declines the part:
//! the Python reader then reads the file and reports the error its way. Memory: the decoder's
//! window (at most 128 MiB, zstd's default limit, which python-zstandard keeps too), at most
//! `DEPTH + 2` chunks of `CHUNK` bytes, and at most two batches of lines with their decoded
//! requests (one being aggregated, the next one decoded and waiting: each about `BATCH` bytes, or
//! one line when a line is longer, up to the line cap); never the whole decompressed file.

use crate::part::{self, Aggregator, Stop, R};
use crate::schema::Request;
use crate::table_loops::writable;
use crate::tables::{FpMap, FpSet};
use crate::values::Helpers;
use crate::{add_request, decode, is_blank, result, without_bom, Lines};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use std::fs::File;
use std::io::{self, Read};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

/// Bytes of decompressed output per message, and messages waiting in the channel at most.
const CHUNK: usize = 256 << 10;
const DEPTH: usize = 2;
/// Compressed bytes read from the file at a time.
const INPUT: usize = 256 << 10;
/// Bytes of lines decoded as one batch (a longer line is a batch of its own), and decoded batches
/// queued for the aggregating thread besides the one the decoding thread holds until it is taken.
const BATCH: usize = 1 << 20;
const BATCHES: usize = 0;

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

/// The decompressing thread: decode `file` from its start, drop the first `skip` bytes of output,
/// send the rest in chunks. Err: why the stream cannot be read as the Python reader reads it.
/// Returns early (Ok) when the reader has gone (it declined the part).
fn decompress(mut file: File, mut skip: u64, chunks: SyncSender<Vec<u8>>, spent: Receiver<Vec<u8>>) -> Result<(), String> {
    let mut decoder = Decoder::new().map_err(|e| format!("zstd decoder: {e}"))?;
    let mut input = vec![0u8; INPUT];
    let (mut in_pos, mut in_len, mut at_end) = (0usize, 0usize, false);
    let mut out = vec![0u8; CHUNK];
    let mut filled = 0usize;
    loop {
        if in_pos == in_len && !at_end {
            in_len = read_some(&mut file, &mut input).map_err(|e| format!("reading the compressed file: {e}"))?;
            in_pos = 0;
            at_end = in_len == 0;
        }
        let mut source = InBuffer::around(&input[in_pos..in_len]);
        let mut target = OutBuffer::around_pos(&mut out[..], filled);
        decoder.run(&mut source, &mut target).map_err(|e| format!("zstd decoder: {e}"))?;
        let (taken, now) = (source.pos(), target.pos());
        let produced = now - filled;
        in_pos += taken;
        filled = now;
        if skip > 0 && filled > 0 {
            let dropped = (filled as u64).min(skip) as usize;
            out.copy_within(dropped..filled, 0);
            filled -= dropped;
            skip -= dropped as u64;
        }
        if filled == out.len() {
            let next = spent.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            if chunks.send(std::mem::replace(&mut out, next)).is_err() {
                return Ok(());
            }
            filled = 0;
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
    Ok(())
}

/// Whole lines and the requests decoded from them. The requests borrow from `bytes`: they are
/// declared first, so they are dropped first, and `bytes` is never written or moved out while they
/// live (only `into_bytes`, which drops them first, gives it back).
struct Batch {
    requests: Vec<Request<'static>>,
    bytes: Vec<u8>,
    /// bytes of the stream this batch covers (its whole lines, or the partial tail's bytes too)
    consumed: u64,
    records: u64,
    /// decompressed bytes read since the previous batch (for the progress callback)
    read: u64,
}

impl Batch {
    /// `lines` (the first `end` bytes of `bytes` are whole lines, or the unterminated last line when
    /// `tail`) decoded as `read_lines` decodes them; Err: why the part is declined.
    fn decode(bytes: Vec<u8>, end: usize, tail: bool, read: u64, max_line: usize) -> Result<(Batch, u64), String> {
        // SAFETY: the slice points into the heap buffer of `bytes`, which moves into the batch with
        // the requests borrowing from it and is neither written nor freed before they are dropped
        // (field order, and `into_bytes`); moving a Vec does not move its buffer.
        let text: &'static [u8] = unsafe { std::slice::from_raw_parts(bytes.as_ptr(), end) };
        let mut requests = Vec::new();
        let (mut consumed, mut records, mut partial) = (0u64, 0u64, 0u64);
        if tail {
            // `read_lines`' unterminated rest: taken only if it is a complete request on its own
            let rest = without_bom(text);
            match decode(rest) {
                Ok(request) => {
                    records = 1;
                    consumed = end as u64;
                    requests.push(request);
                }
                Err(_) if is_blank(rest) => consumed = end as u64,
                Err(err) if err.is_eof() => partial = end as u64,
                Err(err) => return Err(format!("an unterminated last line the strict decoder refuses: {err}")),
            }
        } else {
            let mut pos = 0usize;
            while let Some(offset) = memchr::memchr(b'\n', &text[pos..]) {
                let line_end = pos + offset;
                records += 1;
                if line_end - pos > max_line {
                    return Err("a line longer than the line cap".to_string());
                }
                if line_end > pos {
                    let line = without_bom(&text[pos..line_end]);
                    match decode(line) {
                        Ok(request) => {
                            if !request.resource_spans.is_empty() {
                                requests.push(request);
                            } else if line.len() > 2 {
                                return Err("a line without resourceSpans".to_string());
                            }
                        }
                        Err(_) if is_blank(line) => {}
                        Err(err) => return Err(format!("a line the strict decoder refuses: {err}")),
                    }
                }
                pos = line_end + 1;
            }
            consumed = pos as u64;
        }
        let batch = Batch {
            requests,
            bytes,
            consumed,
            records,
            read,
        };
        Ok((batch, partial))
    }

    fn requests(&self) -> &[Request<'_>] {
        &self.requests
    }

    fn into_bytes(self) -> Vec<u8> {
        let Batch { requests, bytes, .. } = self;
        drop(requests);
        bytes
    }
}

/// The decoding thread: the decompressed stream cut into batches of whole lines (`BATCH` bytes, or
/// one longer line), each decoded, sent in order; then the unterminated rest, if any. Returns the
/// partial tail's length, or why the part is declined. Returns early (Ok) when the aggregating
/// thread has gone (it declined).
fn decode_lines(mut stream: Decompressed, batches: SyncSender<Batch>, spent: Receiver<Vec<u8>>, max_line: usize) -> Result<u64, String> {
    // a buffer given back by the aggregating thread, unless it grew for a long line (memory)
    let fresh = |spent: &Receiver<Vec<u8>>| match spent.try_recv() {
        Ok(buf) if buf.capacity() <= 2 * BATCH => buf,
        _ => vec![0u8; BATCH],
    };
    let mut buf = fresh(&spent);
    buf.resize(BATCH, 0);
    let mut filled = 0usize;
    let mut last_newline: Option<usize> = None;
    let mut read = 0u64;
    loop {
        if filled == buf.len() {
            // full without a newline (else it would have made a batch): one line longer than it
            if filled > max_line {
                return Err("a line longer than the line cap".to_string());
            }
            buf.resize((buf.len() * 2).min(max_line + 1), 0);
        }
        let got = stream.read(&mut buf[filled..]).map_err(|e| e.to_string())?;
        if got == 0 {
            break;
        }
        if let Some(at) = memchr::memrchr(b'\n', &buf[filled..filled + got]) {
            last_newline = Some(filled + at); // only the new bytes are searched
        }
        filled += got;
        read += got as u64;
        // a batch: at least BATCH bytes (fewer, larger batches), whole lines only; a buffer grown
        // for a long line makes a batch as soon as that line is whole
        let Some(last) = last_newline.filter(|_| filled >= BATCH) else {
            continue;
        };
        let end = last + 1;
        let mut next = fresh(&spent);
        next.resize(BATCH.max(filled - end), 0);
        next[..filled - end].copy_from_slice(&buf[end..filled]);
        let (batch, _) = Batch::decode(std::mem::replace(&mut buf, next), end, false, read, max_line)?;
        filled -= end;
        last_newline = None;
        read = 0;
        if batches.send(batch).is_err() {
            return Ok(0);
        }
    }
    // what is left: whole lines, then perhaps an unterminated rest
    let end = memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |last| last + 1);
    if filled - end > max_line {
        return Err("a line longer than the line cap".to_string());
    }
    let rest = buf[end..filled].to_vec();
    if end > 0 || read > 0 {
        let (batch, _) = Batch::decode(buf, end, false, read, max_line)?;
        if batches.send(batch).is_err() {
            return Ok(0);
        }
    }
    if rest.is_empty() {
        return Ok(0);
    }
    let size = rest.len();
    let (batch, partial) = Batch::decode(rest, size, true, 0, max_line)?;
    if batches.send(batch).is_err() {
        return Ok(0);
    }
    Ok(partial)
}

/// The three stages on scoped threads (always joined, on every path out of here): decompressing,
/// decoding, and here, aggregating in order. A decline at any stage declines the part.
fn read_stream(agg: &mut Aggregator, file: File, skip: u64, progress: Option<&Bound<PyAny>>, max_line: usize) -> R<Lines> {
    std::thread::scope(|scope| {
        let (chunk_sender, chunk_receiver) = sync_channel(DEPTH);
        let (spent_chunk_sender, spent_chunk_receiver) = channel();
        let decompressing = std::thread::Builder::new()
            .name("zstd-decompress".into())
            .spawn_scoped(scope, move || decompress(file, skip, chunk_sender, spent_chunk_receiver))
            .map_err(|e| Stop::Python(e.into()))?;
        let stream = Decompressed {
            chunks: chunk_receiver,
            spent: spent_chunk_sender,
            current: Vec::new(),
            pos: 0,
        };
        let (batch_sender, batch_receiver) = sync_channel::<Batch>(BATCHES);
        let (spent_batch_sender, spent_batch_receiver) = channel();
        let decoding = std::thread::Builder::new()
            .name("json-decode".into())
            .spawn_scoped(scope, move || decode_lines(stream, batch_sender, spent_batch_receiver, max_line))
            .map_err(|e| Stop::Python(e.into()))?;
        let aggregated = (move || -> R<Lines> {
            let mut lines = Lines {
                consumed: 0,
                records: 0,
                partial_tail: 0,
            };
            for batch in batch_receiver.iter() {
                for request in batch.requests() {
                    add_request(agg, request)?;
                }
                lines.consumed += batch.consumed;
                lines.records += batch.records;
                if let Some(callback) = progress {
                    if batch.read > 0 {
                        callback.call1((batch.read,))?;
                    }
                }
                let _ = spent_batch_sender.send(batch.into_bytes());
            }
            Ok(lines)
        })();
        // the batch receiver is dropped with the closure: a stage still running stops at its next send
        let decoded = decoding.join();
        let decompressed = decompressing.join();
        let mut lines = aggregated?;
        match decompressed {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return part::decline(&why),
            Err(_) => return part::decline("the zstd decompressing thread panicked"),
        }
        match decoded {
            Ok(Ok(partial)) => lines.partial_tail = partial,
            Ok(Err(why)) => return part::decline(&why),
            Err(_) => return part::decline("the decoding thread panicked"),
        }
        Ok(lines)
    })
}

/// Read the zstd stream of JSON lines in `path` from decompressed byte `skip` (what earlier builds
/// read) to its end, as `trace_files._read_zstd` does after skipping. Returns the same dict as
/// `read_part` (consumed: decompressed bytes after `skip`), or a string: why the part was declined
/// (read it with the Python reader).
///
/// `tables`, when given, are those of an empty aggregator (as for `read_part`), filled in place.
/// The decompressed size is not known before the end, so they were sized from an estimate and may
/// turn out too small: a table that must grow then grows out of its array into slots of its own,
/// and is returned like a part's (`span_fps`, or `closed_keys` and `closed_states`), with
/// `tables_in_place` false: the caller puts them back. Otherwise the part's own tables are sized
/// for `expected_spans` and grow.
#[pyfunction]
#[pyo3(signature = (path, skip, since_ns, until_ns, collect_signals, helpers, progress=None, tables=None, expected_spans=None, *, max_line))]
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
) -> PyResult<Bound<'py, PyAny>> {
    let file = File::open(path)?;
    let own_tables;
    let chosen = match &tables {
        Some((seen, keys, states)) => (
            FpSet::detachable(writable(py, seen)?),
            FpMap::detachable(writable(py, keys)?, writable(py, states)?),
        ),
        None => {
            let expected = expected_spans.unwrap_or(0);
            own_tables = (FpSet::new(expected), FpMap::new(expected / 2));
            own_tables
        }
    };
    let mut agg = Aggregator::new(Helpers::new(helpers), since_ns, until_ns, collect_signals, chosen);
    match read_stream(&mut agg, file, skip, progress.as_ref(), max_line) {
        Ok(read) => {
            let in_place = tables.is_some() && agg.seen.in_place() && agg.closed.in_place();
            let out = result(py, agg, &read, in_place)?;
            out.set_item("tables_in_place", in_place)?;
            Ok(out.into_any())
        }
        Err(Stop::Decline(why)) => Ok(why.into_pyobject(py)?.into_any()),
        Err(Stop::Python(err)) => Err(err),
    }
}

/// The version of the bundled libzstd, as `zstandard.ZSTD_VERSION` gives python-zstandard's: the
/// core reads zstd only when the two are the same library (`native_part.read_zstd_part`).
#[pyfunction]
pub fn zstd_version() -> (u32, u32, u32) {
    let n = zstd::zstd_safe::version_number();
    (n / 10000, n / 100 % 100, n % 100)
}
