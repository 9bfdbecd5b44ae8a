//! Observable state: the current value (a `watch`), and listeners called
//! with every change, in order, on a task of their own (never under a
//! lock, never on the caller's thread).

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::listeners::{ListenerId, Registry};
use super::lock;

/// Receives every state change of a socket or a manager.
pub trait StateListener<T>: Send + Sync + 'static {
    /// The state changed to `state`.
    fn on_state(&self, state: &T);
}

impl<T, F: Fn(&T) + Send + Sync + 'static> StateListener<T> for F {
    fn on_state(&self, state: &T) {
        self(state);
    }
}

/// A state with its watchers.
pub(crate) struct StateCell<T: Clone + Send + Sync + 'static> {
    watch: watch::Sender<T>,
    listeners: Arc<Mutex<Registry<dyn StateListener<T>>>>,
    tx: mpsc::UnboundedSender<T>,
}

impl<T: Clone + Send + Sync + PartialEq + 'static> StateCell<T> {
    pub(crate) fn new(initial: T, rt: &tokio::runtime::Handle) -> StateCell<T> {
        let (watch, _) = watch::channel(initial);
        let listeners: Arc<Mutex<Registry<dyn StateListener<T>>>> = Arc::default();
        let (tx, mut rx) = mpsc::unbounded_channel::<T>();
        let registry = listeners.clone();
        rt.spawn(async move {
            while let Some(state) = rx.recv().await {
                let all = lock(&registry).all();
                for l in all {
                    super::guarded(|| l.on_state(&state));
                }
            }
        });
        StateCell { watch, listeners, tx }
    }

    pub(crate) fn get(&self) -> T {
        self.watch.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<T> {
        self.watch.subscribe()
    }

    /// Sets the state; listeners hear of it when it changed.
    pub(crate) fn set(&self, state: T) {
        let changed = self.watch.send_if_modified(|s| {
            if *s == state {
                false
            } else {
                *s = state.clone();
                true
            }
        });
        if changed {
            let _ = self.tx.send(state);
        }
    }

    pub(crate) fn listen(&self, listener: Arc<dyn StateListener<T>>) -> ListenerId {
        lock(&self.listeners).on("", listener, false)
    }

    pub(crate) fn unlisten(&self, id: ListenerId) -> bool {
        lock(&self.listeners).remove(id)
    }
}
