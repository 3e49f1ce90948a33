//! Log records, and their assembly from the bytes of PostgreSQL's stderr,
//! csvlog and jsonlog files.
//!
//! Pure and incremental: callers hand [`Parser::push`] the bytes they read,
//! split anywhere (mid-line, mid-character, mid-quote), and get back the
//! records known to be complete; [`Parser::consumed`] says where a restart may
//! resume. Memory is bounded whatever the input: a record holds at most
//! [`MAX_RECORD_BYTES`] of text (longer messages and statements are cut and
//! the record marked [`LogRecord::truncated`]), and the bytes of an over-long
//! line or field beyond that are dropped as they arrive.
//!
//! Not for: reading files, following rotation or remembering offsets (the
//! caller's I/O side does that), nor deciding what a record means
//! ([`crate::logs::event`]).
//!
//! Formats:
//! - stderr: a record is its first line (`prefix` + `LOG:  ` ...), the lines
//!   after it that start with a tab (the message went on over several lines),
//!   and the `DETAIL:`/`HINT:`/`CONTEXT:`/`STATEMENT:`/`QUERY:`/`LOCATION:`
//!   lines of the same process. It is complete only once the next record's
//!   first line has been read whole, or at [`Parser::finish`]. Lines that
//!   match no prefix (archive_command output, a crashed child's stderr) are
//!   skipped and never break the records around them.
//! - csvlog: one CSV row per record (quoted fields may hold newlines);
//!   columns are picked by count (23 up to 12, 24 in 13, 26 from 14).
//! - jsonlog (15+): one JSON object per line.

use super::prefix::{self, Label, Prefix, PrefixFields};

/// The most any one record may hold; longer messages/statements are cut
/// (a 1 MB statement must not make the parser hold tens of MB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Cap on each short field (names, ids, severity, timestamps).
const SMALL_FIELD_CAP: usize = 1024;

/// A stderr line is kept up to this many bytes: one record's worth of text
/// plus room for its prefix. The rest of the line is dropped on arrival.
const LINE_CAP: usize = MAX_RECORD_BYTES + prefix::PREFIX_SEARCH_LIMIT;

/// Line buffer capacity kept between lines (more is given back).
const KEPT_LINE_CAPACITY: usize = 64 * 1024;

/// csvlog rows have 23 to 26 columns; more are ignored, not stored.
const MAX_CSV_FIELDS: usize = 32;

/// One log entry, whatever the format.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord {
    /// When it was logged, as Unix seconds (`None` when the format has no
    /// time or its zone abbreviation is unknown).
    pub timestamp: Option<f64>,
    /// The process that logged it.
    pub pid: Option<u32>,
    /// The session's user.
    pub user: Option<String>,
    /// The session's database.
    pub database: Option<String>,
    /// The session's application_name.
    pub application: Option<String>,
    /// The client's host or address, without its port (`[local]` for Unix sockets).
    pub remote_host: Option<String>,
    /// The session id (`%c`: start time and pid in hex).
    pub session_id: Option<String>,
    /// The line number within the session (`%l`).
    pub session_line: Option<u64>,
    /// `LOG`, `ERROR`, `FATAL`, `PANIC`, `WARNING`, ... as printed
    /// (untranslated English assumed: `lc_messages = 'C'`).
    pub severity: String,
    /// The SQLSTATE, 5 characters, when the format has it (csvlog and
    /// jsonlog always, jsonlog's omitted `00000` included; stderr only with
    /// `%e` in the prefix or `log_error_verbosity = verbose`).
    pub sqlstate: Option<String>,
    /// The message; lines after the first are joined with `\n`.
    pub message: String,
    /// The DETAIL.
    pub detail: Option<String>,
    /// The HINT.
    pub hint: Option<String>,
    /// The CONTEXT.
    pub context: Option<String>,
    /// The statement that caused it: the `STATEMENT:` line, csvlog `query`,
    /// jsonlog `statement`.
    pub statement: Option<String>,
    /// The query id (csvlog/jsonlog 14+, stderr with `%Q`); `None` when 0,
    /// i.e. not computed.
    pub query_id: Option<i64>,
    /// Some of the record was cut to [`MAX_RECORD_BYTES`] (or a short field
    /// to its cap): the message or statement is incomplete.
    pub truncated: bool,
}

/// The format of a log file, as `log_destination` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `stderr` (including the logging collector's `.log` files).
    Stderr,
    /// `csvlog`.
    Csv,
    /// `jsonlog` (PostgreSQL 15+).
    Json,
}

/// Incremental parser: feed bytes, take complete records.
#[derive(Debug)]
pub struct Parser {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Stderr(Box<StderrReader>),
    Csv(CsvReader),
    Json(Box<JsonReader>),
}

impl Parser {
    /// A parser for one file's bytes from its start (or from an offset a
    /// previous parser's [`Parser::consumed`] gave). The prefix is only used
    /// for [`Format::Stderr`].
    pub fn new(format: Format, log_line_prefix: &str) -> Parser {
        let inner = match format {
            Format::Stderr => {
                Inner::Stderr(Box::new(StderrReader::new(Prefix::parse(log_line_prefix))))
            }
            Format::Csv => Inner::Csv(CsvReader::default()),
            Format::Json => Inner::Json(Box::default()),
        };
        Parser { inner }
    }

    /// Feeds the next bytes; returns the records known to be complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<LogRecord> {
        let mut out = Vec::new();
        match &mut self.inner {
            Inner::Stderr(reader) => reader.push(bytes, &mut out),
            Inner::Csv(reader) => reader.push(bytes, &mut out),
            Inner::Json(reader) => reader.push(bytes, &mut out),
        }
        out
    }

    /// End of file (or rotation): takes the pending record, treating a last
    /// line without its newline as complete. The parser is then empty;
    /// bytes fed afterwards are counted on from where it stopped.
    pub fn finish(&mut self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        match &mut self.inner {
            Inner::Stderr(reader) => reader.finish(&mut out),
            Inner::Csv(reader) => reader.finish(&mut out),
            Inner::Json(reader) => reader.finish(&mut out),
        }
        out
    }

    /// Bytes held in memory for records not yet emitted (never more than a
    /// small multiple of [`MAX_RECORD_BYTES`], however long a line is).
    pub fn pending_bytes(&self) -> usize {
        match &self.inner {
            Inner::Stderr(reader) => reader.pending_bytes(),
            Inner::Csv(reader) => reader.pending_bytes(),
            Inner::Json(reader) => reader.pending_bytes(),
        }
    }

    /// How many of the bytes fed so far belong to records already emitted
    /// (or to lines skipped as noise): a new parser fed the input from this
    /// offset on yields exactly the records this one has not emitted yet.
    /// For stderr, the last record is only known complete when the next
    /// one's first line has been read whole, so this lags one record behind
    /// until [`Parser::finish`].
    pub fn consumed(&self) -> u64 {
        match &self.inner {
            Inner::Stderr(reader) => reader.state.consumed,
            Inner::Csv(reader) => reader.consumed,
            Inner::Json(reader) => reader.consumed,
        }
    }
}

