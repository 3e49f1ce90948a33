//! Following PostgreSQL's log directory: the current file, rotation to the
//! next, truncation, and a position that survives restarts.
//!
//! Files are told apart by inode, so a file renamed by logrotate is still
//! the same file, and ordered by modification time. Each poll reads the
//! current file to its end, then every newer file from its start, so a
//! rotation between two polls loses nothing. A file that shrank below the
//! position was truncated (`log_truncate_on_rotation`, or by hand): it is
//! read again from its start. Records are handed out only once complete;
//! [`Cursor::offset`] is always at a record boundary, so a restart from a
//! saved cursor neither repeats nor skips a record. The first poll without
//! a saved cursor starts at the end of the newest file: history is not
//! counted as new events.
//!
//! Lost, by design: lines written to a file after it was rotated away and
//! deleted before the next poll (PostgreSQL does not write to rotated
//! files; logrotate's copytruncate can lose lines for any reader).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{Format, LogRecord, Parser};

/// Most bytes read in one poll; the rest waits for the next.
const MAX_READ_PER_POLL: u64 = 16 << 20;

/// Where reading stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The file's name in the directory when last seen.
    pub file: String,
    /// Its inode.
    pub inode: u64,
    /// Bytes of it consumed, at a record boundary.
    pub offset: u64,
    /// Its modification time (Unix seconds) when last read.
    pub mtime: f64,
    /// A hash of its first `head_len` bytes: a file truncated and written
    /// past the old position again has a different start.
    #[serde(default)]
    pub head: u64,
    /// How many bytes `head` covers (up to [`HEAD_BYTES`]).
    #[serde(default)]
    pub head_len: u64,
}

/// Bytes at the start of a file that identify its content.
pub const HEAD_BYTES: u64 = 256;

/// FNV-1a: stable across builds, so a saved hash stays comparable.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A parser fed from `base` in the current file, `fed` bytes so far.
#[derive(Debug)]
struct Reading {
    parser: Parser,
    base: u64,
    fed: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    inode: u64,
    size: u64,
    mtime: f64,
}

impl Entry {
    /// A position in this file, its head not hashed yet.
    fn cursor_at(&self, offset: u64) -> Cursor {
        Cursor {
            file: self.name.clone(),
            inode: self.inode,
            offset,
            mtime: self.mtime,
            head: 0,
            head_len: 0,
        }
    }
}

/// Follows one log directory.
#[derive(Debug)]
pub struct Tailer {
    dir: PathBuf,
    cursor: Option<Cursor>,
    /// The parser of the cursor's file.
    parser: Option<Reading>,
    format: Format,
    prefix: String,
    /// Whether the first poll happened (a missing cursor then means "read
    /// new files from their start").
    started: bool,
    read_bytes: u64,
    /// The last poll read everything there was.
    caught_up: bool,
}

impl Tailer {
    /// Follows `dir` from `cursor` (a saved position), or from the end of
    /// the newest file when there is none.
    pub fn new(dir: PathBuf, format: Format, prefix: String, cursor: Option<Cursor>) -> Tailer {
        Tailer {
            dir,
            started: cursor.is_some(),
            cursor,
            parser: None,
            format,
            prefix,
            read_bytes: 0,
            caught_up: false,
        }
    }

    /// The position to save.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Whether the last poll read to the end of every file (it stops
    /// after a budget of bytes).
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Bytes read since start.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Changes format or `log_line_prefix` (the server was reconfigured);
    /// reading continues from the last record boundary.
    pub fn reconfigure(&mut self, format: Format, prefix: &str) {
        if format != self.format || prefix != self.prefix {
            self.format = format;
            self.prefix = prefix.to_string();
            self.parser = None;
        }
    }

    fn matches(&self, name: &str) -> bool {
        let ext = Path::new(name).extension().and_then(|e| e.to_str());
        match self.format {
            Format::Csv => ext == Some("csv"),
            Format::Json => ext == Some("json"),
            // log_filename is free-form; the structured formats' files are
            // the only ones that are surely not stderr output.
            Format::Stderr => !matches!(ext, Some("csv" | "json")) && !name.starts_with('.'),
        }
    }

