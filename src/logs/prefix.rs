//! `log_line_prefix`, compiled, and matched against the start of stderr log
//! lines; also the timestamp formats PostgreSQL prints (`%m`, `%t`, `%n`, the
//! csvlog/jsonlog `log_time`).
//!
//! Pure: no I/O, no clock. Not for: assembling multi-line records (that is
//! [`crate::logs::record`]) nor deciding what a message means
//! ([`crate::logs::event`]).
//!
//! Matching is a small backtracking matcher over the compiled escapes. Typed
//! escapes (`%m %t %n %s %p %l %x %e %c %Q`) match their own shape; free-text
//! ones (`%u %d %a %h %r %i %b %v %P` and unknown escapes) match anything up to
//! what follows, shortest first, backtracking when the rest fails. A line
//! matches only when what follows the prefix is a severity label
//! (`LOG:  `, `DETAIL:  `, ...): that anchor is what lets an application name
//! with spaces, or an empty user name, still match. Work per line is bounded
//! (the prefix must end within [`PREFIX_SEARCH_LIMIT`] bytes, and the matcher
//! gives up after a fixed number of steps), so no line can make it slow.

/// The prefix part of a line must end within this many bytes; nothing
/// PostgreSQL prints in a prefix comes close (names are at most 63 bytes).
pub const PREFIX_SEARCH_LIMIT: usize = 8192;

/// Longest value kept for one prefix field; longer ones are cut.
const FIELD_CAP: usize = 1024;

/// Matcher steps allowed per line before giving up on it.
const STEP_BUDGET: u32 = 20_000;

/// The severities PostgreSQL prints first on a line (`error_severity()`).
const MAIN_LABELS: [&str; 8] = [
    "LOG", "ERROR", "WARNING", "FATAL", "PANIC", "INFO", "NOTICE", "DEBUG",
];

/// The labels of the lines PostgreSQL adds to a message, each with its own prefix.
const ATTACHED_LABELS: [&str; 7] = [
    "DETAIL",
    "HINT",
    "CONTEXT",
    "STATEMENT",
    "QUERY",
    "LOCATION",
    "BACKTRACE",
];

/// log_line_prefix, compiled: literal text and escapes (`%m %t %n %p %u %d %a
/// %h %r %c %l %e %s %v %x %q %i %b %Q %P %%`, with optional padding like
/// `%-10u`; any other `%X` matches anything up to what follows).
#[derive(Debug, Clone, PartialEq)]
pub struct Prefix {
    items: Vec<Item>,
}

/// The fields a prefix carried. Fields the prefix has no escape for, or that
/// PostgreSQL printed empty or as `[unknown]`, are `None`. A
/// [`LogRecord`](crate::logs::record::LogRecord) holds them whatever its
/// format: csvlog and jsonlog have them as columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrefixFields {
    /// `%m`, `%t` or `%n`, as Unix seconds; `None` for an unknown zone abbreviation.
    pub timestamp: Option<f64>,
    /// `%p`.
    pub pid: Option<u32>,
    /// `%u`.
    pub user: Option<String>,
    /// `%d`.
    pub database: Option<String>,
    /// `%a`.
    pub application: Option<String>,
    /// `%h`, or the host part of `%r`.
    pub remote_host: Option<String>,
    /// `%c`.
    pub session_id: Option<String>,
    /// `%l`: note that PostgreSQL counts every printed line, DETAIL lines included.
    pub session_line: Option<u64>,
    /// `%e`.
    pub sqlstate: Option<String>,
    /// `%Q` (14+); `None` when 0 (not computed).
    pub query_id: Option<i64>,
}

/// What a severity label says about its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    /// A new message: `LOG`, `ERROR`, ...
    Main(&'static str),
    /// A line belonging to the message before it: `DETAIL`, `STATEMENT`, ...
    Attached(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Timestamp,
    TimestampSeconds,
    Epoch,
    SessionStart,
    Pid,
    LeaderPid,
    LineNumber,
    Xid,
    SqlState,
    SessionId,
    QueryId,
    User,
    Database,
    Application,
    Host,
    HostPort,
    Vxid,
    Tag,
    BackendType,
    Other,
}

const KIND_COUNT: usize = Kind::Other as usize + 1;

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Literal(String),
    Field {
        kind: Kind,
        padded: bool,
    },
    /// `%q`: background processes stop printing here.
    StopIfBackground,
}

