//! Streaming replication for tests: a primary with physical replicas, an
//! optional physical slot per replica and an optional logical slot, and
//! helpers to pause and resume replay, stop and start a replica, promote
//! one, and wait until one streams or has caught up. Plus raw replication
//! connections ([`ReplicationClient`]) for walsenders that are not
//! replicas: a logical consumer, a base backup, a WAL archiver.
//!
//! A replica is a base backup of the primary: made with `pg_basebackup`
//! when the binary directory has one of the server's major version, else
//! (the npm server packages ship only initdb, pg_ctl and postgres) with the
//! low-level backup API and a file copy. Either way it gets
//! `standby.signal`, the harness settings with its own port and socket,
//! and its WAL from one of three [`Upstream`]s:
//! - by default, streaming over the primary's Unix socket as `postgres`
//!   (trusted locally);
//! - streaming over TCP through a [`Proxy`] of its own, to recreate a slow
//!   or silent link. The template cluster's pg_hba.conf asks for
//!   scram-sha-256 over TCP (initdb `--auth-host=scram-sha-256`), so the
//!   replica logs in as [`REPLICATION_ROLE`], a `REPLICATION` role with a
//!   password, created on the primary before the base backup;
//! - from the primary's WAL archive with `restore_command`, without a WAL
//!   receiver: the primary then runs with `archive_mode = on` and an
//!   `archive_command` copying into a directory of its own that the
//!   replicas' `restore_command` reads.
//!
//! Every server is stopped and removed when dropped, also when the test
//! panics.
//!
//! ```ignore
//! let set = replicated(1, ReplicaOptions { slot: true, ..Default::default() }).await;
//! let replica = &set.replicas[0];
//! set.primary.pg.connect().await.batch_execute("CREATE TABLE t ()").await?;
//! replica.wait_caught_up(&set.primary.pg).await;
//! replica.pause_replay().await;
//! write_wal(&set.primary.pg.connect().await, 10).await;
//! let config = set.config(""); // targets "primary" and "replica1" as pgvigil
//!
//! // A replica behind a slow link:
//! let set = replicated(1, ReplicaOptions { upstream: Upstream::Proxy, ..Default::default() }).await;
//! set.replicas[0].proxy().set(Mode::Throttle { bytes_per_second: 1_000_000 });
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::Fixture;
use super::pg::{self, PgOptions, PgServer, chown_to_postgres, eventually};
use super::proxy::Proxy;

mod backup;
pub mod walsender;
pub use walsender::ReplicationClient;

/// How long the helpers wait for replication to get somewhere.
const WAIT: Duration = Duration::from_secs(60);

/// The logical slot [`ReplicaOptions::logical_slot`] creates.
pub const LOGICAL_SLOT: &str = "logical_slot";

/// The role replicas of [`Upstream::Proxy`] stream as, over TCP.
pub const REPLICATION_ROLE: &str = "pgvigil_replicator";
/// Its password (a test secret; it ends up in the replica's
/// `primary_conninfo`).
const REPLICATION_PASSWORD: &str = "replicator-secret";

/// Where a replica gets its WAL from (see the module header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Upstream {
    /// Streaming over the primary's Unix socket.
    #[default]
    Socket,
    /// Streaming over TCP through a [`Proxy`] of its own
    /// ([`Replica::proxy`]), forwarding until the test says otherwise.
    Proxy,
    /// `restore_command` from the primary's archive; no WAL receiver.
    Archive,
}

/// What [`replicated`] sets up besides the primary and its replicas.
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    /// Each replica streams through its own physical slot on the primary,
    /// named like the replica (`replica1`, `replica2`, …), created before
    /// its base backup.
    pub slot: bool,
    /// The primary runs with `wal_level = logical` and gets one logical
    /// slot, [`LOGICAL_SLOT`], with the `test_decoding` plugin (nobody
    /// consumes it: it holds WAL and `catalog_xmin` from its creation on).
    pub logical_slot: bool,
    /// Extra postgresql.conf lines for every server, primary and replicas.
    pub conf: Vec<String>,
    /// Where the replicas get their WAL from.
    pub upstream: Upstream,
    /// The `application_name` every replica streams as, instead of its
    /// own name: `Some("walreceiver")` recreates replicas that kept the
    /// default. Give them slots too, or [`Replica::wait_streaming`]
    /// cannot tell them apart either.
    pub application_name: Option<String>,
}

