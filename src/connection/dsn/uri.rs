//! libpq's URI form: `postgresql://user:password@host:port,…/dbname?key=value&…`.
//!
//! Takes the URI apart (user info, host list, path, query) with libpq's
//! rules and strict percent-decoding, and hands every query parameter to
//! [`ConnParams::set`], so a key means the same in both forms. Not here: the
//! meaning of keys (`mod.rs`), the `key=value` form (`lexer.rs`).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::error::{invalid_value, uri_error};
use super::{ConnParams, DEFAULT_PORT, DsnError, Host, non_empty, parse_port};

/// What follows `postgresql://` or `postgres://`; `None` for the
/// `key=value` form.
pub(super) fn body(dsn: &str) -> Option<&str> {
    // Trimming tolerates DSNs pasted from files with a trailing newline.
    let dsn = dsn.trim();
    ["postgresql://", "postgres://"]
        .into_iter()
        .find_map(|scheme| dsn.strip_prefix(scheme))
}

impl ConnParams {
    /// `body` is the URI after `scheme://`.
    pub(super) fn apply_uri(&mut self, body: &str) -> Result<(), DsnError> {
        let (userinfo, rest) = split_userinfo(body);
        if let Some(userinfo) = userinfo {
            self.apply_userinfo(userinfo)?;
        }
        let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (hostspec, rest) = rest.split_at(host_end);
        self.apply_hostspec(hostspec).map_err(|err| {
            hint_unencoded_userinfo(err, userinfo.is_none() && rest.contains('@'))
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        if let Some(dbname) = path.strip_prefix('/') {
            self.dbname = non_empty(&percent_decode(dbname, "database name")?);
        }
        match query {
            Some(query) => self.apply_query(query),
            None => Ok(()),
        }
    }

    fn apply_userinfo(&mut self, userinfo: &str) -> Result<(), DsnError> {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        self.user = non_empty(&percent_decode(user, "user name")?);
        if let Some(password) = password {
            self.password = non_empty(&percent_decode(password, "password")?);
        }
        Ok(())
    }

    fn apply_hostspec(&mut self, spec: &str) -> Result<(), DsnError> {
        if spec.is_empty() {
            return Ok(());
        }
        let entries = spec
            .split(',')
            .map(split_host_port)
            .collect::<Result<Vec<_>, _>>()?;
        let mut hosts = Vec::with_capacity(entries.len());
        let mut ports = Vec::with_capacity(entries.len());
        for (index, (host, port)) in entries.iter().enumerate() {
            let host = percent_decode(host, "host list")?;
            if host.is_empty() && entries.len() > 1 {
                return Err(DsnError::EmptyListEntry {
                    key: "host".into(),
                    index: index + 1,
                });
            }
            if !host.is_empty() {
                hosts.push(Host::from_libpq(&host));
            }
            ports.push(match port {
                Some(port) => parse_port("port", &percent_decode(port, "host list")?)?,
                None => None,
            });
        }
        self.hosts = hosts;
        // libpq fills in 5432 for hosts without a port only when some host
        // has one; with no ports at all the port stays "not given".
        self.ports = if ports.iter().any(Option::is_some) {
            ports
                .into_iter()
                .map(|p| p.unwrap_or(DEFAULT_PORT))
                .collect()
        } else {
            Vec::new()
        };
        Ok(())
    }

    fn apply_query(&mut self, query: &str) -> Result<(), DsnError> {
        for (index, param) in query.split('&').enumerate() {
            if param.is_empty() {
                continue;
            }
            let part = || format!("query parameter #{}", index + 1);
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| uri_error(part(), "missing '=' between key and value"))?;
            if value.contains('=') {
                return Err(uri_error(
                    part(),
                    "more than one '=' (write '=' in a value as %3D)",
                ));
            }
            let key = percent_decode(key, &part())?;
            let value = percent_decode(value, &format!("value of query parameter \"{key}\""))?;
            self.apply_query_param(&key, &value)?;
        }
        Ok(())
    }

    /// libpq accepts the JDBC spelling `ssl=true` in URIs as `sslmode=require`.
    fn apply_query_param(&mut self, key: &str, value: &str) -> Result<(), DsnError> {
        match (key, value) {
            ("ssl", "true") => self.set("sslmode", "require"),
            ("ssl", _) => Err(invalid_value(key, value, "true")),
            _ => self.set(key, value),
        }
    }
}

/// Like libpq, user info is whatever precedes the first `@` that comes before
/// any `/`, so a password may contain `?` or `:` but `/` must be encoded.
fn split_userinfo(body: &str) -> (Option<&str>, &str) {
    match body.find(['@', '/']) {
        Some(at) if body[at..].starts_with('@') => (Some(&body[..at]), &body[at + 1..]),
        _ => (None, body),
    }
}

/// Splits one `host[:port]` or `[v6addr][:port]` entry of a URI host list.
fn split_host_port(entry: &str) -> Result<(&str, Option<&str>), DsnError> {
    let Some(bracketed) = entry.strip_prefix('[') else {
        return Ok(match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        });
    };
    let (address, tail) = bracketed
        .split_once(']')
        .ok_or_else(|| uri_error("host list", "missing ']' after an IPv6 address"))?;
    if address.is_empty() {
        return Err(uri_error("host list", "empty IPv6 address in brackets"));
    }
    match tail {
        "" => Ok((address, None)),
        _ => match tail.strip_prefix(':') {
            Some(port) => Ok((address, Some(port))),
            None => Err(uri_error(
                "host list",
                "unexpected character after an IPv6 address",
            )),
        },
    }
}

/// An unencoded `/` in a password makes the rest of the password look like a
/// port; the resulting error would echo part of the password, so replace it
/// with advice that echoes nothing.
fn hint_unencoded_userinfo(err: DsnError, suspicious: bool) -> DsnError {
    match err {
        DsnError::InvalidValue { .. } if suspicious => uri_error(
            "host list",
            "cannot parse the port; a '/' in the user name or password must be percent-encoded as %2F",
        ),
        other => other,
    }
}

/// Strict percent-decoding, like libpq: malformed escapes and `%00` are
/// errors rather than being passed through.
fn percent_decode(text: &str, part: &str) -> Result<String, DsnError> {
    let error = |reason| DsnError::PercentEncoding {
        part: part.to_owned(),
        reason,
    };
    let bytes = text.as_bytes();
    let mut index = 0;
    while let Some(offset) = bytes[index..].iter().position(|&b| b == b'%') {
        let at = index + offset;
        match bytes.get(at + 1..at + 3) {
            Some(b"00") => return Err(error("%00 is not allowed")),
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => index = at + 3,
            _ => return Err(error("'%' must be followed by two hexadecimal digits")),
        }
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| error("the decoded text is not valid UTF-8"))
}
