//! What the log reader keeps across restarts: where reading stopped and
//! the statements each role was seen running, in one JSON state file
//! written atomically (a temporary file renamed over it) when either
//! changed. A restart then neither re-counts nor skips a line, and does not
//! take known statements for new ones.
//!
//! Not for: counting (the counters start at 0 with the process, as
//! Prometheus counters do), nor following the files ([`super::tail`]).

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::StatementKey;
use super::tail::Cursor;

/// Statements remembered, at most; the oldest are forgotten first.
pub const MAX_SEEN: usize = 50_000;

/// What the state file holds. Its format is read back by every later
/// version: fields may be added with a default, never renamed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    cursor: Option<Cursor>,
    /// (datname, usename, fingerprint), oldest first.
    seen: Vec<StatementKey>,
}

/// The statements each role was seen running, oldest first.
#[derive(Debug, Default)]
pub struct Seen {
    keys: HashSet<StatementKey>,
    order: VecDeque<StatementKey>,
    /// Changed since last saved.
    dirty: bool,
}

impl Seen {
    /// Remembers a statement; true when it is new.
    pub fn remember(&mut self, key: StatementKey) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.order.len() >= MAX_SEEN
            && let Some(old) = self.order.pop_front()
        {
            self.keys.remove(&old);
        }
        self.keys.insert(key.clone());
        self.order.push_back(key);
        self.dirty = true;
        true
    }
}

/// The state file, and what was last written to it.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    saved_cursor: Option<Cursor>,
}

impl StateFile {
    /// The state file at `path` (nothing is read yet).
    pub fn new(path: PathBuf) -> StateFile {
        StateFile {
            path,
            saved_cursor: None,
        }
    }

    /// Reads the file: remembers its statements in `seen` and returns its
    /// cursor. `None` when there is no file, or it cannot be read (then
    /// reading starts at the end of the log, as on a first start).
    pub fn load(&mut self, seen: &mut Seen) -> Option<Cursor> {
        let path = &self.path;
        match crate::state_file::read::<State>(path) {
            Ok(Some(state)) => {
                for key in state.seen {
                    seen.remember(key);
                }
                self.saved_cursor = state.cursor.clone();
                state.cursor
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "log state file unreadable or invalid; starting at the end of the log");
                None
            }
        }
    }

    /// Writes `cursor` and `seen` when either changed since last written.
    pub fn save(&mut self, cursor: Option<&Cursor>, seen: &mut Seen) {
        if !seen.dirty && cursor == self.saved_cursor.as_ref() {
            return;
        }
        let state = State {
            cursor: cursor.cloned(),
            seen: seen.order.iter().cloned().collect(),
        };
        let path = &self.path;
        match crate::state_file::write_atomically(
            path,
            &serde_json::to_vec(&state).unwrap_or_default(),
        ) {
            Ok(()) => {
                self.saved_cursor = state.cursor;
                seen.dirty = false;
            }
            Err(e) => {
                // Counting goes on; only a restart would re-read or skip.
                tracing::warn!(path = %path.display(), error = %e, "could not write the log state file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by pgvigil before the log reader moved to `logs/` (commit
    /// 6817207), after reading a stderr log and seeing three statements.
    const WRITTEN_BEFORE: &str = r#"{"cursor":{"file":"postgresql-2026-11-28.log","inode":10035217,"offset":245,"mtime":1796293920.7684147,"head":5351717936206128543,"head_len":256},"seen":[["shop","app","0b4ec38d9ea2dda6"],["shop","app","50fde20626009aba"],["shop","alice","0123456789abcdef"]]}"#;

    fn key(d: &str, u: &str, f: &str) -> StatementKey {
        (d.into(), u.into(), f.into())
    }

    #[test]
    fn a_state_file_written_before_still_loads_and_is_written_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.json");
        std::fs::write(&path, WRITTEN_BEFORE).unwrap();
        let mut file = StateFile::new(path.clone());
        let mut seen = Seen::default();
        let cursor = file.load(&mut seen).expect("a cursor");
        assert_eq!(
            cursor,
            Cursor {
                file: "postgresql-2026-11-28.log".into(),
                inode: 10_035_217,
                offset: 245,
                mtime: 1_796_293_920.768_414_7,
                head: 5_351_717_936_206_128_543,
                head_len: 256,
            }
        );
        assert!(!seen.remember(key("shop", "app", "50fde20626009aba")));
        assert!(!seen.remember(key("shop", "alice", "0123456789abcdef")));
        assert!(seen.remember(key("shop", "bob", "0123456789abcdef")));
        // Loading marks the statements to be written back; the same
        // state writes the same text.
        let mut again = Seen::default();
        StateFile::new(path.clone()).load(&mut again);
        std::fs::remove_file(&path).unwrap();
        file.save(Some(&cursor), &mut again);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), WRITTEN_BEFORE);
        // Nothing changed since: not written again.
        std::fs::remove_file(&path).unwrap();
        file.save(Some(&cursor), &mut again);
        assert!(!path.exists());
    }

    #[test]
    fn the_oldest_statements_are_forgotten_first() {
        let mut seen = Seen::default();
        for i in 0..=MAX_SEEN {
            assert!(seen.remember(key("d", "u", &i.to_string())));
        }
        assert_eq!(seen.order.len(), MAX_SEEN);
        assert!(seen.remember(key("d", "u", "0")));
        assert!(!seen.remember(key("d", "u", &MAX_SEEN.to_string())));
    }
}
