//! csvlog: one CSV row per record, quoted fields may hold newlines; columns
//! are picked by count (23 up to 12, 24 in 13, 26 from 14). The quoting is
//! csv-core's; what it unquotes is kept within each field's cap as it
//! arrives, so a field of any size holds at most one record's budget.
//!
//! Not for: deciding what a record means ([`crate::logs::event`]).

use super::lines::{Budget, decode, keep_bytes};
use super::{Column, LogRecord, Reader};

/// csvlog rows have 23 to 26 columns; more are ignored, not stored.
const MAX_FIELDS: usize = 32;

/// Columns that hold long text, sharing the record's budget: message,
/// detail, hint, internal_query, context, query.
const LONG_COLUMNS: [usize; 6] = [13, 14, 15, 16, 18, 19];

/// Unquoted bytes are taken from csv-core in pieces of this size.
const CHUNK: usize = 4 * 1024;

/// The csvlog reader: bytes in, a record per row out.
#[derive(Debug)]
pub(super) struct CsvReader {
    csv: csv_core::Reader,
    /// Nothing was read since the start (or the last finish).
    fresh: bool,
    fields: Vec<Vec<u8>>,
    field: Vec<u8>,
    cut: bool,
    budget: Budget,
    fed: u64,
    consumed: u64,
}

impl Default for CsvReader {
    fn default() -> Self {
        CsvReader {
            // PostgreSQL ends rows with `\n` alone; a `\r` is text.
            csv: csv_core::ReaderBuilder::new()
                .terminator(csv_core::Terminator::Any(b'\n'))
                .build(),
            fresh: true,
            fields: Vec::new(),
            field: Vec::new(),
            cut: false,
            budget: Budget::default(),
            fed: 0,
            consumed: 0,
        }
    }
}

impl CsvReader {
    /// Reads what `input` holds of the current fields (an empty `input`
    /// is the end of the file); returns how many bytes it took and whether
    /// csv-core has nothing more to give.
    fn read(&mut self, input: &[u8], out: &mut Vec<LogRecord>) -> (usize, bool) {
        let mut chunk = [0; CHUNK];
        let (result, read, written) = self.csv.read_field(input, &mut chunk);
        self.keep(&chunk[..written]);
        match result {
            csv_core::ReadFieldResult::Field { record_end } => {
                self.end_field();
                if record_end {
                    self.end_row(out, self.fed + read as u64);
                }
                (read, false)
            }
            csv_core::ReadFieldResult::OutputFull => (read, false),
            csv_core::ReadFieldResult::InputEmpty | csv_core::ReadFieldResult::End => (read, true),
        }
    }

    /// Stores unquoted bytes of the current field, within its cap.
    fn keep(&mut self, bytes: &[u8]) {
        let index = self.fields.len();
        let room = if index < MAX_FIELDS {
            self.budget.room(LONG_COLUMNS.contains(&index))
        } else {
            0
        };
        if !keep_bytes(&mut self.field, bytes, room) {
            self.cut = true;
        }
    }

    fn end_field(&mut self) {
        let field = std::mem::take(&mut self.field);
        if LONG_COLUMNS.contains(&self.fields.len()) {
            self.budget.spend(field.len());
        }
        if self.fields.len() < MAX_FIELDS {
            self.fields.push(field);
        }
    }

    fn end_row(&mut self, out: &mut Vec<LogRecord>, end: u64) {
        let fields = std::mem::take(&mut self.fields);
        if let Some(record) = record(&fields, self.cut) {
            out.push(record);
        }
        self.cut = false;
        self.budget = Budget::default();
        self.consumed = end;
    }
}

impl Reader for CsvReader {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<LogRecord>) {
        let mut at = 0;
        while at < bytes.len() {
            // csv-core skips a byte-order mark at the start of its first
            // input: feeding one byte first keeps such bytes as text, as a
            // reader resumed in the middle of the file would read them.
            let end = if self.fresh { at + 1 } else { bytes.len() };
            self.fresh = false;
            let (read, _) = self.read(&bytes[at..end], out);
            at += read;
            self.fed += read as u64;
        }
    }

    fn finish(&mut self, out: &mut Vec<LogRecord>) {
        while !self.read(&[], out).1 {}
        self.csv.reset();
        self.fresh = true;
        self.consumed = self.fed;
    }

    fn pending_bytes(&self) -> usize {
        self.field.len() + self.fields.iter().map(Vec::len).sum::<usize>()
    }

    fn consumed(&self) -> u64 {
        self.consumed
    }
}

/// The csvlog column of each field a record keeps.
fn column_index(column: Column) -> usize {
    match column {
        Column::Timestamp => 0,
        Column::User => 1,
        Column::Database => 2,
        Column::Pid => 3,
        Column::RemoteHost => 4,
        Column::SessionId => 5,
        Column::SessionLine => 6,
        Column::Severity => 11,
        Column::SqlState => 12,
        Column::Message => 13,
        Column::Detail => 14,
        Column::Hint => 15,
        Column::Context => 18,
        Column::Statement => 19,
        Column::Application => 22,
        Column::QueryId => 25,
    }
}

/// A csvlog row as a record; `None` when it has too few columns to be one.
fn record(fields: &[Vec<u8>], cut: bool) -> Option<LogRecord> {
    if fields.len() < 23 {
        return None;
    }
    let record = LogRecord::from_columns(
        |column| {
            let text = decode(fields.get(column_index(column))?, cut);
            // csvlog gives `host:port` (jsonlog has the port apart).
            Some(match column {
                Column::RemoteHost => without_port(&text).to_string(),
                _ => text,
            })
        },
        cut,
    );
    Some(record)
}

/// The host of `host:port`.
fn without_port(text: &str) -> &str {
    match text.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => text,
    }
}