/// Byte ranges of the matched fields, by [`Kind`]; copied on each branch so
/// a failed branch leaves nothing behind.
type Spans = [Option<(usize, usize)>; KIND_COUNT];

impl Prefix {
    /// Compiles a `log_line_prefix` value (as `SHOW log_line_prefix` prints it).
    /// Never fails: unknown escapes become wildcards, a lone trailing `%` is
    /// ignored, like PostgreSQL does.
    pub fn parse(log_line_prefix: &str) -> Prefix {
        let mut items = Vec::new();
        let mut literal = String::new();
        let mut chars = log_line_prefix.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let mut padded = false;
            while let Some(&d) = chars.peek() {
                if d != '-' && !d.is_ascii_digit() {
                    break;
                }
                padded = true;
                chars.next();
            }
            let Some(escape) = chars.next() else { break };
            if escape == '%' {
                literal.push('%');
                continue;
            }
            if !literal.is_empty() {
                items.push(Item::Literal(std::mem::take(&mut literal)));
            }
            items.push(match escape {
                'q' => Item::StopIfBackground,
                other => Item::Field {
                    kind: kind_of(other),
                    padded,
                },
            });
        }
        if !literal.is_empty() {
            items.push(Item::Literal(literal));
        }
        Prefix { items }
    }

    /// Matches the start of a stderr line; returns the fields and the rest
    /// (`"LOG:  duration: ..."`), which always starts with a severity label.
    /// `None` when the line does not start with this prefix followed by a
    /// label (output of other programs, continuation lines, garbage).
    pub fn match_line<'a>(&self, line: &'a str) -> Option<(PrefixFields, &'a str)> {
        let mut budget = STEP_BUDGET;
        let (spans, end) = self.match_from(line, 0, 0, [None; KIND_COUNT], &mut budget)?;
        Some((fields_from(line, &spans), line.get(end..)?))
    }

    fn match_from(
        &self,
        line: &str,
        index: usize,
        pos: usize,
        spans: Spans,
        budget: &mut u32,
    ) -> Option<(Spans, usize)> {
        *budget = budget.checked_sub(1)?;
        let rest = line.get(pos..)?;
        let Some(item) = self.items.get(index) else {
            return label(rest).map(|_| (spans, pos));
        };
        match item {
            Item::Literal(text) => {
                if rest.starts_with(text.as_str()) {
                    self.match_from(line, index + 1, pos + text.len(), spans, budget)
                } else {
                    None
                }
            }
            // A label right here means a background process stopped at %q;
            // session lines go on with the user name etc.
            Item::StopIfBackground => match label(rest) {
                Some(_) => Some((spans, pos)),
                None => self.match_from(line, index + 1, pos, spans, budget),
            },
            Item::Field { kind, padded } => {
                if !*padded && let Some(len) = typed_extent(*kind, rest) {
                    let mut spans = spans;
                    spans[*kind as usize] = Some((pos, pos + len));
                    return self.match_from(line, index + 1, pos + len, spans, budget);
                }
                if is_typed(*kind) && !*padded {
                    return None;
                }
                self.match_wildcard(line, index, pos, *kind, spans, budget)
            }
        }
    }

    /// Tries every end for a free-text field, shortest first. When a literal
    /// follows, only the places where it occurs are candidates.
    fn match_wildcard(
        &self,
        line: &str,
        index: usize,
        pos: usize,
        kind: Kind,
        spans: Spans,
        budget: &mut u32,
    ) -> Option<(Spans, usize)> {
        let limit = line.len().min(PREFIX_SEARCH_LIMIT);
        let next_literal = match self.items.get(index + 1) {
            Some(Item::Literal(text)) => text.as_bytes(),
            _ => &[],
        };
        let mut from = pos;
        while from <= limit {
            let end = from + find_bytes(line.as_bytes().get(from..)?, next_literal, limit - from)?;
            *budget = budget.checked_sub(1)?;
            if let Some(value) = line.get(pos..end)
                && wildcard_accepts(kind, value.trim_matches(' '))
            {
                let mut spans = spans;
                spans[kind as usize] = Some(trimmed_span(line, pos, end));
                if let Some(found) = self.match_from(line, index + 1, end, spans, budget) {
                    return Some(found);
                }
            }
            from = end + 1;
        }
        None
    }
}

