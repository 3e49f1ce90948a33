//! Raw replication connections, for walsenders that are not replicas: a
//! logical consumer, a base backup in progress, a WAL archiver streaming
//! like `pg_receivewal`. The client binaries that would make them
//! (pg_recvlogical, pg_basebackup, pg_receivewal) are missing from the npm
//! server packages and refuse servers of other majors, so this speaks the
//! few messages of the protocol needed, over the server's Unix socket as
//! `postgres` (trusted locally).
//!
//! Each connection's walsender shows in pg_stat_replication until the
//! [`ReplicationClient`] is dropped. What the server sends is read and
//! thrown away, and no feedback is ever sent: like a WAL archiver, these
//! report no write, flush or replay position. wal_sender_timeout (60 s by
//! default) ends them if they live longer.
//!
//! ```ignore
//! let logical = ReplicationClient::logical(&set.primary.pg, LOGICAL_SLOT).await;
//! let backup = ReplicationClient::base_backup(&set.primary.pg).await;
//! ```

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::super::pg::{self, PgServer};

/// One replication connection; its walsender goes away when dropped.
pub struct ReplicationClient {
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for ReplicationClient {
    fn drop(&mut self) {
        // Dropping the task drops the socket: the walsender sees EOF.
        self.reader.abort();
    }
}

impl ReplicationClient {
    /// A logical walsender decoding `slot` (made with `test_decoding`), as
    /// `application_name = 'logical_consumer'`.
    pub async fn logical(server: &PgServer, slot: &str) -> ReplicationClient {
        let sql = format!("START_REPLICATION SLOT {slot} LOGICAL 0/0");
        ReplicationClient::start(server, "database", "logical_consumer", &sql).await
    }

    /// A base backup that stays in state `backup`: the server sends at
    /// 32 kB/s (`MAX_RATE`, its minimum), so a small cluster takes many
    /// minutes. `application_name = 'base_backup'`.
    pub async fn base_backup(server: &PgServer) -> ReplicationClient {
        let sql = if pg::major_version() >= 15 {
            "BASE_BACKUP (LABEL 'pgvigil-tests', CHECKPOINT 'fast', MAX_RATE 32)"
        } else {
            "BASE_BACKUP LABEL 'pgvigil-tests' FAST MAX_RATE 32"
        };
        ReplicationClient::start(server, "true", "base_backup", sql).await
    }

    /// A physical WAL stream from the current position with no feedback,
    /// as `pg_receivewal` (or `pg_basebackup -X stream`) makes.
    /// `application_name = 'wal_archiver'`.
    pub async fn wal_stream(server: &PgServer) -> ReplicationClient {
        let lsn: String = server
            .connect()
            .await
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .await
            .expect("pg_current_wal_flush_lsn")
            .get(0);
        let sql = format!("START_REPLICATION PHYSICAL {lsn}");
        ReplicationClient::start(server, "true", "wal_archiver", &sql).await
    }

    /// Connects with `replication = <mode>`, sends `sql` and checks that
    /// the server accepted it; then reads and drops all that follows.
    async fn start(server: &PgServer, mode: &str, application_name: &str, sql: &str) -> Self {
        let path = server
            .socket_dir()
            .join(format!(".s.PGSQL.{}", server.port));
        let mut stream = UnixStream::connect(&path)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        let mut startup = Vec::new();
        startup.extend(196_608_i32.to_be_bytes()); // protocol 3.0
        for (key, value) in [
            ("user", "postgres"),
            ("database", "postgres"),
            ("replication", mode),
            ("application_name", application_name),
        ] {
            for text in [key, value] {
                startup.extend(text.as_bytes());
                startup.push(0);
            }
        }
        startup.push(0);
        let mut message = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        message.extend(startup);
        stream.write_all(&message).await.expect("startup message");
        // Authentication (trusted: AuthenticationOk), parameters, key data,
        // then ReadyForQuery.
        loop {
            let (kind, body) = read_message(&mut stream).await;
            match kind {
                b'R' if body[..4] == [0, 0, 0, 0] => {}
                b'R' => panic!("replication connection: asked to authenticate"),
                b'E' => panic!("replication connection: {}", error_text(&body)),
                b'Z' => break,
                _ => {}
            }
        }
        let mut query = vec![b'Q'];
        query.extend(((sql.len() + 5) as i32).to_be_bytes());
        query.extend(sql.as_bytes());
        query.push(0);
        stream
            .write_all(&query)
            .await
            .expect("send replication command");
        // The first answer that is not a notice: an error, or the start
        // of the stream (CopyBothResponse) or of the backup's result sets.
        loop {
            match read_message(&mut stream).await {
                (b'N', _) => {}
                (b'E', body) => panic!("{sql}: {}", error_text(&body)),
                _ => break,
            }
        }
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        ReplicationClient { reader }
    }
}

/// One backend message: its type byte and body.
async fn read_message(stream: &mut UnixStream) -> (u8, Vec<u8>) {
    let kind = stream.read_u8().await.expect("read message type");
    let len = stream.read_i32().await.expect("read message length");
    let mut body = vec![0u8; usize::try_from(len - 4).expect("message length")];
    stream.read_exact(&mut body).await.expect("read message");
    (kind, body)
}

/// The message field ('M') of an ErrorResponse.
fn error_text(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"M"))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
