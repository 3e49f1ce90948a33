//! Which `duration:` lines of the server log are executions, and the
//! `log_min_duration_statement` each one is judged by.
//!
//! The log is the source of exact tail quantiles only if it holds every
//! execution slower than a known threshold, each once. PostgreSQL logs more
//! than that under the same `duration: N ms` prefix:
//! - the extended protocol times each message: `parse <name>:` and
//!   `bind <name>:` (where planning happens) are not executions, only
//!   `execute <name>:` is;
//! - a portal read in batches (a fetch size, as JDBC uses) logs its first
//!   Execute as `execute <name>:` and each later one as
//!   `execute fetch from <name>:`. The execution counts once, at its
//!   `execute` line, with that line's duration: the time to its first
//!   batch. Later batches are not added, because only the batches that were
//!   themselves over the threshold are logged; the sum of some of them is
//!   neither the first batch's time nor the whole execution's (which is what
//!   pg_stat_statements counts). A statement seen fetched in batches
//!   therefore has no exact tail for the interval (its logged times are
//!   lower bounds);
//! - `log_min_duration_sample` with `log_statement_sample_rate`, and
//!   `log_transaction_sample_rate`, log executions under the threshold with
//!   the same text, and `log_duration` logs bare `duration:` lines. Only a
//!   duration at or over the threshold in force for the line's database and
//!   role is a slow execution. PostgreSQL compares whole milliseconds
//!   (`secs * 1000 + msecs >= log_min_duration_statement`), and so does
//!   [`Thresholds::judge`].
//!
//! The threshold in force for a session is the first of: `ALTER ROLE … IN
//! DATABASE … SET`, `ALTER ROLE … SET`, `ALTER DATABASE … SET`,
//! `ALTER ROLE ALL SET` (all in `pg_db_role_setting`), and the server's own
//! value (postgresql.conf, the command line). A session's own `SET` (or
//! `PGOPTIONS`) cannot be seen from outside.
//!
//! Pure: the `logs` collector reads the settings.
//! Not for: parsing records ([`crate::logs::record`]) nor the other events
//! ([`crate::logs::event`]).

/// What a `duration: … ms  <verb>: <statement>` line timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `statement:`: a simple-protocol query, parse to end.
    Statement,
    /// `execute <name>:`: an execution through the extended protocol (the
    /// first or only Execute of its portal).
    Execute,
    /// `execute fetch from <name>:`: a later batch of a portal read in
    /// batches; part of an execution already counted.
    ExecuteFetch,
    /// `parse <name>:`: parse analysis of an extended-protocol statement.
    Parse,
    /// `bind <name>:`: binding parameters, and planning.
    Bind,
}

impl Kind {
    /// Whether the line stands for one execution.
    pub fn is_execution(self) -> bool {
        matches!(self, Kind::Statement | Kind::Execute)
    }
}

/// Splits `duration: 12.345 ms<rest>` into the milliseconds and the rest.
pub fn split(message: &str) -> Option<(f64, &str)> {
    let (number, rest) = message.strip_prefix("duration: ")?.split_once(" ms")?;
    let ms = number.parse::<f64>().ok().filter(|d| d.is_finite())?;
    Some((ms, rest))
}

/// What the rest of a `duration:` line timed, and the statement text: the
/// text after `  statement: ` or `  <verb> <name>: `. `None` for bare
/// durations (`log_duration`, or the statement logged before by
/// `log_statement`), plans and fast-path function calls.
pub fn timed(rest: &str) -> Option<(Kind, &str)> {
    let rest = rest.strip_prefix("  ")?;
    if let Some(statement) = rest.strip_prefix("statement: ") {
        return Some((Kind::Statement, statement));
    }
    // `execute fetch from` before `execute`: the longer verb first.
    [
        ("execute fetch from ", Kind::ExecuteFetch),
        ("execute ", Kind::Execute),
        ("bind ", Kind::Bind),
        ("parse ", Kind::Parse),
    ]
    .iter()
    .find_map(|(verb, kind)| Some((*kind, rest.strip_prefix(verb)?)))
    .and_then(|(kind, named)| Some((kind, named.split_once(": ")?.1)))
}

/// A `log_min_duration_statement` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// -1: nothing is logged for being slow.
    Off,
    /// Executions of at least this many whole milliseconds are logged.
    Ms(u32),
}

impl Threshold {
    /// In seconds; `None` when off.
    pub fn seconds(self) -> Option<f64> {
        match self {
            Threshold::Off => None,
            Threshold::Ms(ms) => Some(f64::from(ms) / 1000.0),
        }
    }

    /// Whether PostgreSQL logs a duration of `ms` as slow under this
    /// threshold: its whole milliseconds at or over it.
    pub fn logs_as_slow(self, ms: f64) -> bool {
        match self {
            Threshold::Off => false,
            Threshold::Ms(t) => ms.floor() >= f64::from(t),
        }
    }
}