/// Where `needle` first occurs in `hay` at an offset of at most `max`
/// (an empty needle occurs at 0).
fn find_bytes(hay: &[u8], needle: &[u8], max: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let window = hay.get(..(max + needle.len()).min(hay.len()))?;
    window.windows(needle.len()).position(|w| w == needle)
}

/// Splits the severity label off the rest of a line: `("LOG", "message")`.
/// PostgreSQL writes `LABEL:` and two spaces; one space or none (an empty
/// message at the end of the line) is accepted too.
pub(crate) fn label(rest: &str) -> Option<(Label, &str)> {
    // The longest label is 9 bytes: look no further for the colon.
    let colon = rest.bytes().take(10).position(|b| b == b':')?;
    let (word, after) = (rest.get(..colon)?, rest.get(colon + 1..)?);
    let found = MAIN_LABELS
        .iter()
        .find(|l| **l == word)
        .map(|l| Label::Main(l))
        .or_else(|| {
            ATTACHED_LABELS
                .iter()
                .find(|l| **l == word)
                .map(|l| Label::Attached(l))
        })?;
    let message = after
        .strip_prefix("  ")
        .or_else(|| after.strip_prefix(' '))
        .unwrap_or(after);
    if message.len() == after.len() && !after.is_empty() {
        return None;
    }
    Some((found, message))
}

fn kind_of(escape: char) -> Kind {
    match escape {
        'm' => Kind::Timestamp,
        't' => Kind::TimestampSeconds,
        'n' => Kind::Epoch,
        's' => Kind::SessionStart,
        'p' => Kind::Pid,
        'P' => Kind::LeaderPid,
        'l' => Kind::LineNumber,
        'x' => Kind::Xid,
        'e' => Kind::SqlState,
        'c' => Kind::SessionId,
        'Q' => Kind::QueryId,
        'u' => Kind::User,
        'd' => Kind::Database,
        'a' => Kind::Application,
        'h' => Kind::Host,
        'r' => Kind::HostPort,
        'v' => Kind::Vxid,
        'i' => Kind::Tag,
        'b' => Kind::BackendType,
        _ => Kind::Other,
    }
}

/// Kinds whose unpadded text has one shape, so their extent needs no search.
fn is_typed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Timestamp
            | Kind::TimestampSeconds
            | Kind::Epoch
            | Kind::SessionStart
            | Kind::Pid
            | Kind::LineNumber
            | Kind::Xid
            | Kind::SqlState
            | Kind::SessionId
            | Kind::QueryId
    )
}

/// The length of a typed field at the start of `text`, or `None` if it is
/// not there (or the kind is free text).
fn typed_extent(kind: Kind, text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    match kind {
        Kind::Timestamp => timestamp_extent(bytes, true),
        Kind::TimestampSeconds | Kind::SessionStart => timestamp_extent(bytes, false),
        Kind::Epoch => {
            let whole = digits(bytes);
            (whole > 0 && bytes.get(whole) == Some(&b'.'))
                .then(|| whole + 1 + digits(&bytes[whole + 1..]))
        }
        Kind::Pid | Kind::LineNumber | Kind::Xid => Some(digits(bytes)).filter(|n| *n > 0),
        Kind::QueryId => {
            let sign = usize::from(bytes.first() == Some(&b'-'));
            let n = digits(&bytes[sign..]);
            (n > 0).then_some(sign + n)
        }
        Kind::SqlState => {
            (bytes.len() >= 5 && bytes[..5].iter().all(is_sqlstate_char)).then_some(5)
        }
        Kind::SessionId => {
            let first = hex_digits(bytes);
            (first > 0 && bytes.get(first) == Some(&b'.'))
                .then(|| first + 1 + hex_digits(&bytes[first + 1..]))
                .filter(|n| *n > first + 1)
        }
        _ => None,
    }
}

/// Whether a free-text (or padded) field may hold `value`.
fn wildcard_accepts(kind: Kind, value: &str) -> bool {
    if value.len() > PREFIX_SEARCH_LIMIT {
        return false;
    }
    match kind {
        Kind::LeaderPid => value.bytes().all(|b| b.is_ascii_digit()),
        Kind::Vxid => value
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'/' || b == b'-'),
        // Host names and addresses have no spaces: this keeps an application
        // name with spaces from being split at the wrong place.
        Kind::Host | Kind::HostPort => !value.contains(' '),
        _ if is_typed(kind) => typed_extent(kind, value) == Some(value.len()),
        _ => true,
    }
}

