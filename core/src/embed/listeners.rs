//! Handler lists, as socket.io keeps them: `on("x", h1); on("x", h2)` runs
//! both, in the order they were added, for every binding.
//!
//! A binding registers host handlers (`H`: whatever stands for a handler
//! on its side, e.g. a Python callable or an index into a JavaScript
//! table) with [`Listeners::add`]; the first handler of an event subscribes
//! it on the hub, later ones only join the list. Everything a namespace
//! sees goes to one [`Host`] with the list of handlers to run, so a
//! binding that delivers through one queue keeps a socket's `connection`
//! ahead of its events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::Embedded;
use super::error::{EmbedError, invalid};
use crate::hub::{self, AckResponder, Namespace, Socket};
use crate::protocol::socketio::Payload;

/// What a handler listens to, from its socket.io name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// `connection` (or `connect`): a socket joined the namespace.
    Connection,
    /// `disconnect`: a socket left.
    Disconnect,
    /// `disconnecting`: a socket is leaving (still in its rooms).
    Disconnecting,
    /// Any other name: an event from the client.
    Event(String),
    /// `*`: events that have no handler of their own (python-socketio's
    /// catch-all); delivered with their own name.
    Any,
}

impl Listen {
    /// What `name` listens to.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for an empty name.
    pub fn from_name(name: &str) -> Result<Listen, EmbedError> {
        match name {
            "" => Err(invalid("an event name must be a non-empty string")),
            "connection" | "connect" => Ok(Listen::Connection),
            "disconnect" => Ok(Listen::Disconnect),
            "disconnecting" => Ok(Listen::Disconnecting),
            "*" => Ok(Listen::Any),
            event => Ok(Listen::Event(event.to_owned())),
        }
    }
}

/// What happened to a socket.
#[derive(Debug)]
#[non_exhaustive]
pub enum Delivery {
    /// It joined the namespace.
    Connection,
    /// It is leaving, for `reason`: socket.io's `disconnecting`, delivered
    /// ahead of [`Disconnect`](Self::Disconnect) to hosts that
    /// [`watch_disconnecting`](Listeners::watch_disconnecting).
    Disconnecting {
        /// Socket.IO's reason string.
        reason: String,
        /// The rooms it was in (it has left them by the time a host runs
        /// its handlers, which socket.io's run while it is still in them).
        rooms: Vec<String>,
    },
    /// It left, for `reason`.
    Disconnect {
        /// Socket.IO's reason string (`client namespace disconnect`, ...).
        reason: String,
    },
    /// It sent an event.
    Event {
        /// The event name.
        name: String,
        /// Its arguments.
        args: Payload,
        /// The acknowledgement, when the client asked for one.
        ack: Option<AckResponder>,
    },
}

/// What a [`Delivery`] is, as bindings name it to their language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DeliveryKind {
    /// [`Delivery::Connection`].
    Connection = 0,
    /// [`Delivery::Disconnect`].
    Disconnect = 1,
    /// [`Delivery::Event`].
    Event = 2,
    /// [`Delivery::Disconnecting`].
    Disconnecting = 3,
}

impl DeliveryKind {
    /// `connection`, `disconnect`, `event` or `disconnecting`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Connection => "connection",
            DeliveryKind::Disconnect => "disconnect",
            DeliveryKind::Event => "event",
            DeliveryKind::Disconnecting => "disconnecting",
        }
    }
}

/// A [`Delivery`] as the plain values a binding hands its language: the
/// event's arguments as JSON text and binary parts (see
/// [`payload_to_parts`](super::payload_to_parts)), its acknowledgement
/// answerable once.
#[derive(Debug)]
pub struct DeliveryParts {
    /// What happened.
    pub kind: DeliveryKind,
    /// The event's name, or the disconnection's reason (empty otherwise).
    pub name: String,
    /// The event's arguments as JSON (empty otherwise).
    pub json: String,
    /// Their binary parts.
    pub attachments: Vec<bytes::Bytes>,
    /// The acknowledgement, when the client asked for one.
    pub ack: Option<super::AckSlot>,
    /// For `disconnecting`: the rooms the socket was in.
    pub rooms: Option<Vec<String>>,
}

