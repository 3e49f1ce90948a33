//! `pgvigil top` in a real terminal: tmux runs it against a server with a
//! workload; the screen shows the statement with its p99 (against the
//! sleep the statement takes), sessions with a blocker above the session it
//! blocks (pids from the sessions themselves), Enter shows the plan top's
//! own EXPLAIN worker made and `e` runs the guarded EXPLAIN, a key press
//! changes the sort, `q` gives the screen back; the same against a running agent; and
//! without pg_stat_statements it says how to enable it.
//!
//! The last screen is written to `target/top-screen.txt` (the README's
//! "Local debugging" section quotes a run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::agent::binary;
use crate::harness::{Fixture, RunningAgent};

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// A detached 140×40 session named `top` running `script`.
    fn start(dir: &Path, name: &str, script: &str) -> Tmux {
        let socket = dir.join(format!("tmux-{name}.sock"));
        let file = dir.join(format!("{name}.sh"));
        std::fs::write(&file, script).expect("write script");
        let tmux = Tmux { socket };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "140",
            "-y",
            "40",
            &format!("sh {}", file.display()),
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "top", keys]);
    }

    /// Polls the screen until `ok` holds, or panics with the last one.
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not on the screen within {timeout:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The first statement row under the statements header.
fn first_statement(screen: &str) -> Option<&str> {
    let mut lines = screen.lines().skip_while(|l| !l.contains("P99 MS"));
    lines.next()?;
    lines.next()
}

/// The P99 MS column (fourth) of a statement row.
fn p99_ms(row: &str) -> Option<f64> {
    row.trim_start_matches(|c: char| !c.is_ascii_digit())
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn script(fx: &Fixture, args: &str) -> String {
    format!(
        "echo BEFORE-TOP\nPGPASSWORD='{}' {} top {args}\necho TOP-EXIT=$?\nsleep 120\n",
        fx.password.replace('\'', "'\\''"),
        binary().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_statements_sessions_and_blockers_and_gives_the_terminal_back() {
    let fx = Fixture::start().await;
    let dir = fx.pg.scratch();
    let admin = fx.pg.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE top_probe (id int PRIMARY KEY); INSERT INTO top_probe SELECT generate_series(1, 1000);
             CREATE TABLE top_locked (id int); GRANT SELECT ON top_probe TO pgvigil;",
        )
        .await
        .expect("tables");
    // The workload: a slow statement (120 ms sleeps, the most time, past
    // explain.slow_threshold so top's own EXPLAIN worker plans it) and a
    // fast one (the most calls), until the test ends.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (sql, pause) in [
        ("SELECT pg_sleep(0.12), count(*) FROM top_probe", 0),
        ("SELECT id FROM top_probe WHERE id = 7", 2),
    ] {
        let client = fx.pg.connect_as("top-workload", "postgres").await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if client.simple_query(sql).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }
    // A lock queue: the holder idles in its transaction, the waiter queues.
    let holder = fx.pg.connect_as("top-holder", "postgres").await;
    holder
        .batch_execute("BEGIN; LOCK TABLE top_locked IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let waiter = fx.pg.connect_as("top-waiter", "postgres").await;
    let waiter_pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let queued = tokio::spawn(async move {
        let _ = waiter.simple_query("SELECT count(*) FROM top_locked").await;
    });

    let tmux = Tmux::start(
        &dir,
        "direct",
        &script(&fx, &format!("--dsn '{}'", fx.dsn())),
    );
    let screen = tmux.wait_for(
        "the slow statement with its p99",
        Duration::from_secs(30),
        |s| {
            s.lines()
                .any(|l| l.contains("pg_sleep") && p99_ms(l).is_some_and(|v| v > 0.0))
        },
    );
    let row = screen.lines().find(|l| l.contains("pg_sleep")).unwrap();
    let p99 = p99_ms(row).unwrap();
    eprintln!("top: p99 of the 120 ms statement {p99} ms\n{screen}");
    assert!(
        (119.0..=170.0).contains(&p99),
        "p99 {p99} ms for 120 ms sleeps: {row}"
    );
    assert!(screen.contains("sort: time"), "{screen}");
    assert!(
        first_statement(&screen).is_some_and(|l| l.contains("pg_sleep")),
        "the most time first:\n{screen}"
    );
    for want in ["PostgreSQL", "primary", "usable", "load"] {
        assert!(screen.contains(want), "{want}:\n{screen}");
    }
    // The blocker, then the session it blocks, indented under it.
    let screen = tmux.wait_for("the blocking tree", Duration::from_secs(15), |s| {
        s.contains(&format!("└ {waiter_pid}"))
    });
    let holder_line = screen
        .lines()
        .position(|l| {
            l.trim_start_matches(['│', ' '])
                .split_whitespace()
                .next()
                .is_some_and(|pid| pid == holder_pid.to_string())
        })
        .unwrap_or_else(|| panic!("holder {holder_pid}:\n{screen}"));
    let waiter_line = screen
        .lines()
        .position(|l| l.contains(&format!("└ {waiter_pid}")))
        .unwrap();
    assert_eq!(waiter_line, holder_line + 1, "{screen}");
    assert!(
        screen
            .lines()
            .nth(holder_line)
            .unwrap()
            .contains("idle in transaction")
    );
    assert!(
        screen
            .lines()
            .nth(waiter_line)
            .unwrap()
            .contains("Lock:relation")
    );

    // Enter on the slow statement: its text and the plan top's worker made.
    tmux.keys("Enter");
    let screen = tmux.wait_for("the automatic plan", Duration::from_secs(30), |s| {
        s.contains("last automatic plan") && s.contains("Seq Scan")
    });
    assert!(
        screen.contains("SELECT pg_sleep($1), count(*) FROM top_probe"),
        "{screen}"
    );
    tmux.keys("Escape");
    tmux.wait_for("back to the list", Duration::from_secs(10), |s| {
        s.contains("P99 MS")
    });

    // A key changes the sort: the fast statement has the most calls.
    tmux.keys("c");
    let screen = tmux.wait_for("sorted by calls", Duration::from_secs(10), |s| {
        s.contains("sort: calls") && first_statement(s).is_some_and(|l| l.contains("WHERE id ="))
    });
    assert!(
        !screen.contains("coalesce(datname"),
        "top's own sessions query is pgvigil's, not a workload statement:\n{screen}"
    );
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/top-screen.txt"),
        &screen,
    )
    .expect("keep the screen");

    // Enter shows the statement's full text and offers the EXPLAIN; e runs it.
    tmux.keys("Enter");
    tmux.wait_for("the details", Duration::from_secs(10), |s| {
        s.contains("details") && s.contains("press e")
    });
    tmux.keys("e");
    tmux.wait_for("the guarded EXPLAIN", Duration::from_secs(15), |s| {
        s.contains("EXPLAIN on demand") && s.contains("Index")
    });
    tmux.keys("Escape");

    // q gives the screen back: the shell's line before top, top's exit code.
    tmux.keys("q");
    let screen = tmux.wait_for("the restored screen", Duration::from_secs(15), |s| {
        s.contains("TOP-EXIT=")
    });
    assert!(
        screen.contains("BEFORE-TOP") && screen.contains("TOP-EXIT=0"),
        "{screen}"
    );
    assert!(
        !screen.contains("P99 MS"),
        "the alternate screen was left:\n{screen}"
    );
    drop(tmux);

    // The same statement through a running agent's APIs.
    let agent = RunningAgent::start(&dir, &fx.config("statements = { interval = \"1s\" }")).await;
    let tmux = Tmux::start(
        &dir,
        "agent",
        &script(&fx, &format!("--agent http://{}", agent.addr)),
    );
    let screen = tmux.wait_for(
        "the statement from the agent",
        Duration::from_secs(30),
        |s| {
            s.lines()
                .any(|l| l.contains("pg_sleep") && p99_ms(l).is_some_and(|v| v > 0.0))
        },
    );
    assert!(
        screen.contains(&format!("agent {}", agent.addr)),
        "{screen}"
    );
    assert!(
        screen.contains("sessions are read only against a server"),
        "{screen}"
    );
    tmux.keys("q");
    tmux.wait_for("top --agent quits", Duration::from_secs(15), |s| {
        s.contains("TOP-EXIT=0")
    });
    drop(tmux);
    drop(agent);

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("workload task");
    }
    holder.batch_execute("ROLLBACK").await.expect("release");
    queued.await.expect("the waiter");

    // Without pg_stat_statements: the rest of the view, and how to enable it.
    admin
        .batch_execute("DROP EXTENSION pg_stat_statements")
        .await
        .expect("drop extension");
    let tmux = Tmux::start(
        &dir,
        "nopgss",
        &script(&fx, &format!("--dsn '{}'", fx.dsn())),
    );
    let screen = tmux.wait_for("the advice", Duration::from_secs(20), |s| {
        s.contains("CREATE EXTENSION pg_stat_statements") && s.contains("shared_preload_libraries")
    });
    assert!(
        screen.contains("PostgreSQL") && screen.contains("usable"),
        "{screen}"
    );
    assert!(
        !screen.contains("top_probe"),
        "no statements without the extension:\n{screen}"
    );
    tmux.keys("q");
    tmux.wait_for("quit", Duration::from_secs(15), |s| {
        s.contains("TOP-EXIT=0")
    });
}
