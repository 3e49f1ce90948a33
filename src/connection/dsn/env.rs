//! libpq's environment variables (`PGHOST`, `PGPORT`, …).
//!
//! They fill what the DSN left unset, as in psql; each variable stands for
//! one connection key and goes through [`ConnParams::set`], so its value is
//! checked like the key's. Not here: reading the process environment
//! (callers pass a lookup function, so tests need not touch it), the password
//! file (`pgpass.rs`), compiled-in defaults ([`ConnParams::fill_defaults`]).

use super::{ConnParams, DsnError};

/// Environment variables consulted by [`ConnParams::fill_from_env`], with the
/// connection key each one stands for.
const ENV_VARS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGDATABASE", "dbname"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGOPTIONS", "options"),
    ("PGPASSFILE", "passfile"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
];

impl ConnParams {
    /// Fills parameters that are still unset from libpq's environment
    /// variables (`PGHOST`, `PGPORT`, ...), read through `env` so callers and
    /// tests control the environment. Empty variables count as unset.
    pub fn fill_from_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), DsnError> {
        for &(var, key) in ENV_VARS {
            if self.is_set(key) {
                continue;
            }
            let Some(value) = env(var) else { continue };
            self.set(key, &value).map_err(|inner| DsnError::Env {
                var,
                inner: Box::new(inner),
            })?;
        }
        self.check_consistency()
    }
}