impl Delivery {
    /// The plain values of this delivery.
    pub fn into_parts(self) -> DeliveryParts {
        let plain = |kind, name| DeliveryParts {
            kind,
            name,
            json: String::new(),
            attachments: Vec::new(),
            ack: None,
            rooms: None,
        };
        match self {
            Delivery::Connection => plain(DeliveryKind::Connection, String::new()),
            Delivery::Disconnect { reason } => plain(DeliveryKind::Disconnect, reason),
            Delivery::Disconnecting { reason, rooms } => {
                DeliveryParts { rooms: Some(rooms), ..plain(DeliveryKind::Disconnecting, reason) }
            }
            Delivery::Event { name, args, ack } => {
                let (json, attachments) = super::payload_to_parts(args);
                DeliveryParts {
                    json,
                    attachments,
                    ack: ack.map(super::AckSlot::new),
                    ..plain(DeliveryKind::Event, name)
                }
            }
        }
    }
}

/// The binding's side: hands deliveries to its language.
pub trait Host<H>: Send + Sync + 'static {
    /// `socket` saw `delivery` (in its namespace, `socket.namespace()`: a
    /// dynamic namespace's child's own); run `handlers` (possibly none: a
    /// connection or disconnection is delivered even without handlers, so
    /// the binding can track its sockets).
    fn deliver(&self, socket: Socket, delivery: Delivery, handlers: Vec<H>);
}

/// The handler lists by namespace, and the namespaces watched.
struct Lists<H> {
    lists: HashMap<(String, Listen), Vec<H>>,
    watched: HashSet<String>,
    watched_disconnecting: HashSet<String>,
}

impl<H: Clone> Lists<H> {
    /// A dynamic namespace's new child: a copy of what its parent has (its
    /// hub handlers are a copy of the parent's too).
    fn copy(&mut self, parent: &str, child: &str) {
        let copies: Vec<_> = self
            .lists
            .iter()
            .filter(|((nsp, _), _)| nsp == parent)
            .map(|((_, listen), list)| ((child.to_owned(), listen.clone()), list.clone()))
            .collect();
        self.lists.retain(|(nsp, _), _| nsp != child);
        self.lists.extend(copies);
        for set in [&mut self.watched, &mut self.watched_disconnecting] {
            if set.contains(parent) {
                set.insert(child.to_owned());
            } else {
                set.remove(child);
            }
        }
    }
}

/// The handler lists of every namespace of one server, and where their
/// deliveries go. A child of a dynamic namespace starts with a copy of its
/// parent's lists, as socket.io's children start with its handlers.
pub struct Listeners<H> {
    host: Arc<dyn Host<H>>,
    lists: Mutex<Lists<H>>,
}

impl<H> std::fmt::Debug for Listeners<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").finish_non_exhaustive()
    }
}