/// The span without the spaces padding adds on either side.
fn trimmed_span(line: &str, start: usize, end: usize) -> (usize, usize) {
    let value = &line.as_bytes()[start..end];
    let lead = value.iter().take_while(|b| **b == b' ').count();
    let trail = value[lead..]
        .iter()
        .rev()
        .take_while(|b| **b == b' ')
        .count();
    (start + lead, end - trail)
}

fn digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn hex_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_hexdigit()).count()
}

fn is_sqlstate_char(b: &u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_uppercase()
}

/// `YYYY-MM-DD HH:MM:SS[.mmm] ZONE`: the length of that shape at the start.
fn timestamp_extent(bytes: &[u8], millis: bool) -> Option<usize> {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd:dd";
    if bytes.len() < SHAPE.len() {
        return None;
    }
    let fits = SHAPE.iter().zip(bytes).all(|(s, b)| match s {
        b'd' => b.is_ascii_digit(),
        other => other == b,
    });
    if !fits {
        return None;
    }
    let mut len = SHAPE.len();
    if millis {
        if bytes.get(len) != Some(&b'.') {
            return None;
        }
        let n = digits(&bytes[len + 1..]);
        if n == 0 {
            return None;
        }
        len += 1 + n;
    }
    if bytes.get(len) != Some(&b' ') {
        return None;
    }
    let zone = bytes[len + 1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'+' || **b == b'-')
        .count();
    (zone > 0).then_some(len + 1 + zone)
}

fn fields_from(line: &str, spans: &Spans) -> PrefixFields {
    let text = |kind: Kind| -> Option<&str> {
        let (start, end) = spans[kind as usize]?;
        line.get(start..end)
    };
    let name = |kind: Kind| text(kind).and_then(name_value);
    let timestamp = text(Kind::Timestamp)
        .or_else(|| text(Kind::TimestampSeconds))
        .and_then(parse_timestamp)
        .or_else(|| text(Kind::Epoch).and_then(|t| t.parse::<f64>().ok()));
    let remote_host = name(Kind::Host).or_else(|| text(Kind::HostPort).and_then(host_of_host_port));
    PrefixFields {
        timestamp,
        pid: text(Kind::Pid).and_then(|t| t.parse().ok()),
        user: name(Kind::User),
        database: name(Kind::Database),
        application: name(Kind::Application),
        remote_host,
        session_id: text(Kind::SessionId).map(str::to_string),
        session_line: text(Kind::LineNumber).and_then(|t| t.parse().ok()),
        sqlstate: text(Kind::SqlState).map(str::to_string),
        query_id: text(Kind::QueryId)
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|id| *id != 0),
    }
}

/// A name field as PostgreSQL prints it: empty or `[unknown]` mean none.
pub(crate) fn name_value(text: &str) -> Option<String> {
    if text.is_empty() || text == "[unknown]" {
        return None;
    }
    Some(cut_to(text, FIELD_CAP).to_string())
}