impl LogRecord {
    /// Bytes of text the record holds, for [`Parser::pending_bytes`].
    fn held_bytes(&self) -> usize {
        let optional = [
            &self.user,
            &self.database,
            &self.application,
            &self.remote_host,
            &self.session_id,
            &self.sqlstate,
            &self.detail,
            &self.hint,
            &self.context,
            &self.statement,
        ];
        self.severity.len()
            + self.message.len()
            + optional
                .iter()
                .map(|f| f.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}

/// The text a record may still take (messages, details, statements share
/// [`MAX_RECORD_BYTES`]).
#[derive(Debug)]
struct Budget {
    left: usize,
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
    fn append(&mut self, field: &mut String, text: &str) -> bool {
        let kept = prefix::cut_to(text, self.left);
        field.push_str(kept);
        self.left -= kept.len();
        kept.len() == text.len()
    }
}

/// Lossy UTF-8 decoding; when the bytes were cut, a character split by the
/// cut is dropped rather than shown as U+FFFD.
fn decode(bytes: &[u8], cut: bool) -> String {
    let whole = match std::str::from_utf8(bytes) {
        Err(e) if cut && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    String::from_utf8_lossy(whole).into_owned()
}

/// Appends up to `room - buf.len()` bytes of `bytes`; false when some were dropped.
fn keep_bytes(buf: &mut Vec<u8>, bytes: &[u8], room: usize) -> bool {
    let free = room.saturating_sub(buf.len());
    let kept = bytes.len().min(free);
    buf.extend_from_slice(&bytes[..kept]);
    kept == bytes.len()
}

/// csvlog gives `host:port` (jsonlog has the port apart): keep the host.
fn host_without_port(text: &str) -> Option<String> {
    let host = match text.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => text,
    };
    prefix::name_value(host)
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn query_id(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok().filter(|id| *id != 0)
}

// ---------------------------------------------------------------- stderr

/// Splits the byte stream into lines, keeping at most [`LINE_CAP`] bytes of each.
#[derive(Debug, Default)]
struct Lines {
    buf: Vec<u8>,
    cut: bool,
    /// Offset of the first byte of the line in `buf`.
    start: u64,
    /// Bytes fed so far.
    fed: u64,
}

/// One complete line and where it lies in the input.
struct Line<'a> {
    bytes: &'a [u8],
    cut: bool,
    start: u64,
    end: u64,
}

impl Lines {
    fn push(&mut self, mut bytes: &[u8], mut each: impl FnMut(Line<'_>)) {
        while !bytes.is_empty() {
            let Some(newline) = bytes.iter().position(|b| *b == b'\n') else {
                self.keep(bytes);
                self.fed += bytes.len() as u64;
                return;
            };
            self.keep(&bytes[..newline]);
            self.fed += newline as u64 + 1;
            each(Line {
                bytes: &self.buf,
                cut: self.cut,
                start: self.start,
                end: self.fed,
            });
            self.clear();
            self.start = self.fed;
            bytes = &bytes[newline + 1..];
        }
    }

    /// The unterminated last line, if any, as if it were complete.
    fn flush(&mut self, mut each: impl FnMut(Line<'_>)) {
        if self.fed > self.start {
            each(Line {
                bytes: &self.buf,
                cut: self.cut,
                start: self.start,
                end: self.fed,
            });
        }
        self.clear();
        self.start = self.fed;
    }

    /// Forgets the line; gives back the memory a very long one took.
    fn clear(&mut self) {
        self.buf.clear();
        self.buf.shrink_to(KEPT_LINE_CAPACITY);
        self.cut = false;
    }

    fn keep(&mut self, bytes: &[u8]) {
        if !keep_bytes(&mut self.buf, bytes, LINE_CAP) {
            self.cut = true;
        }
    }
}

#[derive(Debug)]
struct StderrReader {
    lines: Lines,
    state: StderrState,
}

/// Where the next tab-continued line of the pending record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Message,
    Detail,
    Hint,
    Context,
    Statement,
    /// QUERY, LOCATION, BACKTRACE: read, not kept.
    Ignored,
}

/// A stderr record still open to continuation lines.
#[derive(Debug)]
struct Pending {
    record: LogRecord,
    target: Target,
    budget: Budget,
    /// A LOCATION line came: `log_error_verbosity = verbose`, so the
    /// message starts with its SQLSTATE.
    verbose: bool,
}

#[derive(Debug)]
struct StderrState {
    prefix: Prefix,
    pending: Option<Pending>,
    /// The last line was noise (or an orphan DETAIL): its tab-continued
    /// lines are noise too.
    detached: bool,
    consumed: u64,
}

impl StderrReader {
    fn new(prefix: Prefix) -> Self {
        StderrReader {
            lines: Lines::default(),
            state: StderrState {
                prefix,
                pending: None,
                detached: false,
                consumed: 0,
            },
        }
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<LogRecord>) {
        let state = &mut self.state;
        self.lines.push(bytes, |line| state.on_line(line, out));
    }

    fn finish(&mut self, out: &mut Vec<LogRecord>) {
        let state = &mut self.state;
        self.lines.flush(|line| state.on_line(line, out));
        if let Some(pending) = state.pending.take() {
            out.push(pending.into_record());
        }
        state.detached = false;
        state.consumed = self.lines.fed;
    }

    fn pending_bytes(&self) -> usize {
        self.lines.buf.len()
            + self
                .state
                .pending
                .as_ref()
                .map_or(0, |p| p.record.held_bytes())
    }
}

impl StderrState {
    fn on_line(&mut self, line: Line<'_>, out: &mut Vec<LogRecord>) {
        let text = String::from_utf8_lossy(line.bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        if let Some(continued) = text.strip_prefix('\t') {
            self.continue_record(continued, line.cut, line.end);
            return;
        }
        let Some((fields, rest)) = self.prefix.match_line(text) else {
            self.skip(line.end);
            return;
        };
        match prefix::label(rest) {
            Some((Label::Main(severity), message)) => {
                self.start_record(fields, severity, message, line.cut, line.start, out);
            }
            Some((Label::Attached(label), message)) => {
                self.attach(&fields, label, message, line.cut, line.end, out);
            }
            None => self.skip(line.end),
        }
    }

    /// A line that belongs to no record.
    fn skip(&mut self, end: u64) {
        self.detached = true;
        if self.pending.is_none() {
            self.consumed = end;
        }
    }

    fn continue_record(&mut self, text: &str, cut: bool, end: u64) {
        match &mut self.pending {
            Some(pending) if !self.detached => pending.append_line(text, cut),
            Some(_) => {}
            None => self.consumed = end,
        }
    }

    fn start_record(
        &mut self,
        fields: PrefixFields,
        severity: &str,
        message: &str,
        cut: bool,
        start: u64,
        out: &mut Vec<LogRecord>,
    ) {
        if let Some(done) = self.pending.take() {
            out.push(done.into_record());
        }
        self.consumed = start;
        self.detached = false;
        let mut pending = Pending {
            record: LogRecord {
                timestamp: fields.timestamp,
                pid: fields.pid,
                user: fields.user,
                database: fields.database,
                application: fields.application,
                remote_host: fields.remote_host,
                session_id: fields.session_id,
                session_line: fields.session_line,
                severity: severity.to_string(),
                sqlstate: fields.sqlstate,
                query_id: fields.query_id,
                ..LogRecord::default()
            },
            target: Target::Message,
            budget: Budget::default(),
            verbose: false,
        };
        pending.set(Target::Message, message, cut);
        self.pending = Some(pending);
    }

    fn attach(
        &mut self,
        fields: &PrefixFields,
        label: &str,
        message: &str,
        cut: bool,
        end: u64,
        out: &mut Vec<LogRecord>,
    ) {
        match &mut self.pending {
            Some(pending) if same_process(&pending.record, fields) => {
                self.detached = false;
                let target = match label {
                    "DETAIL" => Target::Detail,
                    "HINT" => Target::Hint,
                    "CONTEXT" => Target::Context,
                    "STATEMENT" => Target::Statement,
                    _ => Target::Ignored,
                };
                pending.verbose |= label == "LOCATION";
                pending.set(target, message, cut);
            }
            // An orphan: its record went by, or another process's.
            _ => {
                if let Some(done) = self.pending.take() {
                    out.push(done.into_record());
                }
                self.detached = true;
                self.consumed = end;
            }
        }
    }
}

/// DETAIL and friends carry the same prefix as their message (bar `%l`,
/// which counts lines): the pid and session id must agree when printed.
fn same_process(record: &LogRecord, fields: &PrefixFields) -> bool {
    agree(&record.pid, &fields.pid) && agree(&record.session_id, &fields.session_id)
}

fn agree<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
    a.is_none() || b.is_none() || a == b
}

impl Pending {
    fn field(&mut self, target: Target) -> Option<&mut String> {
        let record = &mut self.record;
        let slot = match target {
            Target::Message => return Some(&mut record.message),
            Target::Detail => &mut record.detail,
            Target::Hint => &mut record.hint,
            Target::Context => &mut record.context,
            Target::Statement => &mut record.statement,
            Target::Ignored => return None,
        };
        Some(slot.get_or_insert_with(String::new))
    }

    /// Starts a field with the text after its label (a repeated label
    /// continues the field on a new line).
    fn set(&mut self, target: Target, text: &str, cut: bool) {
        self.target = target;
        let mut budget = std::mem::take(&mut self.budget);
        let mut kept = true;
        if let Some(field) = self.field(target) {
            if !field.is_empty() {
                kept &= budget.append(field, "\n");
            }
            kept &= budget.append(field, text);
        }
        self.budget = budget;
        self.record.truncated |= cut || !kept;
    }

    /// A tab-continued line: the current field goes on.
    fn append_line(&mut self, text: &str, cut: bool) {
        let mut budget = std::mem::take(&mut self.budget);
        let mut kept = true;
        if let Some(field) = self.field(self.target) {
            kept = budget.append(field, "\n") && budget.append(field, text);
        }
        self.budget = budget;
        self.record.truncated |= cut || !kept;
    }

    fn into_record(self) -> LogRecord {
        let mut record = self.record;
        if self.verbose {
            strip_verbose_sqlstate(&mut record);
        }
        record
    }
}

/// With `log_error_verbosity = verbose` the message reads `42601: syntax
/// error ...`: move the code to `sqlstate`.
fn strip_verbose_sqlstate(record: &mut LogRecord) {
    let bytes = record.message.as_bytes();
    let is_code = bytes.len() >= 7
        && bytes[..5]
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        && &bytes[5..7] == b": ";
    if is_code {
        let code = record.message[..5].to_string();
        record.message.drain(..7);
        record.sqlstate.get_or_insert(code);
    }
}

// ---------------------------------------------------------------- csvlog

/// Columns of csvlog that hold long text, sharing the record's budget:
/// message, detail, hint, internal_query, context, query.
const CSV_LONG_COLUMNS: [usize; 6] = [13, 14, 15, 16, 18, 19];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum CsvState {
    #[default]
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: doubled (`""`) or the end.
    QuoteInQuoted,
}

#[derive(Debug, Default)]
struct CsvReader {
    fields: Vec<Vec<u8>>,
    field: Vec<u8>,
    state: CsvState,
    cut: bool,
    budget: Budget,
    /// The current row has begun (some byte of it was read).
    started: bool,
    fed: u64,
    consumed: u64,
}

impl CsvReader {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<LogRecord>) {
        let mut i = 0;
        while i < bytes.len() {
            self.started = true;
            i += self.step(&bytes[i..], out, self.fed + i as u64);
        }
        self.fed += bytes.len() as u64;
    }

    /// Consumes a run of bytes in the current state; returns how many.
    fn step(&mut self, bytes: &[u8], out: &mut Vec<LogRecord>, offset: u64) -> usize {
        match self.state {
            CsvState::Quoted => {
                let run = bytes.iter().position(|b| *b == b'"').unwrap_or(bytes.len());
                self.keep(&bytes[..run]);
                if run < bytes.len() {
                    self.state = CsvState::QuoteInQuoted;
                    return run + 1;
                }
                run
            }
            CsvState::Unquoted => {
                let run = bytes
                    .iter()
                    .position(|b| *b == b',' || *b == b'\n')
                    .unwrap_or(bytes.len());
                self.keep(&bytes[..run]);
                if run < bytes.len() {
                    self.delimiter(bytes[run], out, offset + run as u64 + 1);
                    return run + 1;
                }
                run
            }
            CsvState::FieldStart | CsvState::QuoteInQuoted => {
                let byte = bytes[0];
                match (self.state, byte) {
                    (_, b',' | b'\n') => self.delimiter(byte, out, offset + 1),
                    (CsvState::FieldStart, b'"') => self.state = CsvState::Quoted,
                    (CsvState::QuoteInQuoted, b'"') => {
                        self.keep(b"\"");
                        self.state = CsvState::Quoted;
                    }
                    // Text after a closing quote is not PostgreSQL's: keep it anyway.
                    _ => {
                        self.keep(&[byte]);
                        self.state = CsvState::Unquoted;
                    }
                }
                1
            }
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let index = self.fields.len();
        let room = if index >= MAX_CSV_FIELDS {
            0
        } else if CSV_LONG_COLUMNS.contains(&index) {
            self.budget.left
        } else {
            SMALL_FIELD_CAP
        };
        if !keep_bytes(&mut self.field, bytes, room) {
            self.cut = true;
        }
    }

    /// A comma or newline outside quotes.
    fn delimiter(&mut self, byte: u8, out: &mut Vec<LogRecord>, end: u64) {
        self.end_field();
        if byte == b'\n' {
            self.end_row(out, end);
        }
    }

    fn end_field(&mut self) {
        let field = std::mem::take(&mut self.field);
        if CSV_LONG_COLUMNS.contains(&self.fields.len()) {
            self.budget.left = self.budget.left.saturating_sub(field.len());
        }
        if self.fields.len() < MAX_CSV_FIELDS {
            self.fields.push(field);
        }
        self.state = CsvState::FieldStart;
    }

    fn end_row(&mut self, out: &mut Vec<LogRecord>, end: u64) {
        let fields = std::mem::take(&mut self.fields);
        if let Some(record) = csv_record(&fields, self.cut) {
            out.push(record);
        }
        self.cut = false;
        self.budget = Budget::default();
        self.started = false;
        self.consumed = end;
    }

    fn finish(&mut self, out: &mut Vec<LogRecord>) {
        if self.started {
            self.end_field();
            self.end_row(out, self.fed);
        }
        self.state = CsvState::FieldStart;
        self.consumed = self.fed;
    }

    fn pending_bytes(&self) -> usize {
        self.field.len() + self.fields.iter().map(Vec::len).sum::<usize>()
    }
}

/// A csvlog row as a record; `None` when it has too few columns to be one.
fn csv_record(fields: &[Vec<u8>], cut: bool) -> Option<LogRecord> {
    if fields.len() < 23 {
        return None;
    }
    let text = |i: usize| -> String { fields.get(i).map_or_else(String::new, |f| decode(f, cut)) };
    let optional = |i: usize| non_empty(text(i));
    let record = LogRecord {
        timestamp: prefix::parse_timestamp(&text(0)),
        user: prefix::name_value(&text(1)),
        database: prefix::name_value(&text(2)),
        pid: text(3).parse().ok(),
        remote_host: host_without_port(&text(4)),
        session_id: optional(5),
        session_line: text(6).parse().ok(),
        severity: text(11),
        sqlstate: optional(12),
        message: text(13),
        detail: optional(14),
        hint: optional(15),
        context: optional(18),
        statement: optional(19),
        application: prefix::name_value(&text(22)),
        query_id: if fields.len() >= 26 {
            query_id(&text(25))
        } else {
            None
        },
        truncated: cut,
    };
    Some(record)
}

// ---------------------------------------------------------------- jsonlog

/// The jsonlog keys kept, by slot.
const JSON_KEYS: [&str; 16] = [
    "timestamp",
    "user",
    "dbname",
    "pid",
    "remote_host",
    "session_id",
    "line_num",
    "error_severity",
    "state_code",
    "message",
    "detail",
    "hint",
    "context",
    "statement",
    "application_name",
    "query_id",
];

/// Slots of [`JSON_KEYS`] that hold long text, sharing the record's budget.
const JSON_LONG_SLOTS: [usize; 5] = [9, 10, 11, 12, 13];

/// Keys are at most this long in jsonlog; longer ones match nothing.
const JSON_KEY_CAP: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum JsonState {
    /// Before the `{` of the line.
    #[default]
    Start,
    /// After `{` or `,`: a key (or `}` right after `{`).
    BeforeKey {
        first: bool,
    },
    Key,
    Colon,
    BeforeValue,
    Text,
    Scalar,
    /// Inside an array or object value (not in jsonlog; skipped).
    Nested {
        depth: u32,
        in_text: bool,
    },
    AfterValue,
    /// After the closing `}`.
    Done,
    /// Not a jsonlog line: skipped up to its newline.
    Garbage,
}

/// Where in a `\` escape a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Escape {
    #[default]
    None,
    Backslash,
    Unicode {
        digits: u8,
        value: u32,
    },
}

#[derive(Debug, Default)]
struct JsonReader {
    state: JsonState,
    escape: Escape,
    /// A `\uD8xx` waiting for its low half.
    high_surrogate: Option<u32>,
    key: Vec<u8>,
    slot: Option<usize>,
    values: [Option<Vec<u8>>; JSON_KEYS.len()],
    cut: bool,
    budget: Budget,
    fed: u64,
    consumed: u64,
}

impl JsonReader {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<LogRecord>) {
        let mut i = 0;
        while i < bytes.len() {
            i += self.step(&bytes[i..], out, self.fed + i as u64);
        }
        self.fed += bytes.len() as u64;
    }

    /// Consumes a run of bytes in the current state; returns how many.
    fn step(&mut self, bytes: &[u8], out: &mut Vec<LogRecord>, offset: u64) -> usize {
        let byte = bytes[0];
        if byte == b'\n' {
            self.end_line(out, offset + 1);
            return 1;
        }
        match self.state {
            JsonState::Key | JsonState::Text
                if self.escape == Escape::None && byte != b'\\' && byte != b'"' =>
            {
                let run = bytes
                    .iter()
                    .position(|b| matches!(b, b'\\' | b'"' | b'\n'))
                    .unwrap_or(bytes.len());
                self.flush_surrogate();
                self.keep(&bytes[..run]);
                run
            }
            JsonState::Garbage => bytes
                .iter()
                .position(|b| *b == b'\n')
                .unwrap_or(bytes.len()),
            _ => {
                self.byte(byte);
                1
            }
        }
    }

    /// One byte outside a run of plain string text.
    fn byte(&mut self, byte: u8) {
        let blank = matches!(byte, b' ' | b'\t' | b'\r');
        self.state = match self.state {
            JsonState::Start if blank => JsonState::Start,
            JsonState::Start if byte == b'{' => JsonState::BeforeKey { first: true },
            JsonState::BeforeKey { first } if blank => JsonState::BeforeKey { first },
            JsonState::BeforeKey { .. } if byte == b'"' => {
                self.key.clear();
                JsonState::Key
            }
            JsonState::BeforeKey { first: true } if byte == b'}' => JsonState::Done,
            JsonState::Key | JsonState::Text => return self.string_byte(byte),
            JsonState::Colon if blank => JsonState::Colon,
            JsonState::Colon if byte == b':' => JsonState::BeforeValue,
            JsonState::BeforeValue if blank => JsonState::BeforeValue,
            JsonState::BeforeValue => self.start_value(byte),
            JsonState::Scalar if matches!(byte, b',' | b'}') || blank => {
                return self.after_value(byte);
            }
            JsonState::Scalar => {
                self.keep(&[byte]);
                JsonState::Scalar
            }
            JsonState::Nested { depth, in_text } => nested(
                depth,
                in_text,
                self.escape == Escape::Backslash,
                byte,
                &mut self.escape,
            ),
            JsonState::AfterValue => return self.after_value(byte),
            JsonState::Done if blank => JsonState::Done,
            _ => JsonState::Garbage,
        };
    }

    fn start_value(&mut self, byte: u8) -> JsonState {
        if let Some(slot) = self.slot {
            self.values[slot] = Some(Vec::new());
        }
        match byte {
            b'"' => JsonState::Text,
            b'{' | b'[' => JsonState::Nested {
                depth: 1,
                in_text: false,
            },
            b',' | b'}' | b':' | b']' => JsonState::Garbage,
            _ => {
                self.keep(&[byte]);
                JsonState::Scalar
            }
        }
    }

    fn after_value(&mut self, byte: u8) {
        self.state = match byte {
            b' ' | b'\t' | b'\r' => JsonState::AfterValue,
            b',' => JsonState::BeforeKey { first: false },
            b'}' => JsonState::Done,
            _ => JsonState::Garbage,
        };
        if self.state != JsonState::AfterValue {
            self.end_value();
        }
    }

    /// A `"` or `\` or escape byte inside a key or text value.
    fn string_byte(&mut self, byte: u8) {
        match self.escape {
            Escape::None if byte == b'"' => {
                self.flush_surrogate();
                if self.state == JsonState::Key {
                    self.slot = JSON_KEYS
                        .iter()
                        .position(|k| k.as_bytes() == self.key.as_slice());
                    self.state = JsonState::Colon;
                } else {
                    self.state = JsonState::AfterValue;
                }
            }
            Escape::None => self.escape = Escape::Backslash,
            Escape::Backslash => {
                self.escape = Escape::None;
                let plain = match byte {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'u' => {
                        self.escape = Escape::Unicode {
                            digits: 0,
                            value: 0,
                        };
                        return;
                    }
                    other => other,
                };
                self.flush_surrogate();
                self.keep(&[plain]);
            }
            Escape::Unicode { digits, value } => {
                let Some(digit) = (byte as char).to_digit(16) else {
                    self.state = JsonState::Garbage;
                    return;
                };
                let value = value * 16 + digit;
                if digits < 3 {
                    self.escape = Escape::Unicode {
                        digits: digits + 1,
                        value,
                    };
                } else {
                    self.escape = Escape::None;
                    self.code_unit(value);
                }
            }
        }
    }

    /// A UTF-16 code unit from `\uXXXX`; pairs surrogates, replaces strays.
    fn code_unit(&mut self, unit: u32) {
        if let Some(high) = self.high_surrogate.take() {
            if (0xDC00..0xE000).contains(&unit) {
                let c = char::from_u32(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00));
                self.keep_char(c.unwrap_or(char::REPLACEMENT_CHARACTER));
                return;
            }
            self.keep_char(char::REPLACEMENT_CHARACTER);
        }
        if (0xD800..0xDC00).contains(&unit) {
            self.high_surrogate = Some(unit);
            return;
        }
        self.keep_char(char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER));
    }

    fn flush_surrogate(&mut self) {
        if self.high_surrogate.take().is_some() {
            self.keep_char(char::REPLACEMENT_CHARACTER);
        }
    }

    fn keep_char(&mut self, c: char) {
        let mut utf8 = [0; 4];
        self.keep(c.encode_utf8(&mut utf8).as_bytes());
    }

    /// Stores bytes of the current key or value, within its cap.
    fn keep(&mut self, bytes: &[u8]) {
        if self.state == JsonState::Key {
            keep_bytes(&mut self.key, bytes, JSON_KEY_CAP + 1);
            return;
        }
        let Some(slot) = self.slot else { return };
        let room = if JSON_LONG_SLOTS.contains(&slot) {
            self.budget.left
        } else {
            SMALL_FIELD_CAP
        };
        if let Some(value) = &mut self.values[slot]
            && !keep_bytes(value, bytes, room)
        {
            self.cut = true;
        }
    }

    fn end_value(&mut self) {
        if let Some(slot) = self.slot.take()
            && JSON_LONG_SLOTS.contains(&slot)
        {
            let used = self.values[slot].as_ref().map_or(0, Vec::len);
            self.budget.left = self.budget.left.saturating_sub(used);
        }
    }

    fn end_line(&mut self, out: &mut Vec<LogRecord>, end: u64) {
        if self.state == JsonState::Done
            && let Some(record) = self.record()
        {
            out.push(record);
        }
        self.reset();
        self.consumed = end;
    }

    fn reset(&mut self) {
        self.state = JsonState::Start;
        self.escape = Escape::None;
        self.high_surrogate = None;
        self.key.clear();
        self.slot = None;
        self.values = Default::default();
        self.cut = false;
        self.budget = Budget::default();
    }

    fn record(&self) -> Option<LogRecord> {
        let text = |slot: usize| self.values[slot].as_deref().map(|v| decode(v, self.cut));
        let severity = text(7)?;
        Some(LogRecord {
            timestamp: text(0).as_deref().and_then(prefix::parse_timestamp),
            user: text(1).as_deref().and_then(prefix::name_value),
            database: text(2).as_deref().and_then(prefix::name_value),
            pid: text(3).and_then(|t| t.trim().parse().ok()),
            remote_host: text(4).as_deref().and_then(prefix::name_value),
            session_id: text(5).and_then(non_empty),
            session_line: text(6).and_then(|t| t.trim().parse().ok()),
            severity,
            // jsonlog leaves out state_code 00000.
            sqlstate: Some(
                text(8)
                    .and_then(non_empty)
                    .unwrap_or_else(|| "00000".to_string()),
            ),
            message: text(9).unwrap_or_default(),
            detail: text(10).and_then(non_empty),
            hint: text(11).and_then(non_empty),
            context: text(12).and_then(non_empty),
            statement: text(13).and_then(non_empty),
            application: text(14).as_deref().and_then(prefix::name_value),
            query_id: text(15).as_deref().and_then(query_id),
            truncated: self.cut,
        })
    }

    fn finish(&mut self, out: &mut Vec<LogRecord>) {
        self.end_line(out, self.fed);
    }

    fn pending_bytes(&self) -> usize {
        self.key.len() + self.values.iter().flatten().map(Vec::len).sum::<usize>()
    }
}

