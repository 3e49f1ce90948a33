//! Stage one: reading the file and deserializing it strictly, without
//! stopping at the first mistake.
//!
//! Each serde error is recorded with its key path, the offending key is
//! taken out (so its default applies) and deserialization is retried, so a
//! file yields the [`RawConfig`] that remains and every problem in it. Not
//! here: what the values mean (`validate.rs`).

use std::path::Path;

use super::raw::{RawConfig, RawTarget};
use super::validate::{LibpqEnv, validate};
use super::{Catalogue, Config, ConfigError, Environment, Problem};

impl Config {
    /// Reads and validates a config file, custom metric names checked
    /// against no catalogue: see [`Config::load_with`].
    pub fn load(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
        Config::load_with(path, env, &|_| false)
    }

    /// Reads and validates a config file; a custom query's metric may not
    /// take a name `catalogue` holds (pgvigil's own families). What the
    /// commands use.
    pub fn load_with(
        path: &Path,
        env: &Environment,
        catalogue: Catalogue,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_with(&text, &path.display().to_string(), env, catalogue)
    }

    /// Validates config text; `origin` names it in messages. Custom
    /// metric names are checked against no catalogue.
    pub fn parse(text: &str, origin: &str, env: &Environment) -> Result<Config, ConfigError> {
        Config::parse_with(text, origin, env, &|_| false)
    }

    /// Validates config text against pgvigil's `catalogue` of families.
    pub fn parse_with(
        text: &str,
        origin: &str,
        env: &Environment,
        catalogue: Catalogue,
    ) -> Result<Config, ConfigError> {
        let (raw, mut problems) = match deserialize_all(text) {
            Ok(pair) => pair,
            Err(problem) => return finish(None, vec![problem], origin),
        };
        let config = validate(raw, env, LibpqEnv::Ignored, catalogue, &mut problems);
        finish(config, problems, origin)
    }

    /// The config used without a file: one target from `dsn` (the `--dsn`
    /// flag or `PGVIGIL_DSN`), completed from libpq's environment variables
    /// and defaults, like psql.
    pub fn from_dsn(dsn: Option<&str>, env: &Environment) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let raw = RawConfig {
            targets: vec![RawTarget {
                dsn: dsn.unwrap_or("").to_string(),
                ..RawTarget::default()
            }],
            ..RawConfig::default()
        };
        // No file, so no custom queries: nothing to check names against.
        let config = validate(raw, env, LibpqEnv::Fills, &|_| false, &mut problems);
        // There is no file: name the flag, not a key path.
        for p in &mut problems {
            if p.path == "target[0].dsn" {
                p.path = "--dsn (or PGVIGIL_DSN)".into();
            }
        }
        finish(config, problems, "the command line")
    }
}

/// The config when nothing was wrong, else every problem found; a config
/// that validated with problems (defaults stood in) is not used.
fn finish(
    config: Option<Config>,
    problems: Vec<Problem>,
    origin: &str,
) -> Result<Config, ConfigError> {
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        }),
    }
}

/// Stage one: strict serde, repeated until every problem is known.
fn deserialize_all(text: &str) -> Result<(RawConfig, Vec<Problem>), Problem> {
    let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| Problem {
        path: String::new(),
        message: one_line(&e.to_string()),
    })?;
    let mut problems = Vec::new();
    // Each round removes one offending key, so this ends; the bound only
    // guards against a key we fail to remove.
    for _ in 0..256 {
        let attempt: Result<RawConfig, _> =
            serde_path_to_error::deserialize(toml::Value::Table(value.clone()));
        match attempt {
            Ok(raw) => return Ok((raw, problems)),
            Err(err) => {
                let mut segments = path_segments(err.path());
                let message = err.inner().to_string();
                // Make sure an unknown key's path ends with the key itself.
                if let Some(key) = unknown_field(&message)
                    && !matches!(segments.last(), Some(Segment::Key(k)) if *k == key)
                {
                    segments.push(Segment::Key(key));
                }
                problems.push(Problem {
                    path: render(&segments),
                    message: one_line(&message),
                });
                if !remove(&mut value, &segments) {
                    return Ok((RawConfig::default(), problems));
                }
            }
        }
    }
    Ok((RawConfig::default(), problems))
}

enum Segment {
    Key(String),
    Index(usize),
}

fn path_segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            _ => None,
        })
        .collect()
}

fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                // Our own `[[target]]` array is renamed in serde; show it as written.
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// Flattens a serde message to one line and drops the "in `key`" suffix
/// the TOML deserializer adds, since the path already says where.
fn one_line(message: &str) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.rfind(" in `") {
        Some(at) if flat.ends_with('`') => flat[..at].to_string(),
        _ => flat,
    }
}

/// Removes the value at `segments`; false when nothing could be removed.
fn remove(table: &mut toml::Table, segments: &[Segment]) -> bool {
    fn remove_in(value: &mut toml::Value, segments: &[Segment]) -> bool {
        match (segments, value) {
            ([Segment::Key(k)], toml::Value::Table(t)) => t.remove(k).is_some(),
            ([Segment::Index(i)], toml::Value::Array(a)) if *i < a.len() => {
                // Keep indexes of later entries stable: blank the entry instead.
                a[*i] = toml::Value::Table(toml::Table::new());
                true
            }
            ([Segment::Key(k), rest @ ..], toml::Value::Table(t)) => {
                t.get_mut(k).is_some_and(|v| remove_in(v, rest))
            }
            ([Segment::Index(i), rest @ ..], toml::Value::Array(a)) => {
                a.get_mut(*i).is_some_and(|v| remove_in(v, rest))
            }
            _ => false,
        }
    }
    let mut root = toml::Value::Table(std::mem::take(table));
    let removed = !segments.is_empty() && remove_in(&mut root, segments);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    removed
}
