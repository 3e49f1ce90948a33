//! The cap on open HTTP connections, and who gives way at the cap.
//!
//! Every connection holds a [`Slot`]. A slot is busy while a request is
//! being answered and idle otherwise: during the TLS handshake, while the
//! request head trickles in, between keep-alive requests, and while a
//! finished response waits for a slow reader. When a client connects and
//! every slot is taken, the connection idle the longest is closed to make
//! room. So clients that open connections and send nothing, or send their
//! headers a byte at a time (slow-loris), can delay a scrape by nothing,
//! not even the header read timeout that would close them anyway; they
//! only push each other out. Only when every slot is busy does the server
//! stop accepting until one frees.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Marks a busy slot.
const BUSY: u64 = u64::MAX;

/// The open connections.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    epoch: Instant,
    open: Mutex<Open>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    slots: BTreeMap<u64, Arc<State>>,
}

#[derive(Debug)]
struct State {
    /// Microseconds since `epoch` at which the slot went idle, or [`BUSY`].
    idle_since: AtomicU64,
    /// Cancelled when the slot is taken away for a newcomer.
    evicted: CancellationToken,
}

/// One connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    state: Arc<State>,
    slots: Arc<Slots>,
}

/// Keeps a slot busy until dropped.
#[derive(Debug)]
pub struct Busy {
    state: Arc<State>,
    slots: Arc<Slots>,
}

impl Slots {
    /// Room for `max` connections.
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            epoch: Instant::now(),
            open: Mutex::new(Open::default()),
            freed: Notify::new(),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.open().slots.len()
    }

    /// Whether no connection is open.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns once a newcomer can be admitted: a slot is free, or one is
    /// idle and can be taken.
    pub async fn room(&self) {
        loop {
            let freed = self.freed.notified();
            {
                let open = self.open();
                if open.slots.len() < self.max
                    || open
                        .slots
                        .values()
                        .any(|s| s.idle_since.load(Ordering::Relaxed) != BUSY)
                {
                    return;
                }
            }
            freed.await;
        }
    }

    /// A slot for a new connection, idle from the start. At the cap, the
    /// connection idle the longest is told to close and its slot reused;
    /// if every slot is busy the newcomer is admitted anyway (the cap is
    /// then exceeded by the few that arrive between [`Slots::room`] and
    /// here).
    pub fn admit(self: &Arc<Self>) -> Slot {
        let state = Arc::new(State {
            idle_since: AtomicU64::new(self.now()),
            evicted: CancellationToken::new(),
        });
        let mut open = self.open();
        if open.slots.len() >= self.max {
            let longest_idle = open
                .slots
                .iter()
                .map(|(id, s)| (s.idle_since.load(Ordering::Relaxed), *id))
                .filter(|(since, _)| *since != BUSY)
                .min();
            if let Some((_, id)) = longest_idle
                && let Some(victim) = open.slots.remove(&id)
            {
                tracing::debug!("connection limit reached: closing the longest idle connection");
                victim.evicted.cancel();
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        open.slots.insert(id, state.clone());
        Slot {
            id,
            state,
            slots: self.clone(),
        }
    }
}

impl Slot {
    /// Marks the slot busy until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        self.state.idle_since.store(BUSY, Ordering::Relaxed);
        Busy {
            state: self.state.clone(),
            slots: self.slots.clone(),
        }
    }

    /// Completes when the slot has been taken away for a newcomer.
    pub fn evicted(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.state.evicted.cancelled()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.state
            .idle_since
            .store(self.slots.now(), Ordering::Relaxed);
        self.slots.freed.notify_waiters();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open().slots.remove(&self.id);
        self.slots.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_gives_way() {
        let slots = Slots::new(3);
        let a = slots.admit();
        let b = slots.admit();
        let c = slots.admit();
        let _busy_a = a.busy();
        // b has been idle longest (c came later; a is busy).
        let d = slots.admit();
        assert!(b.state.evicted.is_cancelled());
        assert!(!a.state.evicted.is_cancelled() && !c.state.evicted.is_cancelled());
        assert_eq!(slots.len(), 3);
        drop(b); // the evicted connection ends: nothing more to free
        assert_eq!(slots.len(), 3);
        let _busy_c = c.busy();
        let _busy_d = d.busy();
        // Every slot busy: no room until one goes idle.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), slots.room());
        assert!(waiting.await.is_err());
        drop(_busy_a);
        tokio::time::timeout(std::time::Duration::from_secs(1), slots.room())
            .await
            .expect("room once a slot is idle");
        drop((a, c, d));
        assert!(slots.is_empty());
    }
}
