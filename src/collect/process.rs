//! The agent's own process metrics (`process_*`, the names every Prometheus
//! client library uses) and `pgvigil_build_info`.
//!
//! Unlike the PostgreSQL collectors this one is sampled when a scrape
//! encodes: it reads only this process's /proc entries, costs microseconds,
//! and CPU seconds should be as fresh as the scrape.

use std::sync::Mutex;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::desc;
use crate::metric::{Desc, Family};

static BUILD_INFO: Desc =
    desc!(Info "pgvigil_build", ["version", "revision"], "pgvigil's version and git revision.");
static RESIDENT: Desc = desc!(Gauge "process_resident_memory", unit = Bytes, [], "Resident memory of the pgvigil process.");
static VIRTUAL: Desc = desc!(Gauge "process_virtual_memory", unit = Bytes, [], "Virtual memory of the pgvigil process.");
static CPU: Desc = desc!(Counter "process_cpu", unit = Seconds, [], "CPU time (user and system) used by the pgvigil process.");
static START: Desc = desc!(Gauge "process_start_time", unit = Seconds, [], "When the pgvigil process started, as a Unix time.");
static OPEN_FDS: Desc =
    desc!(Gauge "process_open_fds", [], "Open file descriptors of the pgvigil process.");
static MAX_FDS: Desc =
    desc!(Gauge "process_max_fds", [], "The open file descriptor limit of the pgvigil process.");

/// This collector's metric families.
pub static METRICS: &[&Desc] = &[
    &BUILD_INFO,
    &RESIDENT,
    &VIRTUAL,
    &CPU,
    &START,
    &OPEN_FDS,
    &MAX_FDS,
];

/// The version string and git revision baked in at build time.
pub fn version() -> (&'static str, &'static str) {
    (env!("CARGO_PKG_VERSION"), env!("PGVIGIL_GIT_REVISION"))
}

/// Samples this process on demand.
#[derive(Debug)]
pub struct ProcessSampler {
    system: Mutex<Option<System>>,
    pid: Option<Pid>,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        ProcessSampler {
            system: Mutex::new(System::new().ok()),
            pid: sysinfo::get_current_pid().ok(),
        }
    }
}

impl ProcessSampler {
    /// The build info and whatever process figures the OS gives us.
    pub fn sample(&self) -> Vec<Family> {
        let (version, revision) = version();
        let mut build = Family::new(&BUILD_INFO);
        build.push_info(&[version, revision]);
        let mut families = vec![build];

        let mut guard = self.system.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(system), Some(pid)) = (guard.as_mut(), self.pid) else {
            return families;
        };
        let kind = ProcessRefreshKind::nothing()
            .with_memory()
            .with_cpu()
            .without_tasks();
        system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, kind);
        if let Some(p) = system.process(pid) {
            families.push(Family::single(&RESIDENT, p.memory() as f64));
            families.push(Family::single(&VIRTUAL, p.virtual_memory() as f64));
            families.push(Family::single(
                &CPU,
                p.accumulated_cpu_time() as f64 / 1000.0,
            ));
            families.push(Family::single(&START, p.start_time() as f64));
            if let Some(n) = p.open_files() {
                families.push(Family::single(&OPEN_FDS, n as f64));
            }
            if let Some(n) = p.open_files_limit() {
                families.push(Family::single(&MAX_FDS, n as f64));
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let families = ProcessSampler::default().sample();
        let names: Vec<_> = families.iter().map(|f| f.desc.exposed_name()).collect();
        for want in [
            "pgvigil_build_info",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        let resident = families
            .iter()
            .find(|f| f.desc.name == "process_resident_memory")
            .unwrap();
        assert!(matches!(resident.series[0].value, crate::metric::Value::Number(v) if v > 1e6));
    }
}
