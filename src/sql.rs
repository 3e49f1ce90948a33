//! Everything that touches pg_query: fingerprints, normalized texts,
//! identifier quoting, and recognising pgvigil's own statements.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// The pg_query fingerprint of a statement, as 16 hex digits. It ignores
/// constants and the length of IN lists, so the same statement with other
/// values, or on another server, has the same fingerprint. `None` when the
/// text does not parse.
pub fn fingerprint(text: &str) -> Option<String> {
    pg_query::fingerprint(text, 0, 0).ok().map(|f| f.hex)
}

/// The statement with every literal replaced by `$n` (passwords in
/// `ALTER ROLE … PASSWORD` included). `None` when the text does not parse:
/// such text is never published, because it might hold a literal.
pub fn normalize(text: &str) -> Option<String> {
    pg_query::normalize(text).ok()
}

/// Cuts text to at most `max` characters on a character boundary and
/// collapses runs of whitespace (query texts span lines).
pub fn shorten(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut count = 0;
    for word in text.split_whitespace() {
        if count > 0 {
            if count + 1 > max {
                break;
            }
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count >= max {
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

/// Quotes an identifier for SQL, like PostgreSQL's `quote_ident`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Fingerprints of the statements pgvigil itself sends, so they can be
/// told apart from the workload (their cost is reported separately).
/// Built once where the agent is assembled, from every collector's and
/// worker's static SQL ([`crate::registry`]), and handed down; SQL built
/// at run time (it depends on the server) is added by
/// [`OwnStatements::register`] before it is sent. Clones share one set.
#[derive(Debug, Clone, Default)]
pub struct OwnStatements(Arc<Mutex<Own>>);

#[derive(Debug, Default)]
struct Own {
    seen: HashSet<u64>,
    fingerprints: HashSet<String>,
}

impl Own {
    fn add(&mut self, batch: &str) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        batch.hash(&mut hasher);
        if self.seen.insert(hasher.finish()) {
            let parts = pg_query::split_with_parser(batch).unwrap_or_default();
            self.fingerprints
                .extend(parts.into_iter().filter_map(fingerprint));
        }
    }
}

impl OwnStatements {
    /// The statements of `batches` (each one or more statements).
    pub fn new<'a>(batches: impl IntoIterator<Item = &'a str>) -> OwnStatements {
        let mut own = Own::default();
        for batch in batches {
            own.add(batch);
        }
        OwnStatements(Arc::new(Mutex::new(own)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Own> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records SQL that pgvigil is about to send (cheap after the first
    /// time), and returns it.
    pub fn register<'a>(&self, sql: &'a str) -> &'a str {
        self.lock().add(sql);
        sql
    }

    /// Whether a fingerprint belongs to one of pgvigil's own statements.
    pub fn contains(&self, fingerprint: &str) -> bool {
        self.lock().fingerprints.contains(fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_values_and_in_list_length() {
        let cases = [
            (
                "SELECT * FROM t WHERE id IN (1, 2, 3)",
                "SELECT * FROM t WHERE id IN ($1)",
                true,
            ),
            (
                "SELECT * FROM t WHERE a = 'x'",
                "select *  from t where a = 'y'",
                true,
            ),
            (
                "SELECT * FROM t WHERE a = 1",
                "SELECT * FROM t WHERE b = 1",
                false,
            ),
        ];
        for (a, b, same) in cases {
            assert_eq!(fingerprint(a) == fingerprint(b), same, "{a} / {b}");
        }
        assert_eq!(fingerprint("SELEC oops"), None);
        assert_eq!(fingerprint("SELECT 1").unwrap().len(), 16);
    }

    #[test]
    fn normalizing_removes_literals_including_passwords() {
        let cases = [
            (
                "SELECT * FROM t WHERE name = 'Paul' AND n > 3",
                "SELECT * FROM t WHERE name = $1 AND n > $2",
            ),
            ("SELECT $1, $2", "SELECT $1, $2"),
        ];
        for (text, want) in cases {
            assert_eq!(normalize(text).as_deref(), Some(want));
        }
        let role = normalize("ALTER ROLE app PASSWORD 'hunter2'").unwrap();
        assert!(!role.contains("hunter2"), "{role}");
        assert_eq!(normalize("SELECT 'unterminated"), None);
    }

    #[test]
    fn shorten_cuts_and_collapses_whitespace() {
        let cases = [
            ("SELECT a,\n\t b FROM t", 100, "SELECT a, b FROM t"),
            ("SELECT abcdef", 9, "SELECT ab"),
            ("héllo wörld", 7, "héllo w"),
            ("", 5, ""),
        ];
        for (text, max, want) in cases {
            assert_eq!(shorten(text, max), want);
        }
    }

    #[test]
    fn own_statements_are_recognised() {
        let own = OwnStatements::new(["SET statement_timeout = 1; SELECT 1 FROM pg_stat_activity"]);
        let is_own = |sql: &str| own.contains(&fingerprint(sql).unwrap());
        assert!(is_own("SET statement_timeout = 1234"));
        assert!(is_own("select 2 from pg_stat_activity"));
        let built = "SELECT queryid FROM \"my schema\".pg_stat_statements(false) WHERE calls > 0";
        assert!(!is_own(built));
        assert_eq!(own.clone().register(built), built);
        assert!(is_own(built), "a clone shares the set");
        assert!(!is_own("SELECT * FROM orders"));
    }
}
