//! What every format's reader shares: the byte stream cut into lines of at
//! most [`LINE_CAP`] bytes (stderr and jsonlog are line based), the byte
//! budgets that bound what one record may hold, and decoding kept bytes.
//!
//! Not for: what a line means (the format modules), nor CSV rows, whose
//! quoted fields may hold newlines ([`super::csv`]).

use super::MAX_RECORD_BYTES;
use crate::logs::prefix;

/// A line is kept up to this many bytes: one record's worth of text plus
/// room for what comes before it (a stderr prefix, jsonlog's first keys).
/// The rest of the line is dropped on arrival.
pub(super) const LINE_CAP: usize = MAX_RECORD_BYTES + prefix::PREFIX_SEARCH_LIMIT;

/// Cap on each short field (names, ids, severity, timestamps).
pub(super) const SMALL_FIELD_CAP: usize = 1024;

/// Line buffer capacity kept between lines (more is given back).
const KEPT_LINE_CAPACITY: usize = 64 * 1024;

/// Splits the byte stream into lines, keeping at most [`LINE_CAP`] bytes of each.
#[derive(Debug, Default)]
pub(super) struct Lines {
    buf: Vec<u8>,
    cut: bool,
    /// Offset of the first byte of the line in `buf`.
    start: u64,
    /// Bytes fed so far.
    fed: u64,
}

/// One complete line (without its newline) and where it lies in the input.
pub(super) struct Line<'a> {
    pub bytes: &'a [u8],
    /// Bytes past [`LINE_CAP`] were dropped.
    pub cut: bool,
    pub start: u64,
    /// Just after its newline.
    pub end: u64,
}

impl Lines {
    /// Feeds bytes; calls `each` with every line they complete.
    pub fn push(&mut self, mut bytes: &[u8], mut each: impl FnMut(Line<'_>)) {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            self.keep(&bytes[..newline]);
            self.fed += newline as u64 + 1;
            self.emit(&mut each);
            bytes = &bytes[newline + 1..];
        }
        self.keep(bytes);
        self.fed += bytes.len() as u64;
    }

    /// The unterminated last line, if any, as if it were complete.
    pub fn flush(&mut self, mut each: impl FnMut(Line<'_>)) {
        if self.fed > self.start {
            self.emit(&mut each);
        }
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Bytes of the line being read.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Hands out the line read so far and forgets it, giving back the
    /// memory a very long one took.
    fn emit(&mut self, each: &mut impl FnMut(Line<'_>)) {
        each(Line {
            bytes: &self.buf,
            cut: self.cut,
            start: self.start,
            end: self.fed,
        });
        self.buf.clear();
        self.buf.shrink_to(KEPT_LINE_CAPACITY);
        self.cut = false;
        self.start = self.fed;
    }

    fn keep(&mut self, bytes: &[u8]) {
        if !keep_bytes(&mut self.buf, bytes, LINE_CAP) {
            self.cut = true;
        }
    }
}

/// The text a record may still take (messages, details, statements share
/// [`MAX_RECORD_BYTES`]).
#[derive(Debug)]
pub(super) struct Budget {
    pub left: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            left: MAX_RECORD_BYTES,
        }
    }
}

impl Budget {
    /// Appends as much of `text` as the budget allows; false when cut.
    pub fn append(&mut self, field: &mut String, text: &str) -> bool {
        let kept = prefix::cut_to(text, self.left);
        field.push_str(kept);
        self.left -= kept.len();
        kept.len() == text.len()
    }

    /// How many bytes a field may hold: a long one (message, detail, ...)
    /// what the record has left, a short one (names, ids, times)
    /// [`SMALL_FIELD_CAP`].
    pub fn room(&self, long: bool) -> usize {
        if long { self.left } else { SMALL_FIELD_CAP }
    }

    /// Takes what a long field of `len` bytes used.
    pub fn spend(&mut self, len: usize) {
        self.left = self.left.saturating_sub(len);
    }
}

/// Appends up to `room - buf.len()` bytes of `bytes`; false when some were dropped.
pub(super) fn keep_bytes(buf: &mut Vec<u8>, bytes: &[u8], room: usize) -> bool {
    let free = room.saturating_sub(buf.len());
    let kept = bytes.len().min(free);
    buf.extend_from_slice(&bytes[..kept]);
    kept == bytes.len()
}

/// Lossy UTF-8 decoding; when the bytes were cut, a character split by the
/// cut is dropped rather than shown as U+FFFD.
pub(super) fn decode(bytes: &[u8], cut: bool) -> String {
    let whole = match std::str::from_utf8(bytes) {
        Err(e) if cut && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    String::from_utf8_lossy(whole).into_owned()
}
