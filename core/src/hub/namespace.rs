//! Namespaces: handler registries and the sockets connected to them.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::handler::{Admission, ConnectError, ConnectHandler, ConnectMiddleware, DisconnectHandler, EventHandler};
use super::{Handshake, Parser, Socket};
use crate::protocol::socketio::{Packet, Payload};

/// A namespace (socket.io's `io.of(name)`): its handlers and connected
/// sockets. Cheap to clone; handlers may be added at any time.
#[derive(Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    parser: Parser,
    handlers: RwLock<Arc<Handlers>>,
    sockets: RwLock<HashMap<String, Socket>>,
}

#[derive(Default, Clone)]
pub(crate) struct Handlers {
    pub(crate) middlewares: Vec<Arc<dyn ConnectMiddleware>>,
    pub(crate) on_connect: Vec<Arc<dyn ConnectHandler>>,
    pub(crate) on_disconnect: Vec<Arc<dyn DisconnectHandler>>,
    pub(crate) events: HashMap<String, Arc<dyn EventHandler>>,
    pub(crate) any: Option<Arc<dyn EventHandler>>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("name", &self.inner.name).field("sockets", &self.socket_count()).finish()
    }
}

impl Namespace {
    pub(crate) fn new(name: String, parser: Parser) -> Namespace {
        Namespace {
            inner: Arc::new(Inner {
                name,
                parser,
                handlers: RwLock::default(),
                sockets: RwLock::default(),
            }),
        }
    }

    /// The namespace's name (`/` for the main one).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn parser(&self) -> Parser {
        self.inner.parser
    }

    fn update(&self, f: impl FnOnce(&mut Handlers)) {
        let mut guard = self.inner.handlers.write().unwrap_or_else(PoisonError::into_inner);
        let mut handlers = Handlers::clone(&guard);
        f(&mut handlers);
        *guard = Arc::new(handlers);
    }

    pub(crate) fn handlers(&self) -> Arc<Handlers> {
        self.inner.handlers.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Adds a connect middleware (socket.io's `namespace.use`). Middlewares
    /// run in the order added; the first refusal wins.
    pub fn use_middleware(&self, middleware: impl ConnectMiddleware) -> &Self {
        let m: Arc<dyn ConnectMiddleware> = Arc::new(middleware);
        self.update(|h| h.middlewares.push(m));
        self
    }

    /// Adds a handler run for each connected socket.
    pub fn on_connect(&self, handler: impl ConnectHandler) -> &Self {
        let h: Arc<dyn ConnectHandler> = Arc::new(handler);
        self.update(|hs| hs.on_connect.push(h));
        self
    }

    /// Adds a handler run when a socket leaves the namespace.
    pub fn on_disconnect(&self, handler: impl DisconnectHandler) -> &Self {
        let h: Arc<dyn DisconnectHandler> = Arc::new(handler);
        self.update(|hs| hs.on_disconnect.push(h));
        self
    }

    /// Sets the handler of `event` (replacing a previous one).
    pub fn on(&self, event: impl Into<String>, handler: impl EventHandler) -> &Self {
        let h: Arc<dyn EventHandler> = Arc::new(handler);
        let event = event.into();
        self.update(|hs| {
            hs.events.insert(event, h);
        });
        self
    }

    /// Sets the catch-all handler: events without a handler of their own.
    pub fn on_any(&self, handler: impl EventHandler) -> &Self {
        let h: Arc<dyn EventHandler> = Arc::new(handler);
        self.update(|hs| hs.any = Some(h));
        self
    }

    /// Like [`use_middleware`](Self::use_middleware), [`on`](Self::on) and
    /// friends, for handlers already behind an `Arc` (bindings).
    pub fn on_dyn(&self, event: impl Into<String>, handler: Arc<dyn EventHandler>) -> &Self {
        let event = event.into();
        self.update(|hs| {
            hs.events.insert(event, handler);
        });
        self
    }

    /// Runs the middlewares for a connecting client.
    pub(crate) async fn admit(&self, handshake: Arc<Handshake>) -> Result<Admission, ConnectError> {
        let mut admission = Admission::default();
        for m in self.handlers().middlewares.iter() {
            admission.merge(m.call(handshake.clone()).await?);
        }
        Ok(admission)
    }

    pub(crate) fn add(&self, socket: Socket) {
        self.inner.sockets.write().unwrap_or_else(PoisonError::into_inner).insert(socket.id().to_owned(), socket);
    }

    pub(crate) fn remove(&self, id: &str) {
        self.inner.sockets.write().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    /// The number of sockets connected to this namespace on this node.
    pub fn socket_count(&self) -> usize {
        self.inner.sockets.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The connected socket with id `id`.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        self.inner.sockets.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// Every connected socket.
    pub fn sockets(&self) -> Vec<Socket> {
        self.inner.sockets.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Sends `event` to every socket of the namespace. The packet is encoded
    /// once and shared by every recipient. Returns how many sockets it was
    /// queued for.
    pub fn emit(&self, event: &str, args: Payload) -> usize {
        let frames = self.parser().encode(&Packet::event(self.name(), event, args, None));
        let sockets = self.sockets();
        sockets.iter().filter(|s| s.send_encoded(frames.iter().cloned()).is_ok()).count()
    }
}
