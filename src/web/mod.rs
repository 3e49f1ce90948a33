//! Who may reach the HTTP server and how: `[web]` in the config.
//!
//! - [`auth`]: HTTP basic authentication against bcrypt hashes, with a
//!   cache so scrapes do not pay bcrypt's cost every time.
//! - [`tls`]: the certificate and key for HTTPS, loaded into rustls.
//! - [`slots`]: the cap on open connections, and which one gives way when a
//!   new client arrives at the cap.
//!
//! Nothing here knows about endpoints; `http.rs` decides which paths need
//! credentials.

pub mod auth;
pub mod slots;
pub mod tls;
