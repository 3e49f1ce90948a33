//! `[[redis]]`: the cache-tier targets, as written and validated.
//!
//! A Redis target is a target like a `[[target]]`: its `name` is the
//! `target` label of its series and must not be taken by any other target
//! of either kind. Its URL is `redis://` or `rediss://` (TLS); with TLS the
//! server is verified as `sslmode=verify-full` would verify a PostgreSQL
//! server, against `sslrootcert` (a PEM file, or `system`, the default),
//! and the URL's query may weaken that to `sslmode=verify-ca` or
//! `require`, or add a client certificate (`sslcert`, `sslkey`). Not here:
//! connecting (`connection/redis.rs`) or which collectors exist (the
//! registry).

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{Interval, RawRedis, Setting};
use super::secrets::{Secrets, apply_password};
use super::{Environment, Problem, Report};
use crate::connection::dsn::{ConnParams, Host, SslMode};
use crate::connection::redis::Endpoint;

/// How often each Redis collector runs; `None` means off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisIntervals {
    /// `redis_info`.
    pub info: Option<Duration>,
    /// `redis_replication`.
    pub replication: Option<Duration>,
    /// `redis_persistence`.
    pub persistence: Option<Duration>,
    /// `redis_commands`.
    pub commands: Option<Duration>,
    /// `redis_slowlog`.
    pub slowlog: Option<Duration>,
    /// `redis_cluster`.
    pub cluster: Option<Duration>,
}

/// One validated `[[redis]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redis {
    /// Its name: the `target` label of its series.
    pub name: String,
    /// Where it is and how to log in.
    pub endpoint: Endpoint,
    /// Collector intervals.
    pub intervals: RedisIntervals,
}

/// Validates `[[redis]]` entry `i`; `names` holds the target names taken
/// so far (both kinds).
pub(super) fn validate_redis(
    raw: RawRedis,
    i: usize,
    default_interval: Duration,
    names: &mut std::collections::BTreeSet<String>,
    env: &Environment,
    problems: &mut Vec<Problem>,
) -> Option<Redis> {
    let path = |key: &str| format!("redis[{i}].{key}");
    let name = match raw.name {
        Some(n) => n,
        None => {
            problems.report(path("name"), "required: the target label of its series");
            return None;
        }
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        problems.report(
            path("name"),
            format!("{name:?} must be non-empty and use only letters, digits, '_', '.' and '-'"),
        );
    } else if !names.insert(name.clone()) {
        problems.report(path("name"), format!("{name:?} is used by another target"));
    }
    let url = match parse_url(&raw.url) {
        Ok(url) => url,
        Err(e) => {
            problems.report(path("url"), e);
            return None;
        }
    };
    // The password goes through the same rules as a DSN's.
    let mut secret = ConnParams {
        password: url.password.clone(),
        ..ConnParams::default()
    };
    let secrets = Secrets {
        file: raw.password_file.as_deref(),
        var: raw.password_env.as_deref(),
    };
    apply_password(&mut secret, secrets, env, path, problems);
    let c = &raw.collectors;
    let resolve = |s: &Setting| match s.0.interval {
        None => Some(default_interval),
        Some(Interval::Off) => None,
        Some(Interval::Every(d)) => Some(d),
    };
    Some(Redis {
        name,
        endpoint: Endpoint {
            host: url.host,
            port: url.port,
            db: url.db,
            tls: url.tls,
            username: raw.username.or(url.username),
            password: secret.password,
        },
        intervals: RedisIntervals {
            info: resolve(&c.redis_info),
            replication: resolve(&c.redis_replication),
            persistence: resolve(&c.redis_persistence),
            commands: resolve(&c.redis_commands),
            slowlog: resolve(&c.redis_slowlog),
            cluster: resolve(&c.redis_cluster),
        },
    })
}

/// A parsed `redis://` or `rediss://` URL.
#[derive(Debug, PartialEq)]
struct Url {
    host: String,
    port: u16,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    tls: Option<ConnParams>,
}

fn decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "percent-encoded text is not UTF-8".to_string())
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("rediss://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("redis://") {
        (false, rest)
    } else {
        return Err("must start with redis:// or rediss:// (TLS)".into());
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let user = Some(decode(user)?).filter(|s| !s.is_empty());
            let pass = Some(decode(pass)?).filter(|s| !s.is_empty());
            (user, pass)
        }
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ']'")?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = match port {
        None | Some("") => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?,
    };
    let db = match db {
        "" => 0,
        d => d
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| format!("database {d:?} is not a number"))?,
    };
    let mut params = ConnParams {
        hosts: vec![Host::Tcp(host.clone())],
        sslmode: Some(SslMode::VerifyFull),
        ..ConnParams::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value)?;
        match key {
            "sslmode" => {
                params.sslmode = Some(match value.as_str() {
                    "verify-full" => SslMode::VerifyFull,
                    "verify-ca" => SslMode::VerifyCa,
                    "require" => SslMode::Require,
                    other => {
                        return Err(format!(
                            "sslmode {other:?}: expected verify-full, verify-ca or require"
                        ));
                    }
                })
            }
            "sslrootcert" => params.sslrootcert = Some(value),
            "sslcert" => params.sslcert = Some(PathBuf::from(value)),
            "sslkey" => params.sslkey = Some(PathBuf::from(value)),
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (known: sslmode, sslrootcert, sslcert, sslkey)"
                ));
            }
        }
    }
    if !tls && !query.is_empty() {
        return Err("TLS parameters need rediss://".into());
    }
    if tls && params.sslrootcert.is_none() {
        params.sslrootcert = Some("system".into());
    }
    Ok(Url {
        host,
        port,
        db,
        username,
        password,
        tls: tls.then_some(params),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6380, 2));
        assert!(u.tls.is_none());
        let u = parse_url("redis://cache").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("cache", 6379, 0));
        let u = parse_url("redis://pgvigil:s%40cret@[::1]:7000").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 7000);
        assert_eq!(u.username.as_deref(), Some("pgvigil"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        let u = parse_url("rediss://c:6390?sslrootcert=/ca.pem&sslmode=verify-ca").unwrap();
        let tls = u.tls.unwrap();
        assert_eq!(tls.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(tls.sslrootcert.as_deref(), Some("/ca.pem"));
        let tls = parse_url("rediss://c").unwrap().tls.unwrap();
        assert_eq!(tls.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(tls.sslrootcert.as_deref(), Some("system"));
        for bad in [
            "http://x",
            "redis://",
            "redis://h:0",
            "redis://h:x",
            "redis://h/x",
            "redis://h?sslmode=require",
            "rediss://h?sslmode=prefer",
            "rediss://h?foo=1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