/// A primary and its streaming replicas.
pub struct Replicated {
    /// The replicas, `replica1` first. (Declared before the primary so that
    /// they are dropped first.)
    pub replicas: Vec<Replica>,
    /// The primary, with the `pgvigil` monitoring role and
    /// pg_stat_statements set up as [`Fixture`] does.
    pub primary: Fixture,
    /// The WAL archive of [`Upstream::Archive`]: the directory the primary
    /// archives into and the replicas restore from, held until dropped.
    /// (Declared last: removed after the servers stop.)
    _archive: Option<tempfile::TempDir>,
}

impl Replicated {
    /// An agent config watching every server: targets named `primary`,
    /// `replica1`, … with 1 s intervals and passwords from files, plus
    /// `extra_collectors` TOML appended to `[collectors]`.
    pub fn config(&self, extra_collectors: &str) -> String {
        let mut config = target_toml(
            "primary",
            &self.primary.dsn(),
            &self.primary.password_file(),
        );
        for replica in &self.replicas {
            config += &target_toml(&replica.name, &replica.dsn(), &replica.password_file());
        }
        config + &format!("[collectors]\ndefault_interval = \"1s\"\n{extra_collectors}\n")
    }
}

fn target_toml(name: &str, dsn: &str, password_file: &Path) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\ndsn = \"{dsn}\"\npassword_file = \"{}\"\n\n",
        password_file.display()
    )
}

/// A physical replica.
pub struct Replica {
    /// Its name: `replica1`, `replica2`, …; also its `application_name` in
    /// the primary's `pg_stat_replication` unless
    /// [`ReplicaOptions::application_name`] says otherwise.
    pub name: String,
    /// The `application_name` it streams as.
    pub application_name: String,
    /// The physical slot on the primary it streams through, if any.
    pub slot: Option<String>,
    /// The server.
    pub pg: PgServer,
    /// The `pgvigil` role's password (the primary's: roles replicate).
    pub password: String,
    /// The proxy between it and the primary, for [`Upstream::Proxy`].
    /// (Declared after the server: the replica stops before its link goes.)
    proxy: Option<Proxy>,
    upstream_socket: PathBuf,
    upstream_port: u16,
}

