//! Many scrapers at once, and clients that try to hold the server.
//!
//! Scrapes only encode stored snapshots, so 200 scrapers hammering the
//! agent for a minute must cost PostgreSQL nothing, leave collection on
//! schedule, and leave memory where it was. Clients that connect and send
//! nothing, or their headers a byte at a time, must neither keep a scrape
//! out nor stay connected past the header read timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Fixture, Metrics, RunningAgent, eventually};

/// How long the scrapers run. A minute is the brief's figure; 200
/// closed-loop scrapers on a small CI machine make it worth keeping the
/// machine to this test alone for that long (see docs/reliability.md).
const LOAD: Duration = Duration::from_secs(60);
const SCRAPERS: usize = 200;

/// One keep-alive HTTP/1.1 connection, like Prometheus keeps per target.
struct Scraper {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Scraper {
    fn new(addr: SocketAddr) -> Scraper {
        Scraper {
            addr,
            stream: None,
            buf: Vec::with_capacity(256 * 1024),
        }
    }

    /// GETs `path`; the status and the body.
    async fn get(&mut self, path: &str) -> Result<(u16, &[u8]), String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected");
        let request = format!("GET {path} HTTP/1.1\r\nHost: pgvigil\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed before the response head".into());
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .ok_or_else(|| format!("no content-length in {head:?}"))?;
        while self.buf.len() < head_end + length {
            let n = stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                return Err("connection closed in the body".into());
            }
        }
        Ok((status, &self.buf[head_end..head_end + length]))
    }
}

