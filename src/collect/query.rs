//! Custom queries (`[[target.query]]`): the user's own SELECT, its rows
//! published as the user's own metric families. Each query is a collector
//! of its own (`query:<name>`), so it has its own success and duration
//! series and its failure leaves every other collector alone.
//!
//! The SQL passed the EXPLAIN guard at config validation (one SELECT that
//! modifies nothing, locks no rows, calls no deny-listed function); here it
//! also runs inside `BEGIN READ ONLY` … `ROLLBACK` with `SET LOCAL`
//! `statement_timeout` (the query's timeout, never past the collector's
//! budget), `lock_timeout` and `idle_in_transaction_session_timeout`. The
//! three requests are written to the connection together, before any
//! answer is awaited: if the run is abandoned half-way (its budget spent)
//! the server still receives the `ROLLBACK`, so the target's shared session
//! is never left inside the query's transaction.
//!
//! In the target's own database the query uses the target's session; in
//! another (`database = "…"`) a short-lived connection of its own, as the
//! tables collector visits databases, closed when the run ends.
//!
//! The SQL is the user's, not pgvigil's: it is not registered among
//! pgvigil's own statements, so its cost shows in the statements
//! collector as a workload statement of the agent's role. Only the
//! transaction around it is pgvigil's ([`OWN_SQL`]).
//!
//! Not here: which SQL and names are acceptable (`config/queries.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Kind as PgKind, ToSql, Type};

use super::{CollectError, Collected, Collector, Context};
use crate::metric::{Desc, Family, truncate_label};

/// The transaction around each custom query, as sent (values vary;
/// fingerprints ignore them), so pgvigil's own part is recognised.
pub const OWN_SQL: &[&str] = &[
    "BEGIN READ ONLY; SET LOCAL statement_timeout = 10000; SET LOCAL lock_timeout = 1000; SET LOCAL idle_in_transaction_session_timeout = 10000",
    "ROLLBACK",
];

/// One custom query's collector.
pub struct Query {
    /// The collector's name, `query:<name>`, which also names the query in
    /// errors.
    name: &'static str,
    spec: Arc<crate::config::Query>,
    /// (column, family descriptor), in config order.
    metrics: Vec<(String, &'static Desc)>,
}

impl Query {
    /// The collector named `name` for `spec`; its families' descriptors are
    /// interned, so building it again (after a failover) leaks nothing.
    pub fn new(name: &'static str, spec: Arc<crate::config::Query>) -> Query {
        let metrics = spec
            .metrics
            .iter()
            .map(|m| {
                let desc = Desc::interned(&m.name, &m.help, m.kind, &spec.labels);
                (m.column.clone(), desc)
            })
            .collect();
        Query {
            name,
            spec,
            metrics,
        }
    }