impl Replica {
    /// Its TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.pg.port
    }

    /// A superuser connection over the Unix socket.
    pub async fn connect(&self) -> Client {
        self.pg.connect().await
    }

    /// The TCP DSN of the monitoring role without its password, as
    /// [`Fixture::dsn`].
    pub fn dsn(&self) -> String {
        format!(
            "postgresql://pgvigil@127.0.0.1:{}/postgres?sslmode=disable",
            self.pg.port
        )
    }

    /// A file holding the monitoring role's password, as `password_file`
    /// expects.
    pub fn password_file(&self) -> PathBuf {
        let file = self.pg.scratch().join("pgvigil.password");
        std::fs::write(&file, format!("{}\n", self.password)).expect("write password file");
        file
    }

    /// Environment for `pgvigil once --dsn <Replica::dsn>`, as
    /// [`Fixture::once_env`].
    pub fn once_env(&self) -> Vec<(&'static str, String)> {
        vec![("PGPASSWORD", self.password.clone())]
    }

    /// The proxy its WAL streams through; panics unless it was made with
    /// [`Upstream::Proxy`].
    pub fn proxy(&self) -> &Proxy {
        self.proxy
            .as_ref()
            .unwrap_or_else(|| panic!("{} does not stream through a proxy", self.name))
    }

    /// Pauses WAL replay: WAL still arrives (`pg_last_wal_receive_lsn()`
    /// moves) but is not applied. Returns once the pause is in effect on
    /// 14+; on 13, which cannot tell, a record being applied at the moment
    /// may still complete.
    pub async fn pause_replay(&self) {
        let client = self.connect().await;
        client
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .expect("pg_wal_replay_pause");
        if pg::major_version() >= 14 {
            eventually(WAIT, "replay to pause", || async {
                let row = client
                    .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                    .await
                    .expect("pg_get_wal_replay_pause_state");
                (row.get::<_, String>(0) == "paused").then_some(())
            })
            .await;
        }
    }

    /// Resumes WAL replay.
    pub async fn resume_replay(&self) {
        self.connect()
            .await
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .expect("pg_wal_replay_resume");
    }

    /// Stops the replica (fast shutdown), keeping its data for
    /// [`Replica::start`]. Its slot, if any, stays on the primary and keeps
    /// WAL from its `restart_lsn` on.
    pub fn stop(&self) {
        self.pg.stop();
    }

    /// Starts a stopped replica again on the same port; it reconnects to
    /// its upstream by itself (see [`Replica::wait_streaming`]).
    pub fn start(&self) {
        self.pg.restart_stopped();
    }

    /// Promotes the replica to a primary and waits until it is one.
    pub async fn promote(&self) {
        let promoted: bool = self
            .connect()
            .await
            .query_one("SELECT pg_promote(true, 60)", &[])
            .await
            .expect("pg_promote")
            .get(0);
        assert!(promoted, "{} did not promote within 60 s", self.name);
    }

    /// Waits until the primary's `pg_stat_replication` shows this replica
    /// (by `application_name`, and slot if it has one) with state
    /// `streaming`.
    pub async fn wait_streaming(&self) {
        let upstream = self.connect_upstream().await;
        let what = format!("{} to stream", self.name);
        eventually(WAIT, &what, || async {
            let rows = upstream
                .query(
                    "SELECT r.state FROM pg_stat_replication r
                       LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
                      WHERE r.application_name = $1 AND ($2::text IS NULL OR s.slot_name = $2)",
                    &[&self.application_name, &self.slot],
                )
                .await
                .expect("query pg_stat_replication");
            rows.iter()
                .any(|r| r.get::<_, Option<String>>(0).as_deref() == Some("streaming"))
                .then_some(())
        })
        .await;
    }

    /// Waits until the replica has replayed everything `primary` had
    /// written when called: `pg_last_wal_replay_lsn()` ≥ the primary's
    /// current LSN, see [`inserted_lsn`].
    pub async fn wait_caught_up(&self, primary: &PgServer) {
        let target = inserted_lsn(&primary.connect().await).await;
        let client = self.connect().await;
        let what = format!("{} to replay up to {}", self.name, format_lsn(target));
        eventually(WAIT, &what, || async {
            (self.replay_lsn_with(&client).await >= target).then_some(())
        })
        .await;
    }

    /// `pg_last_wal_receive_lsn()`: how far WAL has arrived (0 if none did
    /// by streaming yet).
    pub async fn receive_lsn(&self) -> u64 {
        lsn_of(
            &self.connect().await,
            "SELECT pg_last_wal_receive_lsn()::text",
        )
        .await
    }

    /// `pg_last_wal_replay_lsn()`: how far WAL has been applied.
    pub async fn replay_lsn(&self) -> u64 {
        self.replay_lsn_with(&self.connect().await).await
    }

    async fn replay_lsn_with(&self, client: &Client) -> u64 {
        lsn_of(client, "SELECT pg_last_wal_replay_lsn()::text").await
    }

    async fn connect_upstream(&self) -> Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.upstream_socket)
            .port(self.upstream_port)
            .user("postgres")
            .dbname("postgres")
            .application_name("pgvigil-tests");
        let (client, connection) = config.connect(NoTls).await.expect("connect to upstream");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