/// Calls of the agent's own statements so far, from pg_stat_statements.
async fn agent_calls(admin: &tokio_postgres::Client) -> f64 {
    admin
        .query_one(
            "SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements s
             JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'pgvigil'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn resident(m: &Metrics) -> f64 {
    m.get("process_resident_memory_bytes", &[])
        .expect("process_resident_memory_bytes")
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_scrapers_for_a_minute_cost_the_database_nothing() {
    // The scrapers take every core: run alone, so that this test neither
    // slows the others nor measures their load.
    let _alone = crate::harness::pg::exclusive();
    let fx = Fixture::start().await;
    // Every collector every second (the slow ones too), so the agent's
    // own statement rate is steady; no automatic EXPLAIN, which depends
    // on the workload.
    let config = fx.config(
        "database_size = \"1s\"\ntables = \"1s\"\nstatements = \"1s\"\n[explain]\nenabled = false\n",
    );
    let agent = RunningAgent::start(&fx.pg.scratch(), &config).await;
    eventually(Duration::from_secs(30), "/readyz 200", || async {
        (agent.get("/readyz").await.status == 200).then_some(())
    })
    .await;
    let admin = fx.pg.connect().await;

    // Baseline: what collection alone costs, per second, with nobody scraping.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quiet = Duration::from_secs(8);
    let before = agent_calls(&admin).await;
    tokio::time::sleep(quiet).await;
    let baseline = (agent_calls(&admin).await - before) / quiet.as_secs_f64();
    let start_memory = resident(&agent.metrics().await);

    let deadline = Instant::now() + LOAD;
    let calls_at_start = agent_calls(&admin).await;
    let mut scrapers = Vec::new();
    for i in 0..SCRAPERS {
        let addr = agent.addr;
        scrapers.push(tokio::spawn(async move {
            let mut scraper = Scraper::new(addr);
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            let mut n = 0usize;
            while Instant::now() < deadline {
                n += 1;
                // A few scrapers use the other endpoints; every one of
                // them reconnects now and then.
                let path = match i % 20 {
                    0 => "/api/v1/statements",
                    1 => "/probe?target=main",
                    _ => "/metrics",
                };
                let started = Instant::now();
                match scraper.get(path).await {
                    Ok((200, body)) if body.len() > 100 && body.ends_with(b"\n") => {
                        latencies.push(started.elapsed())
                    }
                    Ok((200, _)) if path == "/api/v1/statements" => {
                        latencies.push(started.elapsed())
                    }
                    Ok((status, body)) => errors.push(format!(
                        "{path}: {status} {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )),
                    Err(e) => {
                        errors.push(format!("{path}: {e}"));
                        scraper.stream = None;
                    }
                }
                if n.is_multiple_of(50) {
                    scraper.stream = None;
                }
            }
            (latencies, errors)
        }));
    }
    // Sample memory from the side while the load runs.
    let mut memory = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(5)).await;
        memory.push(resident(&agent.metrics().await));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for scraper in scrapers {
        let (l, e) = scraper.await.unwrap();
        latencies.extend(l);
        errors.extend(e);
    }
    let calls_at_end = agent_calls(&admin).await;
    let under_load = (calls_at_end - calls_at_start) / LOAD.as_secs_f64();
    let m = agent.metrics().await;
    let end_memory = resident(&m);
    latencies.sort();
    let requests = latencies.len() + errors.len();
    println!(
        "{SCRAPERS} scrapers for {LOAD:?}: {requests} requests ({:.0}/s), {} errors; latency p50 {:?} p99 {:?} max {:?}",
        requests as f64 / LOAD.as_secs_f64(),
        errors.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies.last().unwrap(),
    );
    println!(
        "resident memory: {} before, {} at the end, samples {:?}",
        mb(start_memory),
        mb(end_memory),
        memory.iter().map(|b| mb(*b)).collect::<Vec<_>>()
    );
    println!(
        "agent statements per second: {baseline:.1} without scrapes, {under_load:.1} under load"
    );

    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(requests > SCRAPERS * 10, "only {requests} requests");
    // Scrapes send PostgreSQL nothing: the agent's statement rate is that
    // of collection alone (a single scrape-triggered query per request
    // would add thousands per second). And collection keeps its pace: on
    // a runtime shared with the HTTP server it fell to a sixth.
    assert!(
        under_load <= baseline * 1.3 + 1.0,
        "{under_load:.1} statements/s under load against {baseline:.1} without"
    );
    assert!(
        under_load >= baseline * 0.7,
        "collection slowed under load: {under_load:.1} statements/s against {baseline:.1} without"
    );
    // Collection kept its schedule under the load.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = m
        .get(
            "pgvigil_collector_last_success_timestamp_seconds",
            &[("collector", "connections")],
        )
        .unwrap();
    assert!(
        now - last < 5.0,
        "last connections collection {:.1}s ago",
        now - last
    );
    // Memory is bounded: what 200 open connections need, and no growth
    // over the minute (a leak of 100 bytes a request would show).
    let peak = memory.iter().cloned().fold(end_memory, f64::max);
    assert!(
        peak < start_memory + 64e6,
        "resident memory grew from {} to {}",
        mb(start_memory),
        mb(peak)
    );
    let first_sample = memory.first().copied().unwrap_or(start_memory);
    assert!(
        end_memory < first_sample + 16e6,
        "resident memory kept growing under load: {} after 5 s, {} at the end",
        mb(first_sample),
        mb(end_memory)
    );
}

/// A client that sends the start of a request, then one more header byte
/// every `every`, and never finishes; or, with `every` = `None`, nothing.
/// Returns when the server closes the connection, with how long that took.
async fn slow_client(addr: SocketAddr, every: Option<Duration>) -> Duration {
    let opened = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 1024];
    if let Some(every) = every {
        if stream
            .write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            .await
            .is_err()
        {
            return opened.elapsed();
        }
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return opened.elapsed(),
                    Ok(_) => {}
                },
                _ = tick.tick() => {
                    if stream.write_all(b"a").await.is_err() {
                        return opened.elapsed();
                    }
                }
            }
        }
    }
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return opened.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_the_server() {
    use pgvigil::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
    let fx = Fixture::start().await;
    let agent = RunningAgent::start(&fx.pg.scratch(), &fx.config("")).await;
    eventually(Duration::from_secs(30), "pg_up", || async {
        agent.metrics().await.get("pg_up", &[])
    })
    .await;
    let fds_before = agent.metrics().await.get("process_open_fds", &[]).unwrap();

    // More slow clients than the server has connection slots: half
    // trickle header bytes every 2 s, half send nothing at all.
    let clients = MAX_CONNECTIONS + 88;
    let mut slow = Vec::new();
    for i in 0..clients {
        let every = (i % 2 == 0).then_some(Duration::from_secs(2));
        slow.push(tokio::spawn(slow_client(agent.addr, every)));
        if i % 64 == 63 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // With every slot taken by slow clients, a scrape still gets in at
    // once: the connection idle the longest makes room for it.
    let started = Instant::now();
    let m = agent.metrics().await;
    let scrape = started.elapsed();
    let fds = m.get("process_open_fds", &[]).unwrap();
    println!(
        "scrape with {clients} slow clients connected: {scrape:?}; open fds {fds_before} before, {fds} now"
    );
    assert!(
        scrape < Duration::from_secs(2),
        "a scrape waited {scrape:?} behind slow clients"
    );
    // The cap holds: the agent does not keep more sockets than slots.
    assert!(
        fds <= fds_before + MAX_CONNECTIONS as f64 + 8.0,
        "{fds} open fds with {clients} slow clients (before: {fds_before})"
    );

    // And none of them is kept past the header read timeout.
    let mut held = Vec::new();
    for client in slow {
        held.push(
            tokio::time::timeout(HEADER_READ_TIMEOUT + Duration::from_secs(10), client)
                .await
                .expect("a slow client is still connected well past the header read timeout")
                .unwrap(),
        );
    }
    held.sort();
    let evicted = held
        .iter()
        .filter(|d| **d < HEADER_READ_TIMEOUT / 2)
        .count();
    println!(
        "slow clients closed after {:?} .. {:?}; {evicted} early to make room",
        held[0],
        held[held.len() - 1]
    );
    assert!(
        evicted >= clients - MAX_CONNECTIONS,
        "only {evicted} slow clients made room for {} newcomers",
        clients - MAX_CONNECTIONS
    );
    // Those that kept a slot were closed by the timeout, not before it
    // (the trickled bytes do not extend it).
    let timed_out = &held[evicted..];
    assert!(
        timed_out
            .iter()
            .all(|d| *d >= HEADER_READ_TIMEOUT - Duration::from_millis(500)),
        "{:?}",
        &timed_out[..5.min(timed_out.len())]
    );
    assert!(held[held.len() - 1] < HEADER_READ_TIMEOUT + Duration::from_secs(4));
    // Afterwards the server is as it was.
    let m = agent.metrics().await;
    assert_eq!(m.get("pg_up", &[]), Some(1.0));
    eventually(Duration::from_secs(10), "fds back to normal", || async {
        let fds = agent.metrics().await.get("process_open_fds", &[]).unwrap();
        (fds <= fds_before + 4.0).then_some(())
    })
    .await;
}