    fn list(&self) -> std::io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if !self.matches(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            entries.push(Entry {
                name,
                inode: meta.ino(),
                size: meta.len(),
                mtime: meta.mtime() as f64 + meta.mtime_nsec() as f64 / 1e9,
            });
        }
        entries.sort_by(|a, b| {
            a.mtime
                .total_cmp(&b.mtime)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(entries)
    }

    /// Reads what was written since the last poll and returns the complete
    /// records, oldest first.
    pub fn poll(&mut self) -> std::io::Result<Vec<LogRecord>> {
        let entries = self.list()?;
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            if let Some(newest) = entries.last() {
                self.cursor = Some(newest.cursor_at(newest.size));
            }
            // Start at a line boundary: a partial last line would parse as
            // noise, so the next complete record is the first one read.
            self.caught_up = true;
            return Ok(out);
        }
        let mut budget = MAX_READ_PER_POLL;
        self.caught_up = true;
        // The cursor's file, then every newer one.
        let start = match &self.cursor {
            None => 0,
            Some(c) => match entries.iter().position(|e| e.inode == c.inode) {
                Some(i) => i,
                None => {
                    // Rotated away and removed: continue with what came after it.
                    tracing::debug!(file = %c.file, "log file gone; continuing with newer files");
                    let after = entries.iter().position(|e| e.mtime >= c.mtime);
                    self.parser = None;
                    self.cursor = None;
                    match after {
                        Some(i) => i,
                        None => return Ok(out),
                    }
                }
            },
        };
        for (i, entry) in entries.iter().enumerate().skip(start) {
            let same = self.cursor.as_ref().is_some_and(|c| c.inode == entry.inode);
            if !same {
                // On to a newer file: the previous one is complete.
                if let Some(mut reading) = self.parser.take() {
                    out.extend(reading.parser.finish());
                }
                self.cursor = Some(entry.cursor_at(0));
            }
            let cursor = self.cursor.as_mut().expect("set above");
            cursor.file = entry.name.clone();
            cursor.mtime = entry.mtime;
            let position = self
                .parser
                .as_ref()
                .map_or(cursor.offset, |r| r.base + r.fed);
            let path = self.dir.join(&entry.name);
            let replaced = cursor.head_len > 0 && {
                let head = read_range(&path, 0, cursor.head_len)?;
                head.len() as u64 != cursor.head_len || fnv1a(&head) != cursor.head
            };
            if entry.size < position || replaced {
                tracing::info!(file = %entry.name, "log file truncated; reading it from its start");
                cursor.offset = 0;
                cursor.head_len = 0;
                self.parser = None;
            }
            let reading = self.parser.get_or_insert_with(|| Reading {
                parser: Parser::new(self.format, &self.prefix),
                base: cursor.offset,
                fed: 0,
            });
            let from = reading.base + reading.fed;
            let want = entry.size.saturating_sub(from).min(budget);
            if want > 0 {
                let bytes = read_range(&path, from, want)?;
                budget -= bytes.len() as u64;
                reading.fed += bytes.len() as u64;
                self.read_bytes += bytes.len() as u64;
                out.extend(reading.parser.push(&bytes));
            }
            let last = i + 1 == entries.len();
            if last && want == 0 && reading.parser.pending_bytes() > 0 {
                // Nothing new in the newest file: the pending record is
                // complete (PostgreSQL writes a message in one go).
                out.extend(reading.parser.finish());
            }
            if cursor.head_len < HEAD_BYTES && entry.size > cursor.head_len {
                let head = read_range(&path, 0, entry.size.min(HEAD_BYTES))?;
                cursor.head = fnv1a(&head);
                cursor.head_len = head.len() as u64;
            }
            // The cursor moves only to record boundaries.
            cursor.offset = reading.base + reading.parser.consumed();
            if budget == 0 {
                self.caught_up = entry.size == reading.base + reading.fed && last;
                break;
            }
        }
        Ok(out)
    }
}

fn read_range(path: &Path, from: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}