    /// Runs the query in its transaction on `client` and turns its rows
    /// into families; `deadline` is the end of the collector's budget.
    async fn run(
        &self,
        client: &Client,
        lock_timeout: Duration,
        deadline: Instant,
    ) -> Result<Vec<Family>, CollectError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = self.spec.timeout.min(left).max(Duration::from_millis(1));
        let ms = timeout.as_millis();
        let begin = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {}; \
             SET LOCAL idle_in_transaction_session_timeout = {ms}",
            lock_timeout.as_millis()
        );
        let started = Instant::now();
        // futures' join polls in order: BEGIN, the query, then ROLLBACK are
        // each written to the connection on the first poll, before anything
        // is awaited (see the module header).
        let (begun, read, ended) = futures_util::join!(
            client.batch_execute(&begin),
            self.read(client),
            client.batch_execute("ROLLBACK"),
        );
        let what = self.name;
        begun.map_err(|source| CollectError::Query { what, source })?;
        let families = read.map_err(|e| match e {
            Read::Driver(source) if source.code() == Some(&SqlState::QUERY_CANCELED) => {
                CollectError::Unavailable(format!(
                    "{what}: cancelled after {:.1}s, its timeout being {}: {} (make it cheaper, or raise its timeout up to collectors.timeout)",
                    started.elapsed().as_secs_f64(),
                    humantime::format_duration(timeout),
                    crate::connection::session::describe(&source)
                ))
            }
            Read::Driver(source) => CollectError::Query { what, source },
            Read::Shape(why) => CollectError::Unavailable(format!("{what}: {why}")),
        })?;
        ended.map_err(|source| CollectError::Query { what, source })?;
        Ok(families)
    }

    /// Reads the rows into families, within the series cap.
    async fn read(&self, client: &Client) -> Result<Vec<Family>, Read> {
        let none: Vec<(&(dyn ToSql + Sync), Type)> = Vec::new();
        let stream = client.query_typed_raw(&self.spec.sql, none).await?;
        let mut stream = std::pin::pin!(stream);
        let mut families: Vec<Family> = self.metrics.iter().map(|(_, d)| Family::new(d)).collect();
        let mut seen = HashSet::new();
        let mut series = 0;
        let mut columns = None;
        while let Some(row) = stream.try_next().await? {
            let (label_at, value_at) = match columns {
                Some(ref c) => c,
                None => columns.insert(self.columns(&row)?),
            };
            let labels = label_at
                .iter()
                .map(|&i| {
                    let text: Option<Label> = row.try_get(i)?;
                    Ok(text.map_or_else(String::new, |t| truncate_label(&t.0)))
                })
                .collect::<Result<Vec<String>, tokio_postgres::Error>>()?;
            if seen.contains(&labels) {
                let shown: Vec<String> = (self.spec.labels.iter().zip(&labels))
                    .map(|(n, v)| format!("{n}={v:?}"))
                    .collect();
                return Err(Read::Shape(format!(
                    "two rows have the same labels ({}), which would publish a series twice: GROUP BY the label columns",
                    if shown.is_empty() {
                        "none".to_string()
                    } else {
                        shown.join(", ")
                    }
                )));
            }
            for (&i, family) in value_at.iter().zip(families.iter_mut()) {
                let Some(Number(value)) = row.try_get(i)? else {
                    continue;
                };
                series += 1;
                if series > self.spec.max_series {
                    return Err(Read::Shape(format!(
                        "the result has more than {} series, its max_series: aggregate in SQL or raise max_series",
                        self.spec.max_series
                    )));
                }
                family.push(&labels, value);
            }
            seen.insert(labels);
        }
        Ok(families)
    }

    /// The positions of the label and metric columns in the result, each
    /// checked for a type it can be read as.
    fn columns(&self, row: &tokio_postgres::Row) -> Result<(Vec<usize>, Vec<usize>), Read> {
        let find = |name: &str, wanted: fn(&Type) -> bool, what: &str| {
            let columns = row.columns();
            let Some(i) = columns.iter().position(|c| c.name() == name) else {
                let all: Vec<&str> = columns.iter().map(|c| c.name()).collect();
                return Err(Read::Shape(format!(
                    "the result has no column {name:?} (it has {})",
                    all.join(", ")
                )));
            };
            let ty = columns[i].type_();
            if !wanted(ty) {
                return Err(Read::Shape(format!(
                    "column {name:?} is of type {}; {what}",
                    ty.name()
                )));
            }
            Ok(i)
        };
        let labels = self
            .spec
            .labels
            .iter()
            .map(|l| {
                find(
                    l,
                    Label::accepts,
                    "a label column must be text (cast it: col::text)",
                )
            })
            .collect::<Result<_, _>>()?;
        let values = self
            .metrics
            .iter()
            .map(|(c, _)| {
                find(
                    c,
                    Number::accepts,
                    "a metric column must be numeric (cast it: col::bigint or col::float8)",
                )
            })
            .collect::<Result<_, _>>()?;
        Ok((labels, values))
    }
}

/// Why reading a result failed.
enum Read {
    /// The server or the connection.
    Driver(tokio_postgres::Error),
    /// The result does not fit the config: a missing column, a wrong type,
    /// too many series, a duplicated series.
    Shape(String),
}

impl From<tokio_postgres::Error> for Read {
    fn from(e: tokio_postgres::Error) -> Read {
        Read::Driver(e)
    }
}

#[async_trait]
impl Collector for Query {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let deadline = Instant::now() + cx.limits.statement_timeout;
        let lock_timeout = cx.limits.lock_timeout;
        let families = match &self.spec.database {
            Some(datname) if *datname != cx.caps.database => {
                // Failing to open this one says nothing about the target's
                // session, which stays.
                let other = cx.visit(datname).await?;
                // Nor does losing it: the target's session is not reset
                // and pg_up stays as it is.
                self.run(&other.client, lock_timeout, deadline)
                    .await
                    .map_err(|e| match e {
                        e if e.connection_lost() => {
                            CollectError::Unavailable(format!("database {datname}: {e}"))
                        }
                        e => e,
                    })?
            }
            _ => self.run(cx.client, lock_timeout, deadline).await?,
        };
        Ok(families.into())
    }
}

/// The type a column is, through any domains over it.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        PgKind::Domain(inner) => base(inner),
        _ => ty,
    }
}

/// A metric column's value: any integer, float or numeric, as f64.
struct Number(f64);