/// Parses a `log_min_duration_statement` value as PostgreSQL does: an
/// integer (decimal, `0x` hex, leading-`0` octal, as `strtol` reads it) or
/// a decimal number, with an optional unit (`us`, `ms`, `s`, `min`, `h`,
/// `d`; milliseconds without one), rounded to whole milliseconds. `None`
/// when it is not such a value (then the threshold is unknown).
pub fn parse_setting(text: &str) -> Option<Threshold> {
    // (unit, milliseconds, the next smaller unit's milliseconds)
    const UNITS: [(&str, f64, f64); 6] = [
        ("us", 0.001, 0.0),
        ("ms", 1.0, 0.001),
        ("min", 60_000.0, 1000.0),
        ("s", 1000.0, 1.0),
        ("h", 3_600_000.0, 60_000.0),
        ("d", 86_400_000.0, 3_600_000.0),
    ];
    let text = text.trim();
    let (number, unit) = UNITS
        .iter()
        .find_map(|u| Some((text.strip_suffix(u.0)?.trim_end(), Some(*u))))
        .unwrap_or((text, None));
    let value = match integer(number) {
        Some(v) => v as f64,
        None if number.contains(['.', 'e', 'E']) => number.parse::<f64>().ok()?,
        None => return None,
    };
    let ms = match unit {
        None => value,
        // To a multiple of the next smaller unit first (`1.0105min` is
        // 61 s, not 60 630 ms), then to whole milliseconds, as `rint`.
        Some((_, factor, smaller)) if smaller > 0.0 => {
            (value * factor / smaller).round_ties_even() * smaller
        }
        Some((_, factor, _)) => value * factor,
    }
    .round_ties_even();
    match ms {
        -1.0 => Some(Threshold::Off),
        ms if (0.0..=f64::from(i32::MAX)).contains(&ms) => Some(Threshold::Ms(ms as u32)),
        _ => None,
    }
}

/// An integer as C's `strtol` with base 0 reads it, all of `text`.
fn integer(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -value } else { value })
}

/// One `log_min_duration_statement` row of `pg_db_role_setting`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The database it applies in; `None`: all.
    pub database: Option<String>,
    /// The role it applies to; `None`: all (`ALTER DATABASE … SET`, or
    /// `ALTER ROLE ALL SET` with no database either).
    pub role: Option<String>,
    /// Its value; `None` when it could not be parsed.
    pub value: Option<Threshold>,
}

/// The thresholds in force on a server, per database and role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    /// The server's own value; `None` when hidden from the agent (its own
    /// session shows a per-role or per-database value, and postgresql.conf
    /// cannot be read through `pg_file_settings`).
    pub server: Option<Threshold>,
    /// The overrides, for roles that can log in and databases that allow
    /// connections.
    pub overrides: Vec<Override>,
    /// The agent's own role: left out of [`Thresholds::instance`], since its
    /// statements are pgvigil's own (a per-role `-1` for the monitoring role
    /// is common and must not make every other role's tail unknown).
    pub own_role: Option<String>,
}

/// How a logged execution compares with the threshold in force for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At or over it: a slow execution.
    Slow,
    /// Under it (sampled, or logged by a session's own `SET`): not slow.
    Under,
    /// The threshold is not known: counted, but not an exact tail.
    Unknown,
}

impl Thresholds {
    fn find(&self, database: Option<&str>, role: Option<&str>) -> Option<&Override> {
        self.overrides
            .iter()
            .find(|o| o.database.as_deref() == database && o.role.as_deref() == role)
    }

    /// The threshold in force for sessions of `role` in `database`; `None`
    /// when it is not known. Without both names (a stderr prefix without
    /// `%u` or `%d`), the one threshold every role shares, if there is one.
    pub fn of(&self, database: Option<&str>, role: Option<&str>) -> Option<Threshold> {
        let (Some(database), Some(role)) = (database, role) else {
            return self.uniform();
        };
        [
            (Some(database), Some(role)),
            (None, Some(role)),
            (Some(database), None),
        ]
        .into_iter()
        .find_map(|(d, r)| self.find(d, r))
        .map_or_else(|| self.base(), |o| o.value)
    }

    /// What applies where no role or database has its own value:
    /// `ALTER ROLE ALL SET`, else the server's.
    fn base(&self) -> Option<Threshold> {
        self.find(None, None).map_or(self.server, |o| o.value)
    }

    /// The values in force for some role other than the agent's own.
    fn in_force(&self) -> impl Iterator<Item = Option<Threshold>> + '_ {
        let own = self.own_role.as_deref();
        let others = self
            .overrides
            .iter()
            .filter(move |o| match (&o.database, &o.role) {
                (_, Some(role)) => Some(role.as_str()) != own,
                // A database's value applies to every role in it.
                (Some(_), None) => true,
                // ALTER ROLE ALL SET: the base itself.
                (None, None) => false,
            })
            .map(|o| o.value);
        std::iter::once(self.base()).chain(others)
    }

    fn uniform(&self) -> Option<Threshold> {
        let mut values = self.in_force();
        let first = values.next()??;
        values.all(|v| v == Some(first)).then_some(first)
    }

    /// One threshold over which the log holds every execution of every
    /// role but the agent's: the highest in force. `None` when some role
    /// or database has logging off or an unknown threshold.
    pub fn instance(&self) -> Option<u32> {
        self.in_force().try_fold(0, |max, v| match v? {
            Threshold::Off => None,
            Threshold::Ms(ms) => Some(max.max(ms)),
        })
    }

    /// Judges an execution of `ms` logged for `role` in `database`.
    pub fn judge(&self, database: Option<&str>, role: Option<&str>, ms: f64) -> Verdict {
        match self.of(database, role) {
            None => Verdict::Unknown,
            Some(t) if t.logs_as_slow(ms) => Verdict::Slow,
            Some(_) => Verdict::Under,
        }
    }
}

#[cfg(test)]
mod tests;
