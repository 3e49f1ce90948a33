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
//! Not for: reading files, following rotation or remembering offsets
//! ([`crate::logs::tail`]), nor deciding what a record means
//! ([`crate::logs::event`]).
//!
//! One reader per format:
//! - `stderr`: a first line with its `log_line_prefix`, tab-continued
//!   lines, and the DETAIL/HINT/... lines of the same process.
//! - `csv` (csv-core): one CSV row per record (quoted fields may hold
//!   newlines); columns are picked by count (23 up to 12, 24 in 13, 26
//!   from 14).
//! - `json` (serde_json): one JSON object per line (15+).
//!
//! and `lines`, what they share: lines of bounded length, byte budgets.

mod csv;
#[cfg(test)]
pub(crate) mod fixtures;
mod json;
mod lines;
mod stderr;
#[cfg(test)]
mod tests;

use super::prefix::{self, Prefix, PrefixFields};

/// The most any one record may hold; longer messages/statements are cut
/// (a 1 MB statement must not make the parser hold tens of MB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One log entry, whatever the format.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord {
    /// Who logged it and when: the fields a `log_line_prefix` can carry,
    /// which csvlog and jsonlog always carry (those a stderr prefix has no
    /// escape for are `None`). Its SQLSTATE is there when the format has it
    /// (csvlog and jsonlog always, jsonlog's omitted `00000` included;
    /// stderr only with `%e` in the prefix or `log_error_verbosity =
    /// verbose`), its query id from csvlog/jsonlog 14+ or stderr's `%Q`.
    pub prefix: PrefixFields,
    /// `LOG`, `ERROR`, `FATAL`, `PANIC`, `WARNING`, ... as printed
    /// (untranslated English assumed: `lc_messages = 'C'`).
    pub severity: String,
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
    reader: Box<dyn Reader>,
}

/// What each format's reader does; [`Parser`] says what it means.
trait Reader: std::fmt::Debug + Send {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<LogRecord>);
    fn finish(&mut self, out: &mut Vec<LogRecord>);
    fn pending_bytes(&self) -> usize;
    fn consumed(&self) -> u64;
}

impl Parser {
    /// A parser for one file's bytes from its start (or from an offset a
    /// previous parser's [`Parser::consumed`] gave). The prefix is only used
    /// for [`Format::Stderr`].
    pub fn new(format: Format, log_line_prefix: &str) -> Parser {
        let reader: Box<dyn Reader> = match format {
            Format::Stderr => Box::new(stderr::StderrReader::new(Prefix::parse(log_line_prefix))),
            Format::Csv => Box::<csv::CsvReader>::default(),
            Format::Json => Box::<json::JsonReader>::default(),
        };
        Parser { reader }
    }

    /// Feeds the next bytes; returns the records known to be complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<LogRecord> {
        let mut out = Vec::new();
        self.reader.push(bytes, &mut out);
        out
    }

    /// End of file (or rotation): takes the pending record, treating a last
    /// line without its newline as complete. The parser is then empty;
    /// bytes fed afterwards are counted on from where it stopped.
    pub fn finish(&mut self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        self.reader.finish(&mut out);
        out
    }

    /// Bytes held in memory for records not yet emitted (never more than a
    /// small multiple of [`MAX_RECORD_BYTES`], however long a line is).
    pub fn pending_bytes(&self) -> usize {
        self.reader.pending_bytes()
    }

    /// How many of the bytes fed so far belong to records already emitted
    /// (or to lines skipped as noise): a new parser fed the input from this
    /// offset on yields exactly the records this one has not emitted yet.
    /// For stderr, the last record is only known complete when the next
    /// one's first line has been read whole, so this lags one record behind
    /// until [`Parser::finish`].
    pub fn consumed(&self) -> u64 {
        self.reader.consumed()
    }
}

/// What csvlog and jsonlog carry that a record keeps, whatever its name or
/// place in the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Timestamp,
    User,
    Database,
    Pid,
    RemoteHost,
    SessionId,
    SessionLine,
    Severity,
    SqlState,
    Message,
    Detail,
    Hint,
    Context,
    Statement,
    Application,
    QueryId,
}

impl LogRecord {
    /// A csvlog or jsonlog record from the text of its columns (`None`:
    /// absent; a remote host without its port).
    fn from_columns(text: impl Fn(Column) -> Option<String>, truncated: bool) -> LogRecord {
        let name = |column| text(column).as_deref().and_then(prefix::name_value);
        let optional = |column| text(column).filter(|t| !t.is_empty());
        let number = |column| text(column).map(|t| t.trim().to_string());
        LogRecord {
            prefix: PrefixFields {
                timestamp: text(Column::Timestamp)
                    .as_deref()
                    .and_then(prefix::parse_timestamp),
                pid: number(Column::Pid).and_then(|t| t.parse().ok()),
                user: name(Column::User),
                database: name(Column::Database),
                application: name(Column::Application),
                remote_host: name(Column::RemoteHost),
                session_id: optional(Column::SessionId),
                session_line: number(Column::SessionLine).and_then(|t| t.parse().ok()),
                sqlstate: optional(Column::SqlState),
                // 0: not computed.
                query_id: number(Column::QueryId)
                    .and_then(|t| t.parse::<i64>().ok())
                    .filter(|id| *id != 0),
            },
            severity: text(Column::Severity).unwrap_or_default(),
            message: text(Column::Message).unwrap_or_default(),
            detail: optional(Column::Detail),
            hint: optional(Column::Hint),
            context: optional(Column::Context),
            statement: optional(Column::Statement),
            truncated,
        }
    }

    /// Bytes of text the record holds, for [`Parser::pending_bytes`].
    fn held_bytes(&self) -> usize {
        let p = &self.prefix;
        let optional = [
            &p.user,
            &p.database,
            &p.application,
            &p.remote_host,
            &p.session_id,
            &p.sqlstate,
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