/// Skipping a nested array/object value: tracks depth and strings.
fn nested(depth: u32, in_text: bool, escaped: bool, byte: u8, escape: &mut Escape) -> JsonState {
    *escape = Escape::None;
    if in_text {
        return match byte {
            b'\\' if !escaped => {
                *escape = Escape::Backslash;
                JsonState::Nested { depth, in_text }
            }
            b'"' if !escaped => JsonState::Nested {
                depth,
                in_text: false,
            },
            _ => JsonState::Nested { depth, in_text },
        };
    }
    match byte {
        b'"' => JsonState::Nested {
            depth,
            in_text: true,
        },
        b'{' | b'[' => JsonState::Nested {
            depth: depth.saturating_add(1),
            in_text,
        },
        b'}' | b']' if depth <= 1 => JsonState::AfterValue,
        b'}' | b']' => JsonState::Nested {
            depth: depth - 1,
            in_text,
        },
        _ => JsonState::Nested { depth, in_text },
    }
}

/// The captured fixtures (see `fixtures/capture.sh`), shared with event.rs's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Format, LogRecord, Parser};

    /// One captured file.
    pub struct Fixture {
        pub name: &'static str,
        pub major: u32,
        pub format: Format,
        pub prefix: &'static str,
        pub bytes: &'static [u8],
    }

    /// Just the name: the bytes would drown a failure message.
    impl std::fmt::Debug for Fixture {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.name)
        }
    }

    pub const PREFIX_13: &str = "%m [%p] ";
    pub const PREFIX_14: &str = "%m [%p] %q%u@%d ";
    pub const PREFIX_15: &str = "%m [%p] %q%u@%d/%a %h %c:%l %e ";
    pub const PREFIX_16: &str = "%n [%p] %q%u@%d %b ";
    pub const PREFIX_17: &str = "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%r ";
    pub const PREFIX_18: &str = "%m [%p] %q%u@%d %e %Q ";

    macro_rules! fixture {
        ($name:literal, $major:literal, $format:ident, $prefix:expr) => {
            Fixture {
                name: $name,
                major: $major,
                format: Format::$format,
                prefix: $prefix,
                bytes: include_bytes!(concat!("fixtures/", $name)),
            }
        };
    }

    pub const ALL: &[Fixture] = &[
        fixture!("pg13-1.log", 13, Stderr, PREFIX_13),
        fixture!("pg13-2.log", 13, Stderr, PREFIX_13),
        fixture!("pg13-1.csv", 13, Csv, ""),
        fixture!("pg13-2.csv", 13, Csv, ""),
        fixture!("pg14-1.log", 14, Stderr, PREFIX_14),
        fixture!("pg14-2.log", 14, Stderr, PREFIX_14),
        fixture!("pg14-1.csv", 14, Csv, ""),
        fixture!("pg14-2.csv", 14, Csv, ""),
        fixture!("pg15-1.log", 15, Stderr, PREFIX_15),
        fixture!("pg15-2.log", 15, Stderr, PREFIX_15),
        fixture!("pg15-1.csv", 15, Csv, ""),
        fixture!("pg15-2.csv", 15, Csv, ""),
        fixture!("pg15-1.json", 15, Json, ""),
        fixture!("pg15-2.json", 15, Json, ""),
        fixture!("pg16-1.log", 16, Stderr, PREFIX_16),
        fixture!("pg16-2.log", 16, Stderr, PREFIX_16),
        fixture!("pg16-1.csv", 16, Csv, ""),
        fixture!("pg16-2.csv", 16, Csv, ""),
        fixture!("pg16-1.json", 16, Json, ""),
        fixture!("pg16-2.json", 16, Json, ""),
        fixture!("pg17-1.log", 17, Stderr, PREFIX_17),
        fixture!("pg17-2.log", 17, Stderr, PREFIX_17),
        fixture!("pg17-1.csv", 17, Csv, ""),
        fixture!("pg17-2.csv", 17, Csv, ""),
        fixture!("pg17-1.json", 17, Json, ""),
        fixture!("pg17-2.json", 17, Json, ""),
        fixture!("pg18-1.log", 18, Stderr, PREFIX_18),
        fixture!("pg18-2.log", 18, Stderr, PREFIX_18),
        fixture!("pg18-1.csv", 18, Csv, ""),
        fixture!("pg18-2.csv", 18, Csv, ""),
        fixture!("pg18-1.json", 18, Json, ""),
        fixture!("pg18-2.json", 18, Json, ""),
    ];

    /// A fixture by file name.
    pub fn get(name: &str) -> &'static Fixture {
        ALL.iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no fixture {name}"))
    }

    /// All records of a fixture, fed whole.
    pub fn parse(fixture: &Fixture) -> Vec<LogRecord> {
        let mut parser = Parser::new(fixture.format, fixture.prefix);
        let mut records = parser.push(fixture.bytes);
        records.extend(parser.finish());
        records
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{self, Fixture, get, parse};
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::FileFailurePersistence;

    /// Feeds `bytes` cut at `cuts` (sorted offsets), then finishes.
    fn parse_cut(format: Format, prefix: &str, bytes: &[u8], cuts: &[usize]) -> Vec<LogRecord> {
        let mut parser = Parser::new(format, prefix);
        let mut records = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(from, bytes.len());
            records.extend(parser.push(&bytes[from..cut]));
            from = cut;
        }
        records.extend(parser.finish());
        records
    }

    fn parse_bytes(format: Format, prefix: &str, bytes: &[u8]) -> Vec<LogRecord> {
        parse_cut(format, prefix, bytes, &[])
    }

    /// Compares a record with an expectation, the timestamp within a microsecond.
    fn assert_record(got: &LogRecord, want: LogRecord, context: &str) {
        let close = match (got.timestamp, want.timestamp) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-6,
            (a, b) => a == b,
        };
        assert!(
            close,
            "{context}: timestamp {:?} != {:?}",
            got.timestamp, want.timestamp
        );
        assert_eq!(
            got,
            &LogRecord {
                timestamp: got.timestamp,
                ..want
            },
            "{context}"
        );
    }

    fn s(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn fixture_records_exactly() {
        // 2026-11-28 02:50:09.755 UTC
        let warning = LogRecord {
            timestamp: Some(1_795_834_209.755),
            pid: Some(21357),
            user: s("postgres"),
            database: s("postgres"),
            application: s("psql"),
            remote_host: s("[local]"),
            session_id: s("6b0a4161.536d"),
            session_line: Some(3),
            severity: "WARNING".into(),
            sqlstate: s("01000"),
            message: "careful".into(),
            detail: s("first line\nsecond line"),
            hint: s("take care"),
            context: s("PL/pgSQL function inline_code_block line 1 at RAISE"),
            ..LogRecord::default()
        };
        // 2026-11-28 02:49:46.441 UTC
        let do_error_13 = LogRecord {
            timestamp: Some(1_795_834_186.441),
            pid: Some(20883),
            severity: "ERROR".into(),
            message: "syntax error at or near \"SELEC\" at character 1".into(),
            context: s("PL/pgSQL function inline_code_block line 1 at EXECUTE"),
            statement: s("DO $$ BEGIN EXECUTE 'SELEC 2'; END $$"),
            ..LogRecord::default()
        };
        let bind_18 = LogRecord {
            // 2026-11-28 08:35:46.839 +0545
            timestamp: Some(1_795_834_246.839),
            pid: Some(22643),
            user: s("postgres"),
            database: s("postgres"),
            application: s("fixture-libpq"),
            remote_host: s("[local]"),
            session_id: s("6b0a4186.5873"),
            session_line: Some(5),
            severity: "LOG".into(),
            sqlstate: s("00000"),
            message: "duration: 0.410 ms  bind <unnamed>: SELECT id, name, $2::text IS NULL AS missing, $3::text AS q\nFROM items WHERE id = $1::int".into(),
            detail: s("Parameters: $1 = '7', $2 = NULL, $3 = 'it''s \"quoted\"'"),
            query_id: Some(6_031_278_221_215_838_344),
            ..LogRecord::default()
        };
        let cases: Vec<(&str, &str, LogRecord)> = vec![
            ("pg15-1.log", "careful", warning.clone()),
            // csvlog/jsonlog carry the query id of the DO that raised it.
            (
                "pg15-1.csv",
                "careful",
                LogRecord {
                    query_id: Some(-8_910_540_084_177_979_773),
                    ..warning.clone()
                },
            ),
            (
                "pg15-1.json",
                "careful",
                LogRecord {
                    query_id: Some(-8_910_540_084_177_979_773),
                    ..warning
                },
            ),
            (
                "pg13-1.log",
                "syntax error at or near \"SELEC\" at character 1",
                do_error_13.clone(),
            ),
            (
                "pg13-1.csv",
                "syntax error at or near \"SELEC\"",
                LogRecord {
                    user: s("postgres"),
                    database: s("postgres"),
                    application: s("psql"),
                    remote_host: s("[local]"),
                    session_id: s("6b0a414a.5193"),
                    session_line: Some(3),
                    sqlstate: s("42601"),
                    message: "syntax error at or near \"SELEC\"".into(),
                    ..do_error_13
                },
            ),
            (
                "pg18-1.json",
                "duration: 0.410 ms  bind <unnamed>: SELECT id, name, $2",
                bind_18.clone(),
            ),
            (
                "pg18-1.csv",
                "duration: 0.410 ms  bind <unnamed>: SELECT id, name, $2",
                bind_18.clone(),
            ),
            (
                "pg18-1.log",
                "duration: 0.410 ms  bind <unnamed>: SELECT id, name, $2",
                LogRecord {
                    application: None,
                    remote_host: None,
                    session_id: None,
                    session_line: None,
                    ..bind_18
                },
            ),
            (
                // %t: whole seconds, in CET.
                "pg17-1.log",
                "permission denied for table secret",
                LogRecord {
                    timestamp: Some(1_795_834_233.0),
                    pid: Some(21960),
                    user: s("alice"),
                    database: s("postgres"),
                    application: s("fixture-app"),
                    remote_host: s("127.0.0.1"),
                    session_line: Some(4),
                    severity: "ERROR".into(),
                    message: "permission denied for table secret".into(),
                    statement: s("SELECT * FROM secret"),
                    ..LogRecord::default()
                },
            ),
            (
                // archive_command's own line before it is skipped.
                "pg14-1.log",
                "archive command failed",
                LogRecord {
                    timestamp: Some(1_795_834_198.387),
                    pid: Some(21062),
                    severity: "LOG".into(),
                    message: "archive command failed with exit code 1".into(),
                    detail: s(
                        "The failed archive command was: echo \"archive helper: cannot copy 000000010000000000000001 (fixture)\" >&2; exit 1",
                    ),
                    ..LogRecord::default()
                },
            ),
        ];
        for (name, message, want) in cases {
            let records = parse(get(name));
            // The first syntax error is `SELEC 1`; the DO block's is wanted.
            let found = records
                .iter()
                .find(|r| {
                    r.message.starts_with(message)
                        && (!message.starts_with("syntax") || r.context.is_some())
                })
                .unwrap_or_else(|| panic!("{name}: no {message:?}"));
            assert_record(found, want, name);
        }
    }

    #[test]
    fn fixture_multi_line_and_tabbed_statements() {
        for fixture in fixtures::ALL.iter().filter(|f| {
            f.name.ends_with("-1.log") || f.name.ends_with("-1.csv") || f.name.ends_with("-1.json")
        }) {
            let records = parse(fixture);
            let statement = |text: &str| {
                records
                    .iter()
                    .any(|r| r.message.ends_with(&format!("ms  statement: {text}")))
            };
            assert!(
                statement(
                    "SELECT id,\n       name\n  FROM items\n WHERE name LIKE 'item 1%'\n ORDER BY id\n LIMIT 3"
                ),
                "{}",
                fixture.name
            );
            // A tab inside a line stays; a line that starts with a tab keeps it
            // (PostgreSQL adds one more, which the parser takes off).
            assert!(
                statement(
                    "SELECT 'tab\tinside' AS a,\n\t'line starting with a tab' AS b, 'héllo ✓' AS c"
                ),
                "{}",
                fixture.name
            );
            assert!(records.iter().all(|r| !r.truncated), "{}", fixture.name);
        }
    }

    #[test]
    fn fixture_statement_of_300_kb() {
        let want = format!(
            "statement: SELECT length('{}') AS big;",
            "x".repeat(300_000)
        );
        for name in ["pg15-1.log", "pg15-1.csv", "pg15-1.json"] {
            let records = parse(get(name));
            let big = records
                .iter()
                .find(|r| r.message.contains("SELECT length("))
                .unwrap();
            assert!(big.message.ends_with(&want), "{name}");
            assert!(!big.truncated, "{name}");
        }
    }

    #[test]
    fn fixture_rotation_splits_between_records() {
        for major in 13..=18 {
            let first = parse(get(&format!("pg{major}-1.log")));
            let second = parse(get(&format!("pg{major}-2.log")));
            assert!(
                first
                    .iter()
                    .any(|r| r.message.contains("statement: SELECT pg_rotate_logfile()"))
                    || second
                        .iter()
                        .any(|r| r.message.contains("statement: SELECT pg_rotate_logfile()"))
            );
            assert!(
                second.iter().any(|r| r
                    .message
                    .contains("statement: SELECT 'after rotation' AS marker")),
                "{major}"
            );
            assert!(
                !first.iter().any(|r| r.message.contains("after rotation")),
                "{major}"
            );
            assert_eq!(
                second.last().map(|r| r.message.as_str()),
                Some("database system is shut down"),
                "{major}"
            );
        }
    }

    /// stderr says less than csvlog, but what it says must agree; csvlog
    /// and jsonlog must agree on everything.
    #[test]
    fn every_format_of_a_server_logs_the_same_records() {
        for major in 13..=18 {
            for n in 1..=2 {
                let stderr = parse(get(&format!("pg{major}-{n}.log")));
                let csv = parse(get(&format!("pg{major}-{n}.csv")));
                assert_eq!(stderr.len(), csv.len(), "pg{major}-{n}");
                for (s, c) in stderr.iter().zip(&csv) {
                    assert_stderr_agrees(major, s, c);
                }
                if major >= 15 {
                    let json = parse(get(&format!("pg{major}-{n}.json")));
                    assert_eq!(json, csv, "pg{major}-{n}");
                }
            }
        }
    }

    fn assert_stderr_agrees(major: u32, s: &LogRecord, c: &LogRecord) {
        let context = format!("pg{major}: {s:?} vs {c:?}");
        // stderr appends the error position to the message; csvlog has a column.
        let same_message = s.message == c.message
            || s.message
                .strip_prefix(c.message.as_str())
                .is_some_and(|r| r.starts_with(" at character "));
        assert!(same_message, "{context}");
        assert_eq!((&s.severity, s.pid), (&c.severity, c.pid), "{context}");
        assert_eq!(
            (&s.detail, &s.hint, &s.context, &s.statement),
            (&c.detail, &c.hint, &c.context, &c.statement),
            "{context}"
        );
        let (st, ct) = (s.timestamp.unwrap(), c.timestamp.unwrap());
        let want = if major == 17 { ct.floor() } else { ct };
        assert!((st - want).abs() < 1e-6, "{context}");
        if major >= 14 {
            assert_eq!((&s.user, &s.database), (&c.user, &c.database), "{context}");
        }
        if major == 15 || major == 17 {
            assert_eq!(
                (&s.application, &s.remote_host),
                (&c.application, &c.remote_host),
                "{context}"
            );
        }
        if s.sqlstate.is_some() {
            assert_eq!(s.sqlstate, c.sqlstate, "{context}");
        }
        if major == 18 && s.user.is_some() {
            assert_eq!(s.query_id, c.query_id, "{context}");
        }
    }

    #[test]
    fn csv_columns_by_count() {
        // 13 has 24 columns (no query_id), 14+ 26.
        let thirteen = parse(get("pg13-1.csv"));
        assert!(thirteen.iter().all(|r| r.query_id.is_none()));
        let fourteen = parse(get("pg14-1.csv"));
        assert!(fourteen.iter().any(|r| r.query_id.is_some()));
        assert!(
            fourteen
                .iter()
                .all(|r| r.application.as_deref() != Some("client backend"))
        );
        // A 23-column row (12 and before): no backend_type, still a record.
        let row = b"2026-11-28 02:49:45.805 UTC,\"u\",\"d\",1,\"10.0.0.1:5432\",s.1,1,\"\",2026-11-28 02:49:45 UTC,,0,ERROR,42P01,\"relation \"\"t\"\" does not exist\",,,,,,\"SELECT * FROM t\",15,,\"app\"\n";
        let records = parse_bytes(Format::Csv, "", row);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].message, "relation \"t\" does not exist");
        assert_eq!(records[0].remote_host.as_deref(), Some("10.0.0.1"));
        assert_eq!(records[0].application.as_deref(), Some("app"));
        // Too few columns: not a record.
        assert!(parse_bytes(Format::Csv, "", b"a,b,c\n\n").is_empty());
    }

    /// Every byte boundary of a few small files: the same records.
    #[test]
    fn split_at_every_byte_boundary() {
        for name in ["pg13-2.log", "pg17-2.log", "pg14-2.csv", "pg16-2.json"] {
            let fixture = get(name);
            let whole = parse(fixture);
            assert!(!whole.is_empty());
            for cut in 0..=fixture.bytes.len() {
                let split = parse_cut(fixture.format, fixture.prefix, fixture.bytes, &[cut]);
                assert_eq!(split, whole, "{name} cut at {cut}");
            }
        }
    }

    /// One byte at a time: every boundary of every fixture at once.
    #[test]
    fn fed_one_byte_at_a_time() {
        for fixture in fixtures::ALL {
            let whole = parse(fixture);
            let mut parser = Parser::new(fixture.format, fixture.prefix);
            let mut records = Vec::new();
            for byte in fixture.bytes.chunks(1) {
                records.extend(parser.push(byte));
            }
            records.extend(parser.finish());
            assert_eq!(records, whole, "{}", fixture.name);
        }
    }

    /// Stopping anywhere and resuming at `consumed()` with a new parser
    /// loses and repeats nothing.
    #[test]
    fn resuming_at_consumed_yields_the_rest() {
        for fixture in fixtures::ALL {
            let whole = parse(fixture);
            let step = (fixture.bytes.len() / 60).max(1);
            for stop in (0..fixture.bytes.len()).step_by(step) {
                assert_resumes(fixture, &whole, stop);
            }
        }
    }

    fn assert_resumes(fixture: &Fixture, whole: &[LogRecord], stop: usize) {
        let mut first = Parser::new(fixture.format, fixture.prefix);
        let mut records = first.push(&fixture.bytes[..stop]);
        let consumed = usize::try_from(first.consumed()).unwrap();
        assert!(consumed <= stop, "{} stop {stop}", fixture.name);
        let mut second = Parser::new(fixture.format, fixture.prefix);
        records.extend(second.push(&fixture.bytes[consumed..]));
        records.extend(second.finish());
        assert_eq!(
            records, whole,
            "{} stop {stop} consumed {consumed}",
            fixture.name
        );
    }

    /// The rows of a csvlog: each complete one, and how many bytes it takes.
    const CSV_ROWS: [&str; 3] = [
        "2026-11-28 02:49:45.805 UTC,,,1,,a.1,1,,2026-11-28 02:49:45 UTC,,0,LOG,00000,\"first\",,,,,,,,,\"\",\"postmaster\"\n",
        "2026-11-28 02:49:45.806 UTC,,,1,,a.1,2,,2026-11-28 02:49:45 UTC,,0,LOG,00000,\"second\nover \"\"two\"\" lines\",,,,,,,,,\"\",\"postmaster\"\n",
        "2026-11-28 02:49:45.807 UTC,,,1,,a.1,3,,2026-11-28 02:49:45 UTC,,0,LOG,00000,\"third\",,,,,,,,,\"\",\"postmaster\"\n",
    ];

    const JSON_ROWS: [&str; 3] = [
        "{\"timestamp\":\"2026-11-28 02:49:45.805 UTC\",\"pid\":1,\"error_severity\":\"LOG\",\"message\":\"first\"}\n",
        "{\"timestamp\":\"2026-11-28 02:49:45.806 UTC\",\"pid\":1,\"error_severity\":\"LOG\",\"message\":\"second\\nline \\\"quoted\\\" \\u00e9\\ud83d\\ude00\"}\n",
        "{\"timestamp\":\"2026-11-28 02:49:45.807 UTC\",\"pid\":1,\"error_severity\":\"ERROR\",\"state_code\":\"42601\",\"message\":\"third\"}\n",
    ];

    const STDERR_ROWS: [&str; 3] = [
        "2026-11-28 02:49:45.805 UTC [1] LOG:  first\n",
        "2026-11-28 02:49:45.806 UTC [1] LOG:  second\n\tline\n2026-11-28 02:49:45.806 UTC [1] DETAIL:  more\n",
        "2026-11-28 02:49:45.807 UTC [1] ERROR:  third\n2026-11-28 02:49:45.807 UTC [1] STATEMENT:  SELEC 1\n",
    ];

    #[test]
    fn consumed_after_whole_records_and_half_of_another() {
        for (format, rows) in [(Format::Csv, CSV_ROWS), (Format::Json, JSON_ROWS)] {
            let all = rows.concat();
            let whole = parse_bytes(format, "", all.as_bytes());
            assert_eq!(whole.len(), 3);
            for n in 0..3 {
                let done: usize = rows[..n].iter().map(|r| r.len()).sum();
                let half = done + rows[n].len() / 2;
                let mut parser = Parser::new(format, "");
                let first = parser.push(&all.as_bytes()[..half]);
                assert_eq!(first, whole[..n], "{format:?} {n}");
                assert_eq!(parser.consumed(), done as u64, "{format:?} {n}");
                assert!(parser.pending_bytes() > 0);
                let rest = parse_bytes(format, "", &all.as_bytes()[done..]);
                assert_eq!(rest, whole[n..], "{format:?} {n}");
            }
        }
        assert_eq!(
            parse_bytes(Format::Json, "", JSON_ROWS[1].as_bytes())[0].message,
            "second\nline \"quoted\" é😀"
        );
        assert_eq!(
            parse_bytes(Format::Csv, "", CSV_ROWS[1].as_bytes())[0].message,
            "second\nover \"two\" lines"
        );
    }

    #[test]
    fn stderr_consumed_waits_for_the_next_first_line() {
        let all = STDERR_ROWS.concat();
        let prefix = fixtures::PREFIX_13;
        let whole = parse_bytes(Format::Stderr, prefix, all.as_bytes());
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1].message, "second\nline");
        assert_eq!(whole[1].detail.as_deref(), Some("more"));
        assert_eq!(whole[2].statement.as_deref(), Some("SELEC 1"));
        for n in 1..3 {
            let done: usize = STDERR_ROWS[..n].iter().map(|r| r.len()).sum();
            let first_line = STDERR_ROWS[n].find('\n').unwrap() + 1;
            // The next record's first line is whole, the rest half there:
            // the n records are known complete.
            let cut = done + first_line + (STDERR_ROWS[n].len() - first_line) / 2;
            let mut parser = Parser::new(Format::Stderr, prefix);
            assert_eq!(parser.push(&all.as_bytes()[..cut]), whole[..n]);
            assert_eq!(parser.consumed(), done as u64);
            assert_eq!(
                parse_bytes(Format::Stderr, prefix, &all.as_bytes()[done..]),
                whole[n..]
            );
            // Only half the first line: a DETAIL of record n could still
            // come, so record n is held and consumed stays before it.
            let mut parser = Parser::new(Format::Stderr, prefix);
            assert_eq!(
                parser.push(&all.as_bytes()[..done + first_line / 2]),
                whole[..n - 1]
            );
            let before: usize = STDERR_ROWS[..n - 1].iter().map(|r| r.len()).sum();
            assert_eq!(parser.consumed(), before as u64);
        }
    }

    #[test]
    fn stderr_noise_never_breaks_the_stream() {
        let prefix = fixtures::PREFIX_14;
        let text = concat!(
            "2026-11-28 02:49:45.805 UTC [1] LOG:  first\n",
            "cp: cannot stat 'x': No such file or directory\n",
            "\tnoise that looks like a continuation\n",
            "2026-11-28 02:49:45.806 UTC [1] DETAIL:  detail after noise still attaches\n",
            "\n",
            "\u{0}\u{0}binary\u{1}junk\n",
            "2026-11-28 02:49:45.807 UTC [2] u@d DETAIL:  orphan from another process\n",
            "\tits continuation\n",
            "2026-11-28 02:49:45.808 UTC [3] u@d ERROR:  second\n",
            "2026-11-28 02:49:45.808 UTC [3] u@d LOCATION:  somewhere.c:1\n",
            "2026-11-28 02:49:45.809 UTC [3] u@d LOG:  third\r\n",
            "2026-11-28 02:49:45.810 UTC [4] u@d LOG:  last line without newline",
        );
        let records = parse_bytes(Format::Stderr, prefix, text.as_bytes());
        let summary: Vec<_> = records
            .iter()
            .map(|r| (r.pid, r.message.as_str(), r.detail.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some(1), "first", Some("detail after noise still attaches")),
                (Some(3), "second", None),
                (Some(3), "third", None),
                (Some(4), "last line without newline", None),
            ]
        );
        // Noise at the start is consumed as soon as it is seen.
        let mut parser = Parser::new(Format::Stderr, prefix);
        assert!(parser.push(b"noise\n\tmore noise\n").is_empty());
        assert_eq!(parser.consumed(), 18);
    }

    #[test]
    fn stderr_verbose_and_invalid_utf8() {
        let text =
            b"2026-11-28 02:49:45.805 UTC [1] ERROR:  42601: syntax error at or near \"SELEC\"\n\
2026-11-28 02:49:45.805 UTC [1] LOCATION:  scanner_yyerror, scan.l:1188\n\
2026-11-28 02:49:45.806 UTC [1] LOG:  bad \xff\xfe bytes \xe2\x9c\n";
        let records = parse_bytes(Format::Stderr, fixtures::PREFIX_13, text);
        assert_eq!(records[0].sqlstate.as_deref(), Some("42601"));
        assert_eq!(records[0].message, "syntax error at or near \"SELEC\"");
        assert_eq!(records[1].message, "bad \u{fffd}\u{fffd} bytes \u{fffd}");
    }

    #[test]
    fn jsonlog_oddities() {
        let text = concat!(
            "not json\n",
            "{\"error_severity\":\"LOG\",\"message\":\"unterminated\n",
            "{\"error_severity\":\"LOG\",\"nested\":{\"a\":[1,\"}\\\"\"]},\"message\":\"x\",\"pid\":\"42\", \"query_id\" : -5 }\n",
            "{\"message\":\"no severity\"}\n",
            "{\"error_severity\":\"LOG\",\"message\":\"lone \\ud800 surrogate\"}\n",
            "[1]\n",
            "{}\n",
        );
        let records = parse_bytes(Format::Json, "", text.as_bytes());
        assert_eq!(records.len(), 2);
        assert_eq!(
            (
                records[0].message.as_str(),
                records[0].pid,
                records[0].query_id
            ),
            ("x", Some(42), Some(-5))
        );
        assert_eq!(records[0].sqlstate.as_deref(), Some("00000"));
        assert_eq!(records[1].message, "lone \u{fffd} surrogate");
    }

    /// A line, field or string of several MB: cut to MAX_RECORD_BYTES,
    /// memory bounded while it streams in, the next record intact.
    #[test]
    fn megabyte_records_are_cut_and_memory_stays_bounded() {
        let huge = "x".repeat(3 * MAX_RECORD_BYTES);
        let inputs = [
            (
                Format::Stderr,
                format!(
                    "2026-11-28 02:49:45.805 UTC [1] LOG:  duration: 1.000 ms  statement: SELECT '{huge}'\n2026-11-28 02:49:45.806 UTC [1] LOG:  next\n"
                ),
            ),
            (
                Format::Csv,
                format!(
                    "{}{}",
                    CSV_ROWS[0].replace("\"first\"", &format!("\"{huge}\"")),
                    CSV_ROWS[2]
                ),
            ),
            (
                Format::Json,
                format!("{}{}", JSON_ROWS[0].replace("first", &huge), JSON_ROWS[2]),
            ),
        ];
        for (format, text) in inputs {
            let mut parser = Parser::new(format, fixtures::PREFIX_13);
            let mut records = Vec::new();
            for chunk in text.as_bytes().chunks(64 * 1024) {
                records.extend(parser.push(chunk));
                assert!(
                    parser.pending_bytes() <= 2 * MAX_RECORD_BYTES + 64 * 1024,
                    "{format:?}"
                );
            }
            records.extend(parser.finish());
            assert_eq!(records.len(), 2, "{format:?}");
            assert!(records[0].truncated, "{format:?}");
            assert!(records[0].message.len() <= MAX_RECORD_BYTES, "{format:?}");
            assert!(
                records[0].message.len() > MAX_RECORD_BYTES - 100,
                "{format:?}"
            );
            assert!(!records[1].truncated, "{format:?}");
        }
    }

    fn fixture_strategy() -> impl Strategy<Value = &'static Fixture> {
        (0..fixtures::ALL.len()).prop_map(|i| &fixtures::ALL[i])
    }

    /// Bytes that look a little like logs: separators, quotes, tabs, NULs,
    /// invalid UTF-8, and pieces of real lines.
    fn noisy_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::sample::select(vec![
                &b"\n"[..],
                b"\t",
                b"\"",
                b",",
                b"{",
                b"}",
                b"\\u",
                b"\xff",
                b"\0",
                b"2026-11-28 02:49:45.805 UTC [1] LOG:  x\n",
                b"2026-11-28 02:49:45.805 UTC [1] u@d DETAIL:  ",
                b"{\"error_severity\":\"LOG\",\"message\":\"",
                CSV_ROWS[1].as_bytes(),
            ])
            .prop_map(<[u8]>::to_vec),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 32,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
                "src/logs/fixtures/proptest-regressions.txt",
            ))),
            ..ProptestConfig::default()
        })]

        #[test]
        fn fixtures_split_at_random_points(
            fixture in fixture_strategy(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 1..12),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(fixture.bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let split = parse_cut(fixture.format, fixture.prefix, fixture.bytes, &cuts);
            prop_assert_eq!(split, parse(fixture));
        }

        #[test]
        fn any_bytes_never_panic_and_split_anywhere_alike(
            bytes in noisy_bytes(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            for format in [Format::Stderr, Format::Csv, Format::Json] {
                for prefix in [fixtures::PREFIX_13, fixtures::PREFIX_15, "%a %u %d "] {
                    let whole = parse_bytes(format, prefix, &bytes);
                    prop_assert_eq!(parse_cut(format, prefix, &bytes, &cuts), whole);
                    // Resuming at consumed() after the first cut gives the same.
                    if let Some(&stop) = cuts.first() {
                        let mut first = Parser::new(format, prefix);
                        let mut records = first.push(&bytes[..stop]);
                        let consumed = usize::try_from(first.consumed()).unwrap();
                        prop_assert!(consumed <= stop);
                        records.extend(parse_bytes(format, prefix, &bytes[consumed..]));
                        prop_assert_eq!(records, parse_bytes(format, prefix, &bytes));
                    }
                }
            }
        }
    }

    proptest! {
        // Each case parses megabytes: few cases.
        #![proptest_config(ProptestConfig {
            cases: 6,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
                "src/logs/fixtures/proptest-regressions.txt",
            ))),
            ..ProptestConfig::default()
        })]

        #[test]
        fn long_random_input_keeps_memory_bounded(
            seed in proptest::collection::vec(any::<u8>(), 1..256),
            newline_every in prop_oneof![Just(0usize), 1usize..3_000_000],
        ) {
            // Several MB built from the seed, with or without newlines.
            let mut bytes = Vec::with_capacity(3 * MAX_RECORD_BYTES);
            while bytes.len() < 3 * MAX_RECORD_BYTES {
                bytes.extend(seed.iter().map(|b| if *b == b'\n' { b'x' } else { *b }));
                if newline_every > 0 && bytes.len() % newline_every < seed.len() {
                    bytes.push(b'\n');
                }
            }
            for format in [Format::Stderr, Format::Csv, Format::Json] {
                let mut parser = Parser::new(format, "");
                for chunk in bytes.chunks(256 * 1024) {
                    for record in parser.push(chunk) {
                        prop_assert!(record.message.len() <= MAX_RECORD_BYTES);
                    }
                    prop_assert!(parser.pending_bytes() <= 3 * MAX_RECORD_BYTES);
                }
                parser.finish();
                prop_assert_eq!(parser.pending_bytes(), 0);
            }
        }
    }
}
