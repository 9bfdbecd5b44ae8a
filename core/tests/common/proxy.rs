//! A TCP proxy on a free loopback port between a node and its Redis, to
//! inject network faults: latency, stalls (nothing forwarded, connections
//! kept open, as behind a partition) and cuts (every connection closed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does to the bytes it carries; every connection, new or
/// open, follows the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Conditions {
    /// Added to every chunk, each direction (in order: a latency, not a
    /// reordering).
    pub(crate) delay: Duration,
    /// Nothing is read or written while set.
    pub(crate) stalled: bool,
}

/// A proxy to `127.0.0.1:<upstream>`; stops when dropped.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    conditions: watch::Sender<Conditions>,
    /// Bumped by [`cut`](Self::cut): connections of an older generation close.
    generation: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to the loopback `upstream` port (inside a tokio runtime).
    pub(crate) async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conditions = watch::Sender::new(Conditions::default());
        let generation = watch::Sender::new(0u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = {
            let (conditions, generation, accepted) = (conditions.clone(), generation.clone(), accepted.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let (conditions, generation) = (conditions.subscribe(), generation.subscribe());
                    tokio::spawn(carry(client, upstream, conditions, generation));
                }
            })
        };
        Proxy { port, conditions, generation, accepted, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Adds `delay` to every chunk from now on (zero: none).
    pub(crate) fn delay(&self, delay: Duration) {
        self.conditions.send_modify(|c| c.delay = delay);
    }

    /// Stops (or resumes) forwarding, keeping the connections open.
    pub(crate) fn stall(&self, stalled: bool) {
        self.conditions.send_modify(|c| c.stalled = stalled);
    }

    /// Closes every open connection; new ones are carried as before.
    pub(crate) fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// Carries one connection both ways until either side closes or it is cut.
async fn carry(
    client: TcpStream,
    upstream: u16,
    conditions: watch::Receiver<Conditions>,
    mut generation: watch::Receiver<u64>,
) {
    let born = *generation.borrow_and_update();
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, conditions.clone());
    let down = pump(server_read, client_write, conditions);
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = generation.wait_for(|g| *g != born) => {}
    }
}

/// Reads chunks from `from` and writes each to `to` after the delay in
/// force when it was read, never while stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut conditions: watch::Receiver<Conditions>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut writer_conditions = conditions.clone();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if writer_conditions.wait_for(|c| !c.stalled).await.is_err() || to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if conditions.wait_for(|c| !c.stalled).await.is_err() {
                return;
            }
            let read = from.read(&mut buf).await;
            // What arrived (or the close) waits out a stall too: nothing,
            // not even a FIN, crosses a stalled link.
            if conditions.wait_for(|c| !c.stalled).await.is_err() {
                return;
            }
            let n = match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = conditions.borrow().delay;
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    // The writer finishes what was read before the reader's side closed;
    // a cut drops both at once.
    tokio::join!(reader, writer);
}
