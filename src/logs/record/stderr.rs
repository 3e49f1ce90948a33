//! stderr (and the logging collector's `.log` files): a record is its first
//! line (`log_line_prefix`, then `LOG:  `, `ERROR:  `, ...), the lines after
//! it that start with a tab (the message went on over several lines), and the
//! `DETAIL:`/`HINT:`/`CONTEXT:`/`STATEMENT:`/`QUERY:`/`LOCATION:` lines of the
//! same process. It is complete only once the next record's first line has
//! been read whole, or at the end of the file. Lines that match no prefix
//! (archive_command output, a crashed child's stderr) are skipped and never
//! break the records around them.
//!
//! Not for: matching the prefix itself ([`crate::logs::prefix`]).

use super::lines::{Budget, Line, Lines};
use super::{LogRecord, Reader};
use crate::logs::prefix::{self, Label, Prefix, PrefixFields};

/// The stderr reader: lines in, records out.
#[derive(Debug)]
pub(super) struct StderrReader {
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
    pub fn new(prefix: Prefix) -> Self {
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
}

impl Reader for StderrReader {
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
        state.consumed = self.lines.fed();
    }

    fn pending_bytes(&self) -> usize {
        self.lines.pending_bytes()
            + self
                .state
                .pending
                .as_ref()
                .map_or(0, |p| p.record.held_bytes())
    }

    fn consumed(&self) -> u64 {
        self.state.consumed
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
                prefix: fields,
                severity: severity.to_string(),
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
            Some(pending) if same_process(&pending.record.prefix, fields) => {
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
fn same_process(record: &PrefixFields, fields: &PrefixFields) -> bool {
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
        self.append(text, cut, |field| !field.is_empty());
    }

    /// A tab-continued line: the current field goes on.
    fn append_line(&mut self, text: &str, cut: bool) {
        self.append(text, cut, |_| true);
    }

    /// Appends to the current field within the record's budget, on a new
    /// line when `new_line` says so of what the field holds.
    fn append(&mut self, text: &str, cut: bool, new_line: impl Fn(&str) -> bool) {
        let mut budget = std::mem::take(&mut self.budget);
        let mut kept = true;
        if let Some(field) = self.field(self.target) {
            if new_line(field) {
                kept &= budget.append(field, "\n");
            }
            kept &= budget.append(field, text);
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
        record.prefix.sqlstate.get_or_insert(code);
    }
}