/// Starts a primary (with the `pgvigil` role, `wal_keep_size = 128MB`,
/// `wal_level = logical` when `options.logical_slot`, archiving for
/// [`Upstream::Archive`]) and `replicas` replicas of it, and waits until
/// all of them stream (or, from an archive, accept connections).
pub async fn replicated(replicas: usize, options: ReplicaOptions) -> Replicated {
    let mut conf = vec!["wal_keep_size = '128MB'".to_string()];
    if options.logical_slot {
        conf.push("wal_level = logical".into());
    }
    let archive = (options.upstream == Upstream::Archive).then(|| {
        let dir = tempfile::Builder::new()
            .prefix("pgvigil-it-archive-")
            .tempdir()
            .expect("archive dir");
        pg::open_up(dir.path());
        chown_to_postgres(dir.path());
        dir
    });
    if let Some(dir) = &archive {
        let dir = dir.path().to_str().expect("utf-8 path");
        conf.push("archive_mode = on".into());
        conf.push(format!(
            "archive_command = {}",
            conf_string(&format!("test ! -f '{dir}/%f' && cp %p '{dir}/%f'"))
        ));
    }
    conf.extend(options.conf.iter().cloned());
    let primary = Fixture::start_with(PgOptions { conf: conf.clone() }).await;
    if options.logical_slot {
        primary
            .pg
            .connect()
            .await
            .query_one(
                "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
                &[&LOGICAL_SLOT],
            )
            .await
            .expect("create the logical slot");
    }
    if options.upstream == Upstream::Proxy {
        // Before the base backups: the role comes over with them.
        primary
            .pg
            .connect()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {REPLICATION_ROLE} REPLICATION LOGIN PASSWORD '{REPLICATION_PASSWORD}'"
            ))
            .await
            .expect("create the replication role");
    }
    let mut built = Vec::new();
    for i in 1..=replicas {
        let name = format!("replica{i}");
        let slot = options.slot.then(|| name.clone());
        let source = match (&archive, options.upstream) {
            (Some(dir), _) => Source::Archive(dir.path()),
            (None, Upstream::Proxy) => Source::Proxy(Proxy::start(primary.pg.port)),
            (None, _) => Source::Socket,
        };
        let application_name = options.application_name.clone().unwrap_or(name.clone());
        built.push(replica_of(&primary, name, application_name, slot, source, &conf).await);
    }
    if options.upstream != Upstream::Archive {
        for replica in &built {
            replica.wait_streaming().await;
        }
    }
    Replicated {
        replicas: built,
        primary,
        _archive: archive,
    }
}

/// Where [`replica_of`] points a new replica.
enum Source<'a> {
    Socket,
    Proxy(Proxy),
    Archive(&'a Path),
}

