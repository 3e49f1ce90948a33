//! The captured log files (see `../fixtures/capture.sh`), shared with the
//! tests of `event` and `duration`.

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
            bytes: include_bytes!(concat!("../fixtures/", $name)),
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
