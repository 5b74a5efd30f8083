//! Where the frames of a zstd file start, found by reading only their headers (RFC 8878), for
//! `parallel._frame_near` to cut a stream of many frames where one starts.
//!
//! A zstd file is frames one after the other. A frame's header (magic number, descriptor, window,
//! dictionary id, content size) gives where its first block starts; each block's 3-byte header
//! (the last-block flag, the type, the size) gives where the next starts; a 4-byte checksum
//! follows the last if the descriptor says so. A skippable frame gives its own length. So frame
//! starts are found by seeking from header to header, a few bytes read at each (one `pread` a
//! block at most), never a compressed block: ~11,000 block headers for a 1 M-span file of one
//! frame (101 MB), not its bytes.
//!
//! The walk trusts nothing it cannot check: a header with a reserved bit or block type, a block
//! longer than a block may be, or a file that ends inside a frame stops it, and only the frame
//! starts met before are offered (a truncated or damaged file is reported by its readers, not
//! here). That the decoder really is at a frame's end at the cut is checked again where the cut is
//! made (`read_zstd_part`'s `frame_cut`).

use pyo3::prelude::*;
use std::fs::File;
use std::os::unix::fs::FileExt;

const DATA_MAGIC: u32 = 0xFD2F_B528;
/// 0x184D2A50 to 0x184D2A5F: the low four bits are free.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// Block_Maximum_Size: no block holds more bytes (compressed or raw).
const MAX_BLOCK: u64 = 128 << 10;
/// Bytes read at a time: the headers of small frames (a line's) come several to a read.
const READ: usize = 256;

/// The file's bytes at an offset: a read of up to `READ` bytes serves the headers that fall in it.
struct Headers {
    file: File,
    base: u64,
    data: Vec<u8>,
    len: usize,
}

impl Headers {
    /// Up to `length` bytes at `offset` (fewer at the end of the file).
    fn at(&mut self, offset: u64, length: usize) -> std::io::Result<&[u8]> {
        let inside = offset >= self.base && offset - self.base + length as u64 <= self.len as u64;
        if !inside {
            self.base = offset;
            self.len = 0;
            loop {
                match self.file.read_at(&mut self.data[self.len..], offset + self.len as u64) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.len += n;
                        if self.len >= length {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let start = (offset - self.base) as usize;
        Ok(&self.data[start..(start + length).min(self.len)])
    }
}

fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |acc, &b| acc << 8 | u64::from(b))
}

/// (the length of the frame at `offset`, whether it holds data), or None: no whole frame there
/// (not a frame's header, a reserved bit or block type, a block over `MAX_BLOCK`, or the file ends
/// first). A data frame whose blocks go on past `until` is followed only to there: its length is
/// then given as reaching `until` (no other frame starts before it).
fn frame_length(headers: &mut Headers, offset: u64, until: u64) -> std::io::Result<Option<(u64, bool)>> {
    let head = headers.at(offset, 8)?; // no frame is shorter
    if head.len() < 8 {
        return Ok(None);
    }
    let magic = le(&head[..4]) as u32;
    if magic & 0xFFFF_FFF0 == SKIPPABLE_MAGIC {
        return Ok(Some((8 + le(&head[4..8]), false)));
    }
    if magic != DATA_MAGIC {
        return Ok(None);
    }
    let descriptor = head[4];
    if descriptor & 0x08 != 0 {
        return Ok(None); // a reserved bit
    }
    let single_segment = descriptor & 0x20 != 0;
    let content_size = [0u64, 2, 4, 8][usize::from(descriptor >> 6)].max(u64::from(single_segment));
    let dictionary = [0u64, 1, 2, 4][usize::from(descriptor & 0x03)];
    let mut at = offset + 5 + u64::from(!single_segment) + dictionary + content_size;
    loop {
        let header = headers.at(at, 3)?;
        if header.len() < 3 {
            return Ok(None);
        }
        let block = le(header);
        let (kind, size) = ((block >> 1) & 0x03, block >> 3);
        if kind == 3 || size > MAX_BLOCK {
            return Ok(None);
        }
        at += 3 + if kind == 1 { 1 } else { size }; // an RLE block holds one byte, repeated `size` times
        if block & 0x01 != 0 {
            break;
        }
        if at >= until {
            return Ok(Some((until - offset, true)));
        }
    }
    let checksum = if descriptor & 0x04 != 0 { 4 } else { 0 };
    Ok(Some((at + checksum - offset, true)))
}

/// The start of a data frame in the zstd file `path` nearest `target`, with `low <= start <
/// high` (never the file's first byte), or None (the file is one frame up to `high`, or its frames cannot be followed to there);
/// and how many frames were walked. The walk stops at the first data frame start at or after
/// `target`.
#[pyfunction]
pub fn zstd_frame_near(path: &str, target: u64, low: u64, high: u64) -> PyResult<(Option<u64>, u64)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut headers = Headers {
        file,
        base: 0,
        data: vec![0u8; READ],
        len: 0,
    };
    let (mut best, mut offset, mut frames) = (None::<u64>, 0u64, 0u64);
    while offset < size.min(high) {
        let Some((length, data)) = frame_length(&mut headers, offset, high)? else {
            break; // damaged here: no frame start after this one is known
        };
        if offset + length > size {
            break; // cut short: a frame start whose frame does not end is no place to cut
        }
        let cut = data && offset > 0 && offset >= low; // the file's start is no place to cut
        if cut && best.is_none_or(|b| offset.abs_diff(target) < b.abs_diff(target)) {
            best = Some(offset);
        }
        frames += 1;
        if cut && offset >= target {
            break; // any start after this one is farther from the target
        }
        offset += length;
    }
    Ok((best, frames))
}