/// A new replica of `primary`, started, getting its WAL from `source`,
/// streaming as `application_name` through `slot` if any (created here),
/// with `conf` added to its settings.
async fn replica_of(
    primary: &Fixture,
    name: String,
    application_name: String,
    slot: Option<String>,
    source: Source<'_>,
    conf: &[String],
) -> Replica {
    let upstream = &primary.pg;
    if let Some(slot) = &slot {
        upstream
            .connect()
            .await
            .query_one(
                "SELECT pg_create_physical_replication_slot($1, true)",
                &[slot],
            )
            .await
            .expect("create the physical slot");
    }
    let mut pg = PgServer::unstarted();
    let data = pg.data_dir();
    if backup::has_matching_basebackup() {
        backup::pg_basebackup(upstream, &data, slot.as_deref());
    } else {
        backup::low_level_backup(upstream, &data).await;
    }
    let signal = data.join("standby.signal");
    std::fs::write(&signal, "").expect("write standby.signal");

    let app = conninfo_value(&application_name);
    let conninfo = match &source {
        Source::Socket => Some(format!(
            "host={} port={} user=postgres dbname=postgres application_name={app}",
            conninfo_value(&upstream.socket_dir().to_string_lossy()),
            upstream.port
        )),
        Source::Proxy(proxy) => Some(format!(
            "host=127.0.0.1 port={} user={REPLICATION_ROLE} password={} dbname=postgres application_name={app}",
            proxy.port,
            conninfo_value(REPLICATION_PASSWORD),
        )),
        Source::Archive(_) => None,
    };
    let mut conf = conf.to_vec();
    if let Some(conninfo) = conninfo {
        conf.push(format!("primary_conninfo = {}", conf_string(&conninfo)));
    }
    if let Source::Archive(dir) = &source {
        let dir = dir.to_str().expect("utf-8 path");
        conf.push(format!(
            "restore_command = {}",
            conf_string(&format!("cp '{dir}/%f' %p"))
        ));
    }
    if let Some(slot) = &slot {
        conf.push(format!("primary_slot_name = {}", conf_string(slot)));
    }
    // Prompt feedback, so the primary's view (replay_lsn, lag) is fresh.
    conf.push("wal_receiver_status_interval = '1s'".into());
    pg.start_prepared(&PgOptions { conf });
    Replica {
        name,
        application_name,
        slot,
        pg,
        password: primary.password.clone(),
        proxy: match source {
            Source::Proxy(proxy) => Some(proxy),
            Source::Socket | Source::Archive(_) => None,
        },
        upstream_socket: upstream.socket_dir(),
        upstream_port: upstream.port,
    }
}

/// A value in a libpq key=value connection string.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A string in postgresql.conf.
fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Parses an LSN as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(text: &str) -> u64 {
    let (hi, lo) = text
        .split_once('/')
        .unwrap_or_else(|| panic!("not an LSN: {text:?}"));
    let hi = u64::from_str_radix(hi, 16).unwrap_or_else(|_| panic!("not an LSN: {text:?}"));
    let lo = u64::from_str_radix(lo, 16).unwrap_or_else(|_| panic!("not an LSN: {text:?}"));
    (hi << 32) | lo
}

/// Prints an LSN as PostgreSQL does.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// `pg_current_wal_lsn()` of a primary: how far it has written WAL out.
pub async fn current_lsn(client: &Client) -> u64 {
    lsn_of(client, "SELECT pg_current_wal_lsn()::text").await
}

/// The end of the last WAL record a primary inserted: what a replica has
/// replayed once it has caught up.
///
/// Not `pg_current_wal_lsn()`: the harness runs with `synchronous_commit =
/// off`, so a commit that returned may not be written out yet (the WAL
/// writer does that within `wal_writer_delay`, and the replica then gets
/// it). And `pg_current_wal_insert_lsn()` is where the next record starts:
/// past the page header when the last record ended on a page boundary,
/// where a replica's replay LSN stops; so back off over that header.
pub async fn inserted_lsn(client: &Client) -> u64 {
    let row = client
        .query_one(
            "SELECT l::text, (pg_walfile_name_offset(l)).file_offset,
                    current_setting('wal_block_size')::int
             FROM pg_current_wal_insert_lsn() l",
            &[],
        )
        .await
        .expect("pg_current_wal_insert_lsn");
    let lsn = parse_lsn(row.get(0));
    let in_segment = row.get::<_, i32>(1) as u64;
    let block = row.get::<_, i32>(2) as u64;
    // SizeOfXLogLongPHD and SizeOfXLogShortPHD on 64-bit platforms.
    let header = if in_segment == 40 {
        40
    } else if in_segment % block == 24 {
        24
    } else {
        0
    };
    lsn - header
}

/// The LSN `sql` (one `text` column) returns; 0 for NULL.
async fn lsn_of(client: &Client, sql: &str) -> u64 {
    let row = client.query_one(sql, &[]).await.expect(sql);
    row.get::<_, Option<String>>(0)
        .map(|t| parse_lsn(&t))
        .unwrap_or(0)
}

