//! A TCP proxy the test controls, between a client (the agent, a replica's
//! WAL receiver) and a server, for network faults: forward bytes, throttle
//! them (a slow link), stall them (sockets stay open, nothing moves either
//! way), or partition (every connection dropped, new ones closed on
//! arrival), and back to forwarding.
//!
//! It runs on a thread and runtime of its own, so a test that blocks its
//! own runtime (a `pg_ctl` call) does not stall the proxy by accident, and
//! dropping the [`Proxy`] closes everything it holds.
//!
//! ```ignore
//! let proxy = Proxy::start(fx.pg.port);
//! // point the agent at 127.0.0.1:{proxy.port}
//! proxy.set(Mode::Stall);
//! assert_eq!(proxy.connections(), 1);
//! proxy.set(Mode::Throttle { bytes_per_second: 1_000_000 });
//! proxy.set(Mode::Forward);
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::{Duration, Instant};

/// What the proxy does with bytes and connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass bytes both ways.
    Forward,
    /// Pass bytes both ways, but no faster than this in each direction of
    /// each connection: a slow link. Bytes are read in slices of about
    /// 20 ms worth and each slice is passed on once the link would have
    /// carried it, so a sender sees its writes block as on a real slow
    /// link (once the kernel's socket buffers between it and the proxy
    /// are full: they hold a few MB on loopback, seconds at low rates).
    Throttle {
        /// The limit, in bytes per second (at least 1).
        bytes_per_second: u64,
    },
    /// Keep every socket open, accept new connections, move no bytes.
    Stall,
    /// Close every current connection; close new ones as they arrive.
    Partition,
}

/// A running proxy; stops and closes every connection when dropped.
pub struct Proxy {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    mode: watch::Sender<Mode>,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("proxy nonblocking");
        let port = listener.local_addr().expect("proxy addr").port();
        let (mode, mode_rx) = watch::channel(Mode::Forward);
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop, stop_rx) = oneshot::channel();
        let upstream: SocketAddr = ([127, 0, 0, 1], upstream).into();
        let counters = (open.clone(), accepted.clone());
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("proxy listener");
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = accept_loop(listener, upstream, mode_rx, counters) => {}
                    }
                });
                // Dropping the runtime drops every connection task and
                // with them their sockets.
            })
            .expect("spawn proxy thread");
        Proxy {
            port,
            mode,
            open,
            accepted,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Switches mode; takes effect on every connection at once.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Connections currently open through the proxy (client side accepted
    /// and upstream connected, not yet closed).
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since start, including those closed on arrival
    /// during a partition.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Decrements the open-connection count when a connection task ends,
/// however it ends.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    (open, accepted): (Arc<AtomicUsize>, Arc<AtomicUsize>),
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        if *mode.borrow() == Mode::Partition {
            drop(client);
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let guard = Counted(open.clone());
        let mode = mode.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            // When either direction ends (EOF, error, partition) both
            // sockets are dropped, which closes the connection end to end.
            tokio::select! {
                _ = pump(client_read, server_write, mode.clone()) => {}
                _ = pump(server_read, client_write, mode) => {}
            }
        });
    }
}

/// Waits until bytes may move: `true` for forward, `false` once
/// partitioned (or the proxy is going away).
async fn may_move(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Forward | Mode::Throttle { .. } => return true,
            Mode::Partition => return false,
            Mode::Stall => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

/// Copies one direction, honouring the mode before every read and write.
/// While stalled nothing is read, so bytes wait in the kernel's buffers
/// and the peer's writes eventually block, as on a dead link.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut link = Link::default();
    loop {
        if !may_move(&mut mode).await {
            return;
        }
        let slice = match *mode.borrow() {
            Mode::Throttle { bytes_per_second } => Link::slice(bytes_per_second).min(buf.len()),
            _ => buf.len(),
        };
        let n = tokio::select! {
            read = from.read(&mut buf[..slice]) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Re-check the mode: a stall or partition stops the read.
            _ = mode.changed() => continue,
        };
        // Under a throttle, wait until the link has carried the slice; a
        // change of mode ends the wait (a stall then holds the slice).
        let rate = match *mode.borrow() {
            Mode::Throttle { bytes_per_second } => Some(bytes_per_second),
            _ => None,
        };
        if let Some(due) = link.carry(n, rate) {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = mode.changed() => {}
            }
        }
        if !may_move(&mut mode).await {
            return;
        }
        let write = to.write_all(&buf[..n]);
        tokio::pin!(write);
        loop {
            tokio::select! {
                written = &mut write => {
                    if written.is_err() {
                        return;
                    }
                    break;
                }
                changed = mode.changed() => {
                    if changed.is_err() || *mode.borrow_and_update() == Mode::Partition {
                        return;
                    }
                }
            }
        }
    }
}

/// The pace of one throttled direction: when the link is free again.
#[derive(Debug, Default)]
struct Link {
    free_at: Option<Instant>,
}

impl Link {
    /// How many bytes to read at once at `bytes_per_second`: about 20 ms
    /// worth, so the pace is smooth at low rates.
    fn slice(bytes_per_second: u64) -> usize {
        usize::try_from(bytes_per_second / 50)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// Books `n` bytes on the link and returns when they have been carried;
    /// `None` (and no booking) when not throttled.
    fn carry(&mut self, n: usize, bytes_per_second: Option<u64>) -> Option<Instant> {
        let Some(rate) = bytes_per_second else {
            self.free_at = None;
            return None;
        };
        let now = Instant::now();
        let start = self.free_at.filter(|t| *t > now).unwrap_or(now);
        let due = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
        self.free_at = Some(due);
        Some(due)
    }
}
