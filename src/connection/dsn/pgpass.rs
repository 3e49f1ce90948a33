//! libpq's password file (`~/.pgpass`, or `passfile`).
//!
//! Finds the password for the first host, port, database and user the way
//! libpq does for its first connection attempt, with its escaping, wildcards
//! and refusal of files others can read. Not here: where the other
//! passwords come from (the DSN, `PGPASSWORD`, the config's `password_file`
//! and `password_env`, which all win over this file). There is no service
//! file support: `service=` is rejected when the DSN is parsed.

use std::path::Path;

use super::{ConnParams, DEFAULT_PORT, Host};

/// Socket directories that libpq builds commonly use as their default; libpq
/// matches `localhost` in the password file only for its default directory,
/// which we cannot know, so any of these counts.
const DEFAULT_SOCKET_DIRS: [&str; 3] = [super::DISTRO_SOCKET_DIR, "/run/postgresql", "/tmp"];

impl ConnParams {
    /// Looks the password up in libpq's password file: `passfile`, else
    /// `<home>/.pgpass`. Matches on the first host and port, like libpq does
    /// for the first connection attempt. Returns `None` when nothing matches
    /// or the file is readable by group or others.
    pub fn pgpass_password(&self, home: Option<&Path>) -> Option<String> {
        let path = match &self.passfile {
            Some(path) => path.clone(),
            None => home?.join(".pgpass"),
        };
        let contents = read_private_file(&path)?;
        let port = self
            .ports
            .first()
            .copied()
            .unwrap_or(DEFAULT_PORT)
            .to_string();
        let host = self.pgpass_host();
        let wanted = [
            host.as_str(),
            port.as_str(),
            self.dbname.as_deref().filter(|s| !s.is_empty())?,
            self.user.as_deref().filter(|s| !s.is_empty())?,
        ];
        contents
            .lines()
            .find_map(|line| pgpass_line_password(line, &wanted))
            .filter(|password| !password.is_empty())
    }

    /// libpq matches `localhost` for a missing host and for its default socket
    /// directory; any other socket directory matches literally. Without a
    /// host name, libpq matches the `hostaddr` as written.
    fn pgpass_host(&self) -> String {
        match self.hosts.first() {
            None => match self.driver.hostaddrs().first() {
                Some(addr) => addr.to_string(),
                None => "localhost".to_owned(),
            },
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(dir)) => match dir.to_str() {
                Some(dir) if !DEFAULT_SOCKET_DIRS.contains(&dir) => dir.to_owned(),
                _ => "localhost".to_owned(),
            },
        }
    }
}

/// Reads a password file the way libpq accepts it: a regular file, not
/// readable or writable by group or others.
fn read_private_file(path: &Path) -> Option<String> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() || !is_private(&metadata) {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[cfg(unix)]
fn is_private(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o077 == 0
}

#[cfg(not(unix))]
fn is_private(_metadata: &std::fs::Metadata) -> bool {
    // libpq skips the check where there are no Unix permission bits.
    true
}

/// Returns the password of a `host:port:db:user:password` line whose first
/// four fields match `wanted`.
fn pgpass_line_password(line: &str, wanted: &[&str; 4]) -> Option<String> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut rest = line;
    for field in wanted {
        rest = match_pgpass_field(rest, field)?;
    }
    Some(unescape_pgpass_password(rest))
}

/// Matches one field (`*` alone is a wildcard, `\` escapes the next
/// character) and returns the text after its terminating `:`.
fn match_pgpass_field<'a>(line: &'a str, wanted: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut expected = wanted.chars();
    let mut chars = line.char_indices();
    while let Some((index, c)) = chars.next() {
        let literal = match c {
            ':' => return expected.next().is_none().then(|| &line[index + 1..]),
            '\\' => chars.next()?.1,
            _ => c,
        };
        if expected.next() != Some(literal) {
            return None;
        }
    }
    None
}

/// The password runs to the next unescaped `:` or the end of the line; a
/// trailing lone backslash is kept, as libpq does.
fn unescape_pgpass_password(text: &str) -> String {
    let mut password = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => password.push(chars.next().unwrap_or('\\')),
            _ => password.push(c),
        }
    }
    password
}