/// Closes `primary`'s current WAL segment (`pg_switch_wal()`) and waits
/// until its archiver has archived it ([`Upstream::Archive`]). Returns
/// the end of the WAL now in the archive: the end of that segment.
pub async fn archive_current_segment(primary: &PgServer) -> u64 {
    let client = primary.connect().await;
    let row = client
        .query_one(
            "SELECT pg_walfile_name(pg_switch_wal()),
                    pg_size_bytes(current_setting('wal_segment_size'))::float8",
            &[],
        )
        .await
        .expect("pg_switch_wal");
    let segment: String = row.get(0);
    let segment_size = row.get::<_, f64>(1) as u64;
    eventually(WAIT, &format!("{segment} to be archived"), || async {
        let row = client
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .await
            .expect("pg_stat_archiver");
        row.get::<_, Option<String>>(0)
            .filter(|last| *last >= segment)
            .map(|_| ())
    })
    .await;
    // TTTTTTTTLLLLLLLLSSSSSSSS: timeline, then the segment number as
    // (LSN / 4 GiB, LSN % 4 GiB / segment size).
    let hex = |range: std::ops::Range<usize>| u64::from_str_radix(&segment[range], 16).unwrap();
    let segment_number = hex(8..16) * (0x1_0000_0000 / segment_size) + hex(16..24);
    (segment_number + 1) * segment_size
}

