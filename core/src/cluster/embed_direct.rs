//! What other nodes send, on its way to a host that applies it on its own
//! event loop (Node's), and the broadcasts the core delivers without it.
//!
//! A [`LinkQueue`] holds the [`LinkEvent`]s until the host takes them (one
//! wake-up per batch) and knows when the host has applied everything it
//! took ([`LinkQueue::settled`]). While that is so, a broadcast of another
//! node to a namespace whose host routed it to a [`Fanout`]
//! ([`ClusterLink::deliver_directly`](super::ClusterLink::deliver_directly))
//! is written by the core to the reached sessions at once, never crossing
//! into the host: the host does no work at all for it. Otherwise (the host
//! still has events to apply, which may join or leave rooms before it) it
//! is queued like everything else, and the host delivers it in order.
//!
//! Every event reaches the queue from the link's one inbound task, so
//! "nothing left to apply" cannot turn false between the check and the
//! delivery; it can only turn true (the host settling), which at worst
//! sends one more broadcast through the host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::config::add;
use super::convert::{event_of, target_of};
use super::embed::LinkEvent;
use super::wire::classic::BroadcastOpts;
use super::wire::notepack::Data;
use crate::embed::fanout::Fanout;
use crate::hub::lock;
use crate::protocol::socketio::Packet;

/// Events from other nodes waiting for the host, oldest first.
pub struct LinkQueue {
    state: Mutex<QueueState>,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for LinkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkQueue").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct QueueState {
    events: Vec<LinkEvent>,
    /// Taken and not yet reported applied.
    applying: bool,
}

impl LinkQueue {
    pub(super) fn new(wake: impl Fn() + Send + Sync + 'static) -> LinkQueue {
        LinkQueue { state: Mutex::default(), wake: Box::new(wake) }
    }

    pub(super) fn push(&self, event: LinkEvent) {
        let first = {
            let mut s = lock(&self.state);
            s.events.push(event);
            s.events.len() == 1
        };
        if first {
            (self.wake)();
        }
    }

    /// Everything queued, in order. The host applies it, then calls
    /// [`settled`](Self::settled); until then no broadcast is delivered
    /// past it.
    pub fn take(&self) -> Vec<LinkEvent> {
        let mut s = lock(&self.state);
        if !s.events.is_empty() {
            s.applying = true;
        }
        std::mem::take(&mut s.events)
    }

    /// The host applied everything it took (and what it changed is visible
    /// to the core: room changes mirrored, writes handed over).
    pub fn settled(&self) {
        lock(&self.state).applying = false;
    }

    /// Nothing taken is being applied and nothing waits.
    fn idle(&self) -> bool {
        let s = lock(&self.state);
        s.events.is_empty() && !s.applying
    }
}

/// The namespaces whose remote broadcasts the core writes itself.
#[derive(Debug, Default)]
pub(super) struct Direct {
    routes: Mutex<HashMap<String, Arc<Fanout>>>,
}

impl Direct {
    pub(super) fn route(&self, nsp: &str, fanout: Option<Arc<Fanout>>) {
        let mut routes = lock(&self.routes);
        match fanout {
            Some(f) => routes.insert(nsp.to_owned(), f),
            None => routes.remove(nsp),
        };
    }

    /// Writes another node's broadcast to the sessions of `nsp`'s route
    /// when `queue` has nothing left for the host; false when the host
    /// must deliver it (no route, events pending, or not an event the core
    /// encodes: the host's encoder decides about those).
    pub(super) fn deliver(
        &self,
        queue: Option<&LinkQueue>,
        nsp: &str,
        data: &[Data],
        opts: &BroadcastOpts,
        delivered: &std::sync::atomic::AtomicU64,
    ) -> bool {
        let Some(queue) = queue else { return false };
        // Held while writing: a host that takes the route away knows no
        // broadcast is being written past it once that returns.
        let routes = lock(&self.routes);
        let Some(fanout) = routes.get(nsp) else { return false };
        if !queue.idle() {
            return false;
        }
        let Some((event, args)) = event_of(data) else { return false };
        let packets = Packet::event(nsp, &event, args, None).encode();
        fanout.broadcast(&target_of(&opts.rooms, &opts.except), &packets, opts.flags.volatile == Some(true));
        add(delivered);
        true
    }
}
