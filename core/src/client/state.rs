//! Observable state: the current value (a `watch`), and listeners called
//! with every change, in order, on the blocking pool (never under a
//! lock, never on the caller's thread nor on the connection's task).

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
    listeners: Mutex<Registry<dyn StateListener<T>>>,
    /// Each change with the listeners registered when it happened.
    tx: mpsc::UnboundedSender<Change<T>>,
}

type Change<T> = (T, Vec<Arc<dyn StateListener<T>>>);

impl<T: Clone + Send + Sync + PartialEq + 'static> StateCell<T> {
    pub(crate) fn new(initial: T, rt: &tokio::runtime::Handle) -> StateCell<T> {
        let (watch, _) = watch::channel(initial);
        let (tx, mut rx) = mpsc::unbounded_channel::<Change<T>>();
        // On the blocking pool, as event listeners (see `dispatch`): a
        // state listener may block without holding a runtime worker.
        rt.spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 32).await > 0 {
                let changes = std::mem::take(&mut batch);
                let ran = tokio::task::spawn_blocking(move || {
                    for (state, listeners) in changes {
                        for l in listeners {
                            super::guarded(|| l.on_state(&state));
                        }
                    }
                })
                .await;
                if ran.is_err() {
                    return;
                }
            }
        });
        StateCell { watch, listeners: Mutex::default(), tx }
    }

    pub(crate) fn get(&self) -> T {
        self.watch.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<T> {
        self.watch.subscribe()
    }

    /// Sets the state; listeners hear of it when it changed.
    pub(crate) fn set(&self, state: T) {
        // Under the listeners' lock: a listener registered once the new
        // state shows does not hear of it, and changes queue in order.
        let listeners = lock(&self.listeners);
        let changed = self.watch.send_if_modified(|s| {
            if *s == state {
                false
            } else {
                *s = state.clone();
                true
            }
        });
        if changed {
            let all = listeners.all();
            if !all.is_empty() {
                let _ = self.tx.send((state, all));
            }
        }
    }

    pub(crate) fn listen(&self, listener: Arc<dyn StateListener<T>>) -> ListenerId {
        lock(&self.listeners).on("", listener, false)
    }

    pub(crate) fn unlisten(&self, id: ListenerId) -> bool {
        lock(&self.listeners).remove(id)
    }
}