/// Writes about `megabytes` MB of table data (and as much WAL) on a
/// primary, into the table `pgvigil_wal_filler`.
pub async fn write_wal(client: &Client, megabytes: usize) {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS pgvigil_wal_filler (pad text);
             INSERT INTO pgvigil_wal_filler
                 SELECT repeat('x', 1000) FROM generate_series(1, {})",
            megabytes * 1000
        ))
        .await
        .expect("write WAL");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{outputs, pgvigil};

    async fn one(client: &Client, sql: &str) -> String {
        client
            .query_one(&format!("SELECT ({sql})::text"), &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0)
    }

    /// `active` and `restart_lsn` of a slot.
    async fn slot_state(client: &Client, slot: &str) -> (bool, u64) {
        let row = client
            .query_one(
                "SELECT active, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap();
        (row.get(0), parse_lsn(row.get(1)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_stream_through_slots_and_see_the_primarys_writes() {
        let set = replicated(
            2,
            ReplicaOptions {
                slot: true,
                logical_slot: true,
                ..Default::default()
            },
        )
        .await;
        let primary = set.primary.pg.connect().await;
        let states = one(
            &primary,
            "SELECT string_agg(application_name || ':' || state, ',' ORDER BY application_name) FROM pg_stat_replication",
        )
        .await;
        assert_eq!(states, "replica1:streaming,replica2:streaming");
        let slots = one(
            &primary,
            "SELECT string_agg(slot_name || ':' || slot_type || ':' || active, ',' ORDER BY slot_name) FROM pg_replication_slots",
        )
        .await;
        assert_eq!(
            slots,
            "logical_slot:logical:false,replica1:physical:true,replica2:physical:true"
        );
        assert_eq!(
            one(&primary, "current_setting('wal_level')").await,
            "logical"
        );

        primary
            .batch_execute(
                "CREATE TABLE seen (n int); INSERT INTO seen SELECT generate_series(1, 42)",
            )
            .await
            .unwrap();
        for replica in &set.replicas {
            replica.wait_caught_up(&set.primary.pg).await;
            let client = replica.connect().await;
            assert_eq!(one(&client, "pg_is_in_recovery()").await, "true");
            assert_eq!(one(&client, "SELECT count(*) FROM seen").await, "42");

            // The monitoring role came over too: the DSN and password work.
            let mut config: tokio_postgres::Config = replica.dsn().parse().unwrap();
            let password = std::fs::read_to_string(replica.password_file()).unwrap();
            config.password(password.trim_end_matches('\n'));
            let (client, connection) = config.connect(NoTls).await.expect("pgvigil on the replica");
            tokio::spawn(connection);
            assert_eq!(one(&client, "current_user").await, "pgvigil");
            assert_eq!(one(&client, "pg_is_in_recovery()").await, "true");
        }

        // The agent accepts a config for all three.
        let file = set.primary.pg.scratch().join("replicated.toml");
        std::fs::write(&file, set.config("")).unwrap();
        let out = pgvigil(&["check-config", file.to_str().unwrap()], &[]);
        let (stdout, stderr) = outputs(&out);
        assert!(out.status.success(), "{stdout}{stderr}\n{}", set.config(""));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paused_replay_receives_but_does_not_apply() {
        let set = replicated(1, ReplicaOptions::default()).await;
        let replica = &set.replicas[0];
        let primary = set.primary.pg.connect().await;
        replica.pause_replay().await;
        let client = replica.connect().await;
        assert_eq!(one(&client, "pg_is_wal_replay_paused()").await, "true");
        let replayed = replica.replay_lsn().await;
        let received = replica.receive_lsn().await;

        write_wal(&primary, 10).await;
        let written = current_lsn(&primary).await;
        assert!(written - received > 9_000_000, "{written} {received}");
        eventually(WAIT, "WAL to arrive at the paused replica", || async {
            (replica.receive_lsn().await >= written).then_some(())
        })
        .await;
        assert_eq!(
            replica.replay_lsn().await,
            replayed,
            "replayed while paused"
        );
        assert_eq!(one(&client, "pg_is_wal_replay_paused()").await, "true");
        assert_eq!(
            one(&client, "to_regclass('pgvigil_wal_filler') IS NULL").await,
            "true"
        );

        replica.resume_replay().await;
        replica.wait_caught_up(&set.primary.pg).await;
        assert_eq!(one(&client, "pg_is_wal_replay_paused()").await, "false");
        assert_eq!(
            one(&client, "SELECT count(*) FROM pgvigil_wal_filler").await,
            "10000"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_replica_holds_wal_on_its_slot_until_it_streams_again() {
        let set = replicated(
            1,
            ReplicaOptions {
                slot: true,
                ..Default::default()
            },
        )
        .await;
        let replica = &set.replicas[0];
        let slot = replica.slot.clone().unwrap();
        let primary = set.primary.pg.connect().await;
        let restart_lsn = || slot_state(&primary, &slot);

        replica.stop();
        let (_, held) = eventually(WAIT, "the slot to go inactive", || async {
            let (active, lsn) = restart_lsn().await;
            (!active).then_some(((), lsn))
        })
        .await;
        let before = current_lsn(&primary).await;
        write_wal(&primary, 3).await;
        let after = current_lsn(&primary).await;
        assert!(after > before + 2_500_000, "{before} {after}");
        assert_eq!(
            restart_lsn().await,
            (false, held),
            "the slot moved while its replica was down"
        );
        let retained: i64 = primary
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        assert!(retained as u64 >= after - held, "{retained}");

        replica.start();
        replica.wait_streaming().await;
        replica.wait_caught_up(&set.primary.pg).await;
        eventually(WAIT, "the slot to advance", || async {
            let (active, lsn) = restart_lsn().await;
            (active && lsn >= after).then_some(())
        })
        .await;
        assert_eq!(
            one(
                &replica.connect().await,
                "SELECT count(*) FROM pgvigil_wal_filler"
            )
            .await,
            "3000"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_promoted_replica_leaves_recovery_and_takes_writes() {
        let set = replicated(1, ReplicaOptions::default()).await;
        let replica = &set.replicas[0];
        replica.promote().await;
        let client = replica.connect().await;
        assert_eq!(one(&client, "pg_is_in_recovery()").await, "false");
        client
            .batch_execute(
                "CREATE TABLE after_promotion (n int); INSERT INTO after_promotion VALUES (1)",
            )
            .await
            .expect("write on the promoted replica");
        assert!(replica.port() != set.primary.pg.port);
    }
}
