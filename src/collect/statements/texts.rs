//! Query texts, fetched once per query id and kept only while the entry
//! exists, so the cache is bounded by `pg_stat_statements.max`.

use std::collections::{HashMap, HashSet};

use crate::sql;

/// What we publish about a query's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextInfo {
    /// pg_query fingerprint, hex; the query id in hex when the text is
    /// missing or does not parse.
    pub fingerprint: String,
    /// Normalized text (literals replaced), at most [`QUERY_LABEL_CHARS`]
    /// characters; `None` when the text is missing or does not parse,
    /// because unparsed text might still hold literal values.
    pub query: Option<String>,
}

/// Query texts in labels are cut to this many characters.
pub const QUERY_LABEL_CHARS: usize = 200;

impl TextInfo {
    /// Derives what we publish from the raw pg_stat_statements text.
    pub fn from_text(queryid: i64, text: Option<&str>) -> TextInfo {
        let fallback = || format!("{:016x}", queryid as u64);
        match text {
            Some(t) => TextInfo {
                fingerprint: sql::fingerprint(t).unwrap_or_else(fallback),
                query: sql::normalize(t).map(|n| sql::shorten(&n, QUERY_LABEL_CHARS)),
            },
            None => TextInfo {
                fingerprint: fallback(),
                query: None,
            },
        }
    }
}

/// The cache.
#[derive(Debug, Default)]
pub struct Texts {
    known: HashMap<i64, TextInfo>,
}

impl Texts {
    /// Which of `ids` still need fetching.
    pub fn missing(&self, ids: impl IntoIterator<Item = i64>) -> Vec<i64> {
        let mut out: Vec<i64> = ids
            .into_iter()
            .filter(|id| !self.known.contains_key(id))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Stores fetched texts; ids asked for but not returned are remembered
    /// as text-less so they are not fetched again.
    pub fn store(&mut self, asked: &[i64], mut fetched: HashMap<i64, String>) {
        for id in asked {
            let text = fetched.remove(id);
            self.known
                .insert(*id, TextInfo::from_text(*id, text.as_deref()));
        }
    }

    /// What we know about `id`.
    pub fn get(&self, id: i64) -> Option<&TextInfo> {
        self.known.get(&id)
    }

    /// Forgets ids that no longer have an entry.
    pub fn retain(&mut self, live: &HashSet<i64>) {
        self.known.retain(|id, _| live.contains(id));
    }

    /// Number of cached texts.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_fetched_once_and_forgotten_with_their_entry() {
        let mut t = Texts::default();
        assert_eq!(t.missing([3, 1, 3]), [1, 3]);
        t.store(
            &[1, 3],
            HashMap::from([(1, "SELECT * FROM t WHERE a = $1".to_string())]),
        );
        assert_eq!(t.missing([1, 3, 4]), [4]);
        assert_eq!(
            t.get(1).unwrap().query.as_deref(),
            Some("SELECT * FROM t WHERE a = $1")
        );
        assert_eq!(
            t.get(3).unwrap(),
            &TextInfo {
                fingerprint: "0000000000000003".into(),
                query: None
            }
        );
        t.retain(&HashSet::from([1]));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn published_text_never_holds_literals() {
        let cases = [
            ("ALTER ROLE app PASSWORD 'hunter2'", false),
            ("SELECT 'it''s'", false),
            ("<insufficient privilege>", false),
        ];
        for (raw, _) in cases {
            let info = TextInfo::from_text(-7, Some(raw));
            let q = info.query.unwrap_or_default();
            assert!(!q.contains("hunter2") && !q.contains("it''s"), "{raw}: {q}");
            assert_eq!(info.fingerprint.len(), 16);
        }
        let long = format!(
            "SELECT {}",
            (0..200)
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(
            TextInfo::from_text(1, Some(&long))
                .query
                .unwrap()
                .chars()
                .count(),
            QUERY_LABEL_CHARS
        );
    }
}
