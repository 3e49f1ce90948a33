//! Free space where PostgreSQL keeps its files: the filesystems of the data
//! directory, the WAL directory and each tablespace, when pgvigil runs on
//! the database host (or shares its volumes, as a sidecar).
//!
//! The paths come from PostgreSQL (`data_directory`, tablespace
//! locations); the filesystems from the host (sysinfo). A path the agent
//! cannot see — another host, or `pg_wal` behind a symlink in a directory
//! only `postgres` may enter — has no series: absent, not zero.
//!
//! Privilege: pg_monitor (pg_read_all_settings for data_directory).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sysinfo::Disks;

use super::{CollectError, Collected, Collector, Context, query};
use crate::desc;
use crate::metric::{Desc, Family};

static SIZE: Desc = desc!(Gauge "pg_filesystem_size", unit = Bytes, ["purpose", "mountpoint"],
    "Size of the filesystem holding PostgreSQL's files (purpose: data, wal, or a tablespace's name).",
    only_when = "pgvigil runs where it can see the server's directories");
static AVAIL: Desc = desc!(Gauge "pg_filesystem_avail", unit = Bytes, ["purpose", "mountpoint"],
    "Space available to PostgreSQL on that filesystem.",
    only_when = "pgvigil runs where it can see the server's directories");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[&SIZE, &AVAIL];

/// The `filesystem` collector.
#[derive(Debug, Default)]
pub struct Filesystem;

const WHAT: &str = "pg_tablespace";

/// The mounted filesystem holding `path`: the longest mount point that is
/// a prefix of it.
fn holding<'a>(disks: &'a Disks, path: &Path) -> Option<&'a sysinfo::Disk> {
    disks
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
}

/// The WAL directory's real place: `pg_wal` may be a symlink elsewhere.
fn wal_dir(data: &Path) -> Option<PathBuf> {
    let link = data.join("pg_wal");
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(&link).ok(),
        Ok(_) => Some(link),
        Err(_) => None,
    }
}

#[async_trait]
impl Collector for Filesystem {
    async fn collect(&mut self, cx: &mut Context<'_>) -> Result<Collected, CollectError> {
        let mut size = Family::new(&SIZE);
        let mut avail = Family::new(&AVAIL);
        let Some(data) = cx.caps.data_directory.clone().filter(|_| cx.caps.colocated) else {
            return Ok(vec![size, avail].into());
        };
        let mut paths = vec![("data".to_string(), data.clone())];
        if let Some(wal) = wal_dir(&data) {
            paths.push(("wal".to_string(), wal));
        }
        for row in query(cx.client, WHAT, TABLESPACES_SQL, &[]).await? {
            let name: String = row.get("name")?;
            let location: String = row.get("location")?;
            if !location.is_empty() {
                paths.push((name, PathBuf::from(location)));
            }
        }
        let disks = tokio::task::spawn_blocking(Disks::new_with_refreshed_list)
            .await
            .ok()
            .and_then(Result::ok);
        let Some(disks) = disks else {
            return Ok(vec![size, avail].into());
        };
        for (purpose, path) in &paths {
            if let Some(disk) = holding(&disks, path) {
                let mount = disk.mount_point().to_string_lossy().into_owned();
                size.push(
                    &[purpose.as_str(), mount.as_str()],
                    disk.total_space() as f64,
                );
                avail.push(
                    &[purpose.as_str(), mount.as_str()],
                    disk.available_space() as f64,
                );
            }
        }
        Ok(vec![size, avail].into())
    }
}

const TABLESPACES_SQL: &str =
    "SELECT spcname::text AS name, pg_catalog.pg_tablespace_location(oid) AS location
                                 FROM pg_catalog.pg_tablespace ORDER BY 1";

/// The SQL this module sends, for recognising it in pg_stat_statements.
pub const OWN_SQL: &[&str] = &[TABLESPACES_SQL];