impl<H: Clone + Send + Sync + 'static> Listeners<H> {
    /// Lists delivering to `host`.
    pub fn new(host: Arc<dyn Host<H>>) -> Arc<Listeners<H>> {
        let lists = Lists { lists: HashMap::new(), watched: HashSet::new(), watched_disconnecting: HashSet::new() };
        Arc::new(Listeners { host, lists: Mutex::new(lists) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lists<H>> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handlers of `listen` on `nsp`, in the order they were added.
    pub fn handlers(&self, nsp: &str, listen: &Listen) -> Vec<H> {
        self.lock().lists.get(&(nsp.to_owned(), listen.clone())).cloned().unwrap_or_default()
    }

    /// Delivers the connections and disconnections of `ns` to the host
    /// (once: a namespace already watched is left as it is). Call it
    /// before its sockets can connect. On a dynamic namespace, its
    /// children are watched as they are made, with a copy of its lists.
    pub fn watch(self: &Arc<Self>, ns: &Namespace) {
        if !self.lock().watched.insert(ns.name().to_owned()) {
            return;
        }
        // Deliveries name the socket's namespace: a dynamic namespace's
        // handlers run for its children's sockets too.
        let me = self.clone();
        ns.on_connect(move |socket: Socket| {
            let handlers = me.handlers(socket.namespace(), &Listen::Connection);
            me.host.deliver(socket, Delivery::Connection, handlers);
            async {}
        });
        let me = self.clone();
        ns.on_disconnect(move |socket: Socket, reason: hub::DisconnectReason| {
            let handlers = me.handlers(socket.namespace(), &Listen::Disconnect);
            me.host.deliver(socket, Delivery::Disconnect { reason: reason.to_string() }, handlers);
            async {}
        });
        // Runs while the hub's namespace table is locked: it only copies.
        let me = Arc::downgrade(self);
        let parent = ns.name().to_owned();
        ns.on_new_child(move |child: &Namespace| {
            if let Some(me) = me.upgrade() {
                me.lock().copy(&parent, child.name());
            }
        });
    }

    /// Also delivers `ns`'s sockets' [`Delivery::Disconnecting`], ahead of
    /// their disconnection, for a host whose sockets have their own
    /// `disconnecting` listeners (socket.io's `socket.on("disconnecting")`).
    /// Call it with [`watch`](Self::watch) (once: again does nothing).
    pub fn watch_disconnecting(self: &Arc<Self>, ns: &Namespace) {
        if !self.lock().watched_disconnecting.insert(ns.name().to_owned()) {
            return;
        }
        let me = self.clone();
        ns.on_disconnecting(move |socket: Socket, reason: hub::DisconnectReason| {
            let handlers = me.handlers(socket.namespace(), &Listen::Disconnecting);
            let rooms = super::rooms(&socket);
            me.host.deliver(socket, Delivery::Disconnecting { reason: reason.to_string(), rooms }, handlers);
            async {}
        });
    }

    /// Adds `handler` for `name` (socket.io's `on(name, handler)`) on `ns`
    /// after the ones already there.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] for an empty name.
    pub fn add(self: &Arc<Self>, ns: &Namespace, name: &str, handler: H) -> Result<(), EmbedError> {
        let listen = Listen::from_name(name)?;
        let first = {
            let mut lists = self.lock();
            let list = lists.lists.entry((ns.name().to_owned(), listen.clone())).or_default();
            list.push(handler);
            list.len() == 1
        };
        if !first {
            return Ok(());
        }
        let subscribe = listen.clone();
        let me = self.clone();
        let deliver = move |socket: Socket, e: hub::Event| {
            let handlers = me.handlers(socket.namespace(), &listen);
            let delivery = Delivery::Event { name: e.name, args: e.args, ack: e.ack };
            me.host.deliver(socket, delivery, handlers);
            async {}
        };
        match subscribe {
            Listen::Event(event) => {
                ns.on(event, deliver);
            }
            Listen::Any => {
                ns.on_fallback(deliver);
            }
            Listen::Connection | Listen::Disconnect | Listen::Disconnecting => {}
        }
        Ok(())
    }
}

/// A server's [`Listeners`], set once the binding's [`Host`] is known
/// (a binding's `set_dispatcher`), then used by name.
#[derive(Debug)]
pub struct ListenerSlot<H>(OnceLock<Arc<Listeners<H>>>);

impl<H> Default for ListenerSlot<H> {
    fn default() -> Self {
        ListenerSlot(OnceLock::new())
    }
}

impl<H: Clone + Send + Sync + 'static> ListenerSlot<H> {
    /// Delivers to `host` from now on.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] the second time.
    pub fn set(&self, host: Arc<dyn Host<H>>) -> Result<(), EmbedError> {
        self.0.set(Listeners::new(host)).map_err(|_| invalid("the dispatcher is already set"))
    }

    fn get(&self) -> Result<&Arc<Listeners<H>>, EmbedError> {
        self.0.get().ok_or_else(|| invalid("set the dispatcher first"))
    }

    /// [`Listeners::watch`] of `server`'s namespace `nsp`.
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] before [`set`](Self::set) or for a
    /// bad name; [`EmbedError::Closed`] once the server is closed.
    pub fn watch(&self, server: &Embedded, nsp: &str) -> Result<(), EmbedError> {
        self.get()?.watch(&server.namespace(nsp)?);
        Ok(())
    }

    /// [`Listeners::watch_disconnecting`] of `server`'s namespace `nsp`.
    ///
    /// # Errors
    /// As [`watch`](Self::watch).
    pub fn watch_disconnecting(&self, server: &Embedded, nsp: &str) -> Result<(), EmbedError> {
        self.get()?.watch_disconnecting(&server.namespace(nsp)?);
        Ok(())
    }

    /// [`Listeners::add`] on `server`'s namespace `nsp`.
    ///
    /// # Errors
    /// As [`watch`](Self::watch), and for an empty name.
    pub fn add(&self, server: &Embedded, nsp: &str, name: &str, handler: H) -> Result<(), EmbedError> {
        self.get()?.add(&server.namespace(nsp)?, name, handler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;

    struct Nobody;
    impl Host<u32> for Nobody {
        fn deliver(&self, _: Socket, _: Delivery, _: Vec<u32>) {}
    }

    #[test]
    fn names_map_to_what_they_listen_to() {
        assert_eq!(Listen::from_name("connect").unwrap(), Listen::Connection);
        assert_eq!(Listen::from_name("connection").unwrap(), Listen::Connection);
        assert_eq!(Listen::from_name("disconnect").unwrap(), Listen::Disconnect);
        assert_eq!(Listen::from_name("disconnecting").unwrap(), Listen::Disconnecting);
        assert_eq!(Listen::from_name("chat").unwrap(), Listen::Event("chat".to_owned()));
        assert_eq!(Listen::from_name("*").unwrap(), Listen::Any);
        assert_eq!(Listen::from_name("").unwrap_err().code().as_str(), "ERR_INVALID_ARG");
    }

    #[test]
    fn every_handler_is_kept_in_order() {
        let hub = Hub::default();
        let (a, b) = (hub.of("/"), hub.of("/b"));
        let listeners = Listeners::new(Arc::new(Nobody));
        listeners.watch(&a);
        for (ns, name, h) in [(&a, "x", 1), (&a, "x", 2), (&b, "x", 3), (&a, "connect", 4), (&a, "connection", 5)] {
            listeners.add(ns, name, h).unwrap();
        }
        assert_eq!(listeners.handlers("/", &Listen::Event("x".to_owned())), [1, 2]);
        assert_eq!(listeners.handlers("/b", &Listen::Event("x".to_owned())), [3]);
        assert_eq!(listeners.handlers("/", &Listen::Connection), [4, 5]);
        assert!(listeners.handlers("/", &Listen::Disconnect).is_empty());
        assert!(listeners.add(&a, "", 6).is_err());
    }

    #[test]
    fn a_slot_is_set_once_and_needed_first() {
        let server = Embedded::new(super::super::EmbedOptions::default()).unwrap();
        let slot = ListenerSlot::<u32>::default();
        assert_eq!(slot.watch(&server, "/").unwrap_err().to_string(), "set the dispatcher first");
        slot.set(Arc::new(Nobody)).unwrap();
        assert_eq!(slot.set(Arc::new(Nobody)).unwrap_err().code().as_str(), "ERR_INVALID_ARG");
        slot.watch(&server, "/").unwrap();
        slot.add(&server, "/", "x", 1).unwrap();
        assert_eq!(slot.add(&server, "no-slash", "x", 1).unwrap_err().code().as_str(), "ERR_INVALID_ARG");
    }
}