impl<'a> FromSql<'a> for Number {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Number, Box<dyn std::error::Error + Sync + Send>> {
        let ty = base(ty);
        let value = match *ty {
            Type::INT2 => i16::from_sql(ty, raw)? as f64,
            Type::INT4 => i32::from_sql(ty, raw)? as f64,
            Type::INT8 => i64::from_sql(ty, raw)? as f64,
            Type::FLOAT4 => f32::from_sql(ty, raw)? as f64,
            Type::FLOAT8 => f64::from_sql(ty, raw)?,
            _ => numeric(raw)?,
        };
        Ok(Number(value))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *base(ty),
            Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC
        )
    }
}

/// A `numeric` in PostgreSQL's binary format (digit count, weight, sign,
/// display scale, then base-10000 digits), as the nearest f64: written out
/// as decimal text and parsed, so the rounding is exact.
fn numeric(raw: &[u8]) -> Result<f64, Box<dyn std::error::Error + Sync + Send>> {
    let word = |at: usize| -> Result<u16, String> {
        raw.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated numeric".to_string())
    };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i64;
    let sign = word(4)?;
    match sign {
        0xC000 => return Ok(f64::NAN),
        0xD000 => return Ok(f64::INFINITY),
        0xF000 => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    if ndigits == 0 {
        return Ok(0.0);
    }
    let mut text = String::from(if sign == 0x4000 { "-0." } else { "0." });
    for d in 0..ndigits {
        let digit = word(8 + 2 * d)?;
        if digit > 9999 {
            return Err("a numeric digit out of range".into());
        }
        text.push_str(&format!("{digit:04}"));
    }
    text.push_str(&format!("e{}", 4 * (weight + 1)));
    Ok(text.parse()?)
}

/// A label column's value: text of any kind (text, varchar, char, name,
/// citext, an enum), through domains.
struct Label(String);

impl<'a> FromSql<'a> for Label {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Label, Box<dyn std::error::Error + Sync + Send>> {
        // The binary form of every accepted type is its UTF-8 text.
        Ok(Label(std::str::from_utf8(raw)?.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        let ty = base(ty);
        matches!(
            *ty,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
        ) || ty.name() == "citext"
            || matches!(ty.kind(), PgKind::Enum(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A numeric's binary form from its parts.
    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((digits.len() as u16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend(sign.to_be_bytes());
        out.extend(dscale.to_be_bytes());
        for d in digits {
            out.extend(d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_decode_to_the_nearest_float() {
        let cases: [(Vec<u8>, f64); 8] = [
            (numeric_bytes(0, 0, 0, &[]), 0.0),
            (numeric_bytes(0, 0, 0, &[42]), 42.0),
            // 12345678.9 = 1234 5678 . 9000
            (numeric_bytes(1, 0, 1, &[1234, 5678, 9000]), 12_345_678.9),
            // -0.0012 = 0 . 0012
            (numeric_bytes(-1, 0x4000, 4, &[12]), -0.0012),
            // 10^8 = 1 0000 0000
            (numeric_bytes(2, 0, 0, &[1]), 1e8),
            // avg() of 1 and 2: 1.5000000000000000
            (numeric_bytes(0, 0, 16, &[1, 5000]), 1.5),
            (numeric_bytes(0, 0xD000, 0, &[]), f64::INFINITY),
            (numeric_bytes(0, 0xF000, 0, &[]), f64::NEG_INFINITY),
        ];
        for (raw, want) in cases {
            assert_eq!(numeric(&raw).unwrap(), want, "{raw:?}");
        }
        assert!(numeric(&numeric_bytes(0, 0xC000, 0, &[])).unwrap().is_nan());
        assert!(numeric(&[0, 1, 0]).is_err(), "truncated");
        assert!(numeric(&numeric_bytes(0, 0, 0, &[10000])).is_err());
    }

    #[test]
    fn value_and_label_columns_accept_what_they_can_read() {
        for ty in [
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::NUMERIC,
        ] {
            assert!(Number::accepts(&ty), "{ty}");
            assert!(!Label::accepts(&ty), "{ty}");
        }
        for ty in [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME] {
            assert!(Label::accepts(&ty), "{ty}");
            assert!(!Number::accepts(&ty), "{ty}");
        }
        for ty in [Type::BOOL, Type::TIMESTAMPTZ, Type::INTERVAL, Type::JSONB] {
            assert!(!Number::accepts(&ty) && !Label::accepts(&ty), "{ty}");
        }
        let amount = Type::new(
            "amount".into(),
            1,
            PgKind::Domain(Type::NUMERIC),
            "public".into(),
        );
        assert!(Number::accepts(&amount));
        let state = Type::new(
            "state".into(),
            2,
            PgKind::Enum(vec!["new".into()]),
            "public".into(),
        );
        assert!(Label::accepts(&state));
    }
}
