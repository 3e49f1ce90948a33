//! HTTP basic authentication against bcrypt hashes, as in the web config
//! of Prometheus exporters (`basic_auth_users = { user = "$2y$10$…" }`).
//!
//! bcrypt is slow on purpose (about 50 ms per check at cost 10), and a
//! scraper sends its credentials with every scrape. So a successful check
//! is remembered, keyed by an HMAC of the presented user and password under
//! a key made at start-up: a repeat costs one HMAC, and the cache never
//! holds the credentials themselves. Failures are not remembered. bcrypt
//! runs on a blocking thread, one check at a time, so a flood of wrong
//! passwords costs at most one core and never stalls the runtime. An
//! unknown user is checked against a configured hash all the same, so the
//! time a refusal takes does not tell which user names exist.

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use hyper::header::HeaderValue;
use ring::hmac;

/// The `WWW-Authenticate` value of a refusal.
pub const CHALLENGE: &str = "Basic realm=\"pgvigil\"";

/// At most this many verified credentials are remembered; the cache is
/// emptied when full (only holders of a valid password can fill it).
const CACHE_MAX: usize = 1024;

/// The configured users and what has been verified so far.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    key: hmac::Key,
    verified: std::sync::Mutex<HashSet<Vec<u8>>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Authentication for `users` (name to bcrypt hash, validated by the
    /// config); `None` when there are none, which means no authentication.
    pub fn new(users: &BTreeMap<String, String>) -> Option<BasicAuth> {
        if users.is_empty() {
            return None;
        }
        let rng = ring::rand::SystemRandom::new();
        // Without randomness, fall back to a key from the clock: the cache
        // still never holds credentials in the clear.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            hmac::Key::new(hmac::HMAC_SHA256, &now.as_nanos().to_le_bytes())
        });
        Some(BasicAuth {
            users: users.clone(),
            key,
            verified: std::sync::Mutex::new(HashSet::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether the `Authorization` header names a configured user with the
    /// right password.
    pub async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let tag = self.tag(&user, &password);
        if self.remembered(&tag) {
            return true;
        }
        let _turn = self.one_at_a_time.lock().await;
        // The same credentials may have been verified while we queued.
        if self.remembered(&tag) {
            return true;
        }
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => match self.users.values().next() {
                Some(hash) => (hash.clone(), false),
                None => return false,
            },
        };
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let allowed = matches && known;
        if allowed {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= CACHE_MAX {
                verified.clear();
            }
            verified.insert(tag);
        }
        allowed
    }

    /// Whether these are the configured users and hashes: a reload that
    /// leaves them alone keeps what was verified.
    pub fn has_users(&self, users: &BTreeMap<String, String>) -> bool {
        self.users == *users
    }

    fn tag(&self, user: &str, password: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password);
        ctx.sign().as_ref().to_vec()
    }

    fn remembered(&self, tag: &[u8]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(tag)
    }
}

/// User and password of a `Basic` authorization header.
fn credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = header.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Why a configured hash cannot be used; `None` when it can.
pub fn check_hash(hash: &str) -> Option<String> {
    match hash.parse::<bcrypt::HashParts>() {
        Err(e) => Some(format!(
            "not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 USER` or a bcrypt tool"
        )),
        Ok(parts) if !(4..=31).contains(&parts.get_cost()) => Some(format!(
            "bcrypt cost {} is outside 4..=31",
            parts.get_cost()
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn credentials_are_read_from_a_basic_header() {
        let cases = [
            (header("u", "p:w"), Some(("u", &b"p:w"[..]))),
            (header("u", ""), Some(("u", &b""[..]))),
            (
                HeaderValue::from_static("basic dTpw"),
                Some(("u", &b"p"[..])),
            ),
            (HeaderValue::from_static("Bearer dTpw"), None),
            (HeaderValue::from_static("Basic"), None),
            (HeaderValue::from_static("Basic !!!"), None),
            (HeaderValue::from_static("Basic dXNlcg=="), None), // "user", no colon
        ];
        for (value, want) in cases {
            let got = credentials(&value);
            assert_eq!(
                got.as_ref().map(|(u, p)| (u.as_str(), p.as_slice())),
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn hashes_are_checked() {
        let good = bcrypt::hash("x", 4).unwrap();
        assert_eq!(check_hash(&good), None);
        assert!(
            check_hash("plain-password")
                .unwrap()
                .contains("not a bcrypt hash")
        );
        let cost_too_low = good.replacen("$04$", "$03$", 1);
        assert!(check_hash(&cost_too_low).unwrap().contains("cost 3"));
    }

    #[tokio::test]
    async fn right_credentials_pass_and_are_remembered() {
        let users = BTreeMap::from([
            ("alice".to_string(), bcrypt::hash("wonderland", 4).unwrap()),
            ("bob".to_string(), bcrypt::hash("builder", 4).unwrap()),
        ]);
        let auth = BasicAuth::new(&users).unwrap();
        assert!(!auth.allows(None).await);
        assert!(!auth.allows(Some(&header("alice", "builder"))).await);
        assert!(!auth.allows(Some(&header("carol", "wonderland"))).await);
        assert!(auth.verified.lock().unwrap().is_empty());
        assert!(auth.allows(Some(&header("alice", "wonderland"))).await);
        assert!(auth.allows(Some(&header("bob", "builder"))).await);
        assert_eq!(auth.verified.lock().unwrap().len(), 2);
        // A remembered check does not run bcrypt: it passes even while
        // another check holds the bcrypt turn.
        let _turn = auth.one_at_a_time.lock().await;
        assert!(auth.allows(Some(&header("alice", "wonderland"))).await);
        assert!(BasicAuth::new(&BTreeMap::new()).is_none());
    }
}