/// `%r` prints `host(port)`, or `[local]`: keep the host.
fn host_of_host_port(text: &str) -> Option<String> {
    let host = match text.strip_suffix(')').and_then(|t| t.rsplit_once('(')) {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => text,
    };
    name_value(host)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub(crate) fn cut_to(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff] ZONE` (`%m`, `%t`, `%s`, csvlog and
/// jsonlog times) into Unix seconds. `None` for an unknown or ambiguous zone
/// abbreviation, or anything malformed.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let (date_time, zone) = text.rsplit_once(' ')?;
    let (date, time) = date_time.split_once(' ')?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let mut clock_parts = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (
        clock_parts.next()??,
        clock_parts.next()??,
        clock_parts.next()??,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    if !(1..=99_999).contains(&year) {
        return None;
    }
    let fraction = match fraction {
        Some(f) => parse_fraction(f)?,
        None => 0.0,
    };
    let offset = zone_offset_seconds(zone)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset;
    Some(seconds as f64 + fraction)
}

/// `"058"` -> 0.058; up to 9 digits.
fn parse_fraction(digits: &str) -> Option<f64> {
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = digits.parse::<u32>().ok()?;
    Some(f64::from(value) / 10f64.powi(digits.len() as i32))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The UTC offset of a zone as `strftime("%Z")` prints it for `log_timezone`:
/// a numeric abbreviation (`+01`, `-0330`, `+05:45`) or a letter one. Only
/// abbreviations that mean one offset everywhere are known: `CST` (US
/// central or China) and `IST` (India, Ireland or Israel) are not.
fn zone_offset_seconds(zone: &str) -> Option<i64> {
    if let Some(sign) = zone.chars().next().filter(|c| *c == '+' || *c == '-') {
        let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (hours, minutes) = match digits.len() {
            1 | 2 => (digits.parse::<i64>().ok()?, 0),
            4 => (
                digits[..2].parse::<i64>().ok()?,
                digits[2..].parse::<i64>().ok()?,
            ),
            _ => return None,
        };
        let seconds = hours * 3600 + minutes * 60;
        return Some(if sign == '-' { -seconds } else { seconds });
    }
    let hours_and_minutes: (i64, i64) = match zone {
        "UTC" | "GMT" | "UT" | "Z" | "WET" => (0, 0),
        "CET" | "WEST" | "BST" | "WAT" => (1, 0),
        "CEST" | "EET" | "SAST" | "CAT" => (2, 0),
        "EEST" | "MSK" | "EAT" => (3, 0),
        "PKT" => (5, 0),
        "WIB" => (7, 0),
        "HKT" | "AWST" | "WITA" => (8, 0),
        "JST" | "KST" | "WIT" => (9, 0),
        "ACST" => (9, 30),
        "AEST" | "ChST" => (10, 0),
        "ACDT" => (10, 30),
        "AEDT" => (11, 0),
        "NZST" => (12, 0),
        "NZDT" => (13, 0),
        "NST" => (-3, -30),
        "NDT" => (-2, -30),
        "ADT" => (-3, 0),
        "AST" | "EDT" => (-4, 0),
        "EST" | "CDT" => (-5, 0),
        "MDT" => (-6, 0),
        "MST" | "PDT" => (-7, 0),
        "PST" | "AKDT" => (-8, 0),
        "AKST" => (-9, 0),
        "HST" => (-10, 0),
        _ => return None,
    };
    let (hours, minutes) = hours_and_minutes;
    Some(hours * 3600 + minutes * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "%m [%p] ";
    const DEBIAN: &str = "%m [%p] %q%u@%d ";
    const RICH: &str = "%m [%p] %q%u@%d/%a %h %c:%l %e ";

    /// 2026-11-28 02:49:25.058 UTC
    const T_2026_11_28_024925_058: f64 = 1_795_834_165.058;

    fn fields(prefix: &str, line: &str) -> Option<(PrefixFields, String)> {
        Prefix::parse(prefix)
            .match_line(line)
            .map(|(f, rest)| (f, rest.to_string()))
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-6)
    }

    #[test]
    fn default_prefix_from_pg13_to_18() {
        let (f, rest) = fields(
            DEFAULT,
            "2026-11-28 02:49:25.058 UTC [20562] LOG:  starting PostgreSQL 15.18",
        )
        .unwrap();
        assert!(
            close(f.timestamp, T_2026_11_28_024925_058),
            "{:?}",
            f.timestamp
        );
        assert_eq!(f.pid, Some(20562));
        assert_eq!(f.user, None);
        assert_eq!(rest, "LOG:  starting PostgreSQL 15.18");
    }

    #[test]
    fn debian_prefix_session_and_background_lines() {
        let cases: &[(&str, Option<&str>, Option<&str>, &str)] = &[
            (
                "2026-11-28 02:49:57.837 UTC [21075] postgres@postgres DETAIL:  parameters: $1 = '42'",
                Some("postgres"),
                Some("postgres"),
                "DETAIL:  parameters: $1 = '42'",
            ),
            // %q: background processes print nothing after it.
            (
                "2026-11-28 02:49:58.387 UTC [21062] LOG:  archive command failed with exit code 1",
                None,
                None,
                "LOG:  archive command failed with exit code 1",
            ),
            // A backend before authentication prints [unknown].
            (
                "2026-11-28 02:49:58.387 UTC [21062] [unknown]@[unknown] LOG:  connection received: host=[local]",
                None,
                None,
                "LOG:  connection received: host=[local]",
            ),
            // Empty user and database.
            (
                "2026-11-28 02:49:58.387 UTC [21062] @ LOG:  x",
                None,
                None,
                "LOG:  x",
            ),
            // A user name with a space and an @ in the database name.
            (
                "2026-11-28 02:49:58.387 UTC [7] big boss@db@x ERROR:  boom",
                Some("big boss"),
                Some("db@x"),
                "ERROR:  boom",
            ),
        ];
        for (line, user, database, rest) in cases {
            let (f, r) = fields(DEBIAN, line).unwrap_or_else(|| panic!("no match: {line}"));
            assert_eq!(f.user.as_deref(), *user, "{line}");
            assert_eq!(f.database.as_deref(), *database, "{line}");
            assert_eq!(r, *rest, "{line}");
            assert!(f.pid.is_some());
        }
    }

    #[test]
    fn rich_prefix() {
        let line = "2026-11-28 02:50:09.376 UTC [21300] postgres@postgres/pgbench [local] 6b0a4161.5334:5 00000 DETAIL:  parameters: $1 = '42'";
        let (f, rest) = fields(RICH, line).unwrap();
        assert_eq!(
            f,
            PrefixFields {
                timestamp: f.timestamp,
                pid: Some(21300),
                user: Some("postgres".into()),
                database: Some("postgres".into()),
                application: Some("pgbench".into()),
                remote_host: Some("[local]".into()),
                session_id: Some("6b0a4161.5334".into()),
                session_line: Some(5),
                sqlstate: Some("00000".into()),
                query_id: None,
            }
        );
        assert_eq!(rest, "DETAIL:  parameters: $1 = '42'");
        // An application name with spaces still matches: the rest must be a label.
        let line = "2026-11-28 02:50:09.376 UTC [1] u@d/pgAdmin 4 - DB:x 10.0.0.1 6b0a4161.5334:5 28P01 FATAL:  password authentication failed for user \"u\"";
        let (f, rest) = fields(RICH, line).unwrap();
        assert_eq!(f.application.as_deref(), Some("pgAdmin 4 - DB:x"));
        assert_eq!(f.remote_host.as_deref(), Some("10.0.0.1"));
        assert_eq!(f.sqlstate.as_deref(), Some("28P01"));
        assert!(rest.starts_with("FATAL:  password"));
        // Background process: stops at %q.
        let (f, rest) = fields(
            RICH,
            "2026-11-28 02:50:09.376 UTC [21288] LOG:  checkpoint starting: time",
        )
        .unwrap();
        assert_eq!((f.pid, f.user, f.session_id), (Some(21288), None, None));
        assert_eq!(rest, "LOG:  checkpoint starting: time");
    }

    #[test]
    fn other_prefixes_from_the_fixtures() {
        // 16: %n (epoch) and %b (backend type, with a space).
        let (f, rest) = fields(
            "%n [%p] %q%u@%d %b ",
            "1795834221.029 [21562] postgres@postgres client backend DETAIL:  parameters: $1 = '42'",
        )
        .unwrap();
        assert!(close(f.timestamp, 1_795_834_221.029));
        assert_eq!(f.user.as_deref(), Some("postgres"));
        assert_eq!(rest, "DETAIL:  parameters: $1 = '42'");
        // 17: %t in CET, pgBadger style, empty fields for background processes.
        let p17 = "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%r ";
        let (f, _) = fields(
            p17,
            "2026-11-28 03:50:32 CET [21904]: [5-1] user=alice,db=postgres,app=fixture-app,client=127.0.0.1(60116) LOG:  duration: 1.461 ms",
        )
        .unwrap();
        // 03:50:32 CET is 02:50:32 UTC.
        assert!(close(f.timestamp, 1_795_834_232.0), "{:?}", f.timestamp);
        assert_eq!(f.remote_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(f.session_line, Some(5));
        let (f, _) = fields(
            p17,
            "2026-11-28 03:50:32 CET [21893]: [3-1] user=,db=,app=,client= LOG:  starting",
        )
        .unwrap();
        assert_eq!(
            (f.user, f.database, f.application, f.remote_host),
            (None, None, None, None)
        );
        // 18: +0545 zone, %e and %Q.
        let (f, rest) = fields(
            "%m [%p] %q%u@%d %e %Q ",
            "2026-11-28 08:35:46.572 +0545 [22587] postgres@postgres 00000 7211248357539099272 DETAIL:  Parameters: $1 = '42'",
        )
        .unwrap();
        assert!(close(f.timestamp, 1_795_834_246.572), "{:?}", f.timestamp);
        assert_eq!(f.query_id, Some(7_211_248_357_539_099_272));
        assert_eq!(rest, "DETAIL:  Parameters: $1 = '42'");
    }

    #[test]
    fn padding_literal_percent_and_unknown_escapes() {
        let (f, rest) = fields("%-10u|%5p%% %Z ", "bob       |   42% whatever LOG:  hi").unwrap();
        assert_eq!(f.user.as_deref(), Some("bob"));
        assert_eq!(f.pid, Some(42));
        assert_eq!(rest, "LOG:  hi");
        // Empty prefix: the label alone.
        assert_eq!(fields("", "WARNING:  x").unwrap().1, "WARNING:  x");
        // A trailing lone % is ignored, like PostgreSQL does.
        assert!(fields("%p %", "12 LOG:  x").is_some());
    }

    #[test]
    fn lines_that_are_not_log_lines() {
        for line in [
            "archive helper: cannot copy 000000010000000000000001 (fixture)",
            "\t  \"Plan\": {",
            "",
            "2026-11-28 02:49:25.058 UTC [20562] NOTALABEL:  x",
            "2026-11-28 02:49:25.058 UTC [x] LOG:  x",
            "2026-11-28 02:49:25.058 UTC [20562] LOG:x",
        ] {
            assert!(fields(DEFAULT, line).is_none(), "{line}");
            assert!(fields(RICH, line).is_none(), "{line}");
        }
    }

    #[test]
    fn time_zones() {
        let cases: &[(&str, Option<f64>)] = &[
            ("2026-11-28 02:49:25.058 UTC", Some(T_2026_11_28_024925_058)),
            ("2026-11-28 02:49:25.058 GMT", Some(T_2026_11_28_024925_058)),
            ("2026-11-28 03:49:25.058 +01", Some(T_2026_11_28_024925_058)),
            ("2026-11-28 03:49:25.058 CET", Some(T_2026_11_28_024925_058)),
            ("2026-11-27 21:49:25.058 EST", Some(T_2026_11_28_024925_058)),
            (
                "2026-11-28 08:34:25.058 +0545",
                Some(T_2026_11_28_024925_058),
            ),
            (
                "2026-11-28 08:34:25.058 +05:45",
                Some(T_2026_11_28_024925_058),
            ),
            (
                "2026-11-27 23:19:25.058 -0330",
                Some(T_2026_11_28_024925_058),
            ),
            ("2026-11-28 02:49:25 UTC", Some(1_795_834_165.0)),
            ("1970-01-01 00:00:00 UTC", Some(0.0)),
            ("2000-02-29 12:00:00 UTC", Some(951_825_600.0)),
            ("2026-11-28 02:49:25.058 CST", None),
            ("2026-11-28 02:49:25.058 XYZT", None),
            ("2026-13-28 02:49:25.058 UTC", None),
            ("2026-11-28 02:49:25. UTC", None),
            ("garbage", None),
        ];
        for (text, want) in cases {
            let got = parse_timestamp(text);
            match want {
                Some(w) => assert!(close(got, *w), "{text}: {got:?}"),
                None => assert_eq!(got, None, "{text}"),
            }
        }
        // An unknown abbreviation keeps the line, without a timestamp.
        let (f, rest) = fields(DEFAULT, "2026-11-28 02:49:25.058 XYZT [1] LOG:  x").unwrap();
        assert_eq!((f.timestamp, f.pid), (None, Some(1)));
        assert_eq!(rest, "LOG:  x");
    }

    #[test]
    fn labels() {
        assert_eq!(label("LOG:  x"), Some((Label::Main("LOG"), "x")));
        assert_eq!(
            label("DETAIL:  a: b"),
            Some((Label::Attached("DETAIL"), "a: b"))
        );
        assert_eq!(label("ERROR:"), Some((Label::Main("ERROR"), "")));
        assert_eq!(label("LOG:x"), None);
        assert_eq!(label("log:  x"), None);
    }

    #[test]
    fn pathological_lines_are_cheap() {
        // Many wildcards and a line full of their delimiters: bounded work.
        let prefix = Prefix::parse("%u %d %a %h %i %b %v ");
        let line = "a ".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(prefix.match_line(&line).is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
