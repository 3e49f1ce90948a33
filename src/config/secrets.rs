//! Passwords kept out of the DSN: `password_file` (its first line) or
//! `password_env` (a variable named in the config), at most one of them.
//!
//! The docs recommend these over a password in the DSN, which would sit in
//! the config file and in process listings. Messages name the key, the
//! file or the variable, never the password. Not here: the DSN's own
//! password and libpq's password file (`target/dsn`), which the target
//! falls back to when neither key is set.

use std::path::Path;

use super::{Environment, Problem, Report};
use crate::connection::dsn::ConnParams;

/// Where a target or console says its password is.
pub(super) struct Secrets<'a> {
    /// `password_file`.
    pub(super) file: Option<&'a Path>,
    /// `password_env`.
    pub(super) var: Option<&'a str>,
}

/// Puts the password from `password_file` or `password_env` into `conn`.
/// A problem is reported at `path(key)`, `key` being the setting concerned.
pub(super) fn apply_password(
    conn: &mut ConnParams,
    secrets: Secrets,
    env: &Environment,
    path: impl Fn(&str) -> String,
    problems: &mut Vec<Problem>,
) {
    if let Err((key, message)) = resolve(conn, secrets, env) {
        problems.report(path(key), message);
    }
}

/// On a problem, the key it concerns and why.
fn resolve(
    conn: &mut ConnParams,
    secrets: Secrets,
    env: &Environment,
) -> Result<(), (&'static str, String)> {
    let (key, password) = match (secrets.file, secrets.var) {
        (Some(_), Some(_)) => {
            return Err((
                "password_file",
                "set either password_file or password_env, not both".into(),
            ));
        }
        (Some(file), None) => (
            "password_file",
            read_password_file(file).map_err(|m| ("password_file", m))?,
        ),
        (None, Some(var)) => (
            "password_env",
            (env.var)(var).ok_or_else(|| {
                (
                    "password_env",
                    format!("environment variable {var} is not set"),
                )
            })?,
        ),
        (None, None) => return Ok(()),
    };
    if conn.password.is_some() {
        return Err((
            key,
            "the dsn already contains a password; keep only one".into(),
        ));
    }
    conn.password = Some(password);
    Ok(())
}

/// The first line: files written by `echo` or an editor end in a newline
/// that is not part of the password.
fn read_password_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(first)
}
