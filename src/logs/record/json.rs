//! jsonlog (PostgreSQL 15+): one JSON object per line, read with
//! serde_json. Strings are read as bytes and decoded lossily, as in the other
//! formats: a database in `SQL_ASCII` may log text that is not UTF-8.
//!
//! Memory is bounded by the line: it is kept up to
//! [`LINE_CAP`](super::lines::LINE_CAP) bytes. A
//! line cut there (a message longer than a record may hold) is not JSON any
//! more; [`close_cut`] closes the string it was cut in and the object, so the
//! keys before the cut (every key PostgreSQL writes before the message) are
//! still read, and the record is marked truncated. The keys after it
//! (application_name, query_id) are lost with the rest of the line.
//!
//! Not for: deciding what a record means ([`crate::logs::event`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::lines::{Budget, Line, Lines, decode, keep_bytes};
use super::{Column, LogRecord, Reader};

/// The jsonlog keys a record keeps.
const KEYS: [(&str, Column); 16] = [
    ("timestamp", Column::Timestamp),
    ("user", Column::User),
    ("dbname", Column::Database),
    ("pid", Column::Pid),
    ("remote_host", Column::RemoteHost),
    ("session_id", Column::SessionId),
    ("line_num", Column::SessionLine),
    ("error_severity", Column::Severity),
    ("state_code", Column::SqlState),
    ("message", Column::Message),
    ("detail", Column::Detail),
    ("hint", Column::Hint),
    ("context", Column::Context),
    ("statement", Column::Statement),
    ("application_name", Column::Application),
    ("query_id", Column::QueryId),
];

/// Keys PostgreSQL writes as JSON numbers.
const NUMBERS: [Column; 3] = [Column::Pid, Column::SessionLine, Column::QueryId];

/// Keys that hold long text, sharing the record's budget.
const LONG: [Column; 5] = [
    Column::Message,
    Column::Detail,
    Column::Hint,
    Column::Context,
    Column::Statement,
];

/// The jsonlog reader: lines in, a record per line out.
#[derive(Debug, Default)]
pub(super) struct JsonReader {
    lines: Lines,
    consumed: u64,
}

impl Reader for JsonReader {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<LogRecord>) {
        let consumed = &mut self.consumed;
        self.lines.push(bytes, |line| on_line(&line, out, consumed));
    }

    fn finish(&mut self, out: &mut Vec<LogRecord>) {
        let consumed = &mut self.consumed;
        self.lines.flush(|line| on_line(&line, out, consumed));
        self.consumed = self.lines.fed();
    }

    fn pending_bytes(&self) -> usize {
        self.lines.pending_bytes()
    }

    fn consumed(&self) -> u64 {
        self.consumed
    }
}

fn on_line(line: &Line<'_>, out: &mut Vec<LogRecord>, consumed: &mut u64) {
    out.extend(record(line));
    *consumed = line.end;
}

/// A line as a record; `None` when it is not a JSON object with an
/// `error_severity`.
fn record(line: &Line<'_>) -> Option<LogRecord> {
    let mut values = Values::default();
    if parse(line.bytes, &mut values).is_err() {
        let closed = line.cut.then(|| close_cut(line.bytes)).flatten()?;
        values = Values::default();
        parse(&closed, &mut values).ok()?;
    }
    let cut = values.cut || line.cut;
    let text = |column: Column| {
        let slot = KEYS.iter().position(|(_, c)| *c == column)?;
        values.values[slot].as_deref().map(|v| decode(v, cut))
    };
    text(Column::Severity)?;
    let record = LogRecord::from_columns(
        |column| match column {
            // jsonlog leaves out state_code 00000.
            Column::SqlState => text(column)
                .filter(|t| !t.is_empty())
                .or_else(|| Some("00000".to_string())),
            _ => text(column),
        },
        cut,
    );
    Some(record)
}

fn parse(line: &[u8], values: &mut Values) -> serde_json::Result<()> {
    let mut json = serde_json::Deserializer::from_slice(line);
    de::Deserializer::deserialize_map(&mut json, Object(values))?;
    json.end()
}

/// A line cut at [`LINE_CAP`](super::lines::LINE_CAP) with the string it
/// was cut in, and the object, closed (a half escape at the cut dropped);
/// `None` when the cut is not inside a string.
fn close_cut(line: &[u8]) -> Option<Vec<u8>> {
    let (mut in_string, mut whole, mut at) = (false, 0, 0);
    while at < line.len() {
        at += match line[at] {
            b'\\' if in_string && line.get(at + 1) == Some(&b'u') => 6,
            b'\\' if in_string => 2,
            b'"' => {
                in_string = !in_string;
                1
            }
            _ => 1,
        };
        if at <= line.len() {
            whole = at;
        }
    }
    in_string.then(|| [&line[..whole], b"\"}"].concat())
}

/// What one line holds of the kept keys, each within its cap.
#[derive(Debug, Default)]
struct Values {
    values: [Option<Vec<u8>>; KEYS.len()],
    budget: Budget,
    cut: bool,
}

impl Values {
    /// Keeps a value (a repeated key's last), within its cap.
    fn set(&mut self, slot: usize, mut bytes: Cow<'_, [u8]>) {
        if bytes.contains(&0xED) {
            replace_lone_surrogates(bytes.to_mut());
        }
        let long = LONG.contains(&KEYS[slot].1);
        let mut value = Vec::new();
        self.cut |= !keep_bytes(&mut value, &bytes, self.budget.room(long));
        if long {
            self.budget.spend(value.len());
        }
        self.values[slot] = Some(value);
    }
}

/// serde_json reads a lone UTF-16 surrogate (`\ud800` without its other
/// half) into a string's bytes as WTF-8, three bytes that are not UTF-8:
/// each becomes one U+FFFD, of the same length.
fn replace_lone_surrogates(bytes: &mut [u8]) {
    let mut at = 0;
    while at + 3 <= bytes.len() {
        if bytes[at] == 0xED
            && (0xA0..=0xBF).contains(&bytes[at + 1])
            && (0x80..=0xBF).contains(&bytes[at + 2])
        {
            bytes[at..at + 3].copy_from_slice("\u{fffd}".as_bytes());
            at += 3;
        } else {
            at += 1;
        }
    }
}

/// The line's object: kept keys go to [`Values`], others are skipped.
struct Object<'a>(&'a mut Values);

impl<'de> Visitor<'de> for Object<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a jsonlog object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(Key)? {
            match slot {
                Some(slot) => {
                    let number = NUMBERS.contains(&KEYS[slot].1);
                    let bytes = map.next_value_seed(Text { number })?;
                    self.0.set(slot, bytes);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key: its slot in [`KEYS`], if kept.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, keys: D) -> Result<Self::Value, D::Error> {
        keys.deserialize_bytes(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<Self::Value, E> {
        Ok(KEYS.iter().position(|(k, _)| k.as_bytes() == key))
    }
}

/// A kept value's bytes: a string's with its escapes decoded (UTF-8 not
/// checked), a number's as it reads.
struct Text {
    /// PostgreSQL writes a number here (a string is taken too).
    number: bool,
}

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, [u8]>;

    fn deserialize<D: de::Deserializer<'de>>(self, value: D) -> Result<Self::Value, D::Error> {
        if self.number {
            value.deserialize_any(self)
        } else {
            value.deserialize_bytes(self)
        }
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, [u8]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_vec()))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v.as_bytes()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.as_bytes().to_vec()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string().into_bytes()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string().into_bytes()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string().into_bytes()))
    }
}
