//! The protocol conformance contract (`--conformance`): small, fixed
//! handlers that the end-to-end tests drive with real socket.io clients.
//!
//! Namespaces `/`, `/chat` and the dynamic `/dyn-<digits>` all get:
//! * `echo`: acked with the arguments received, or emitted back as `echo`
//!   without an ack (binary included);
//! * `whoami`: acked with `{id, nsp, auth}`;
//! * `ask`: emits `question` with an ack, then `answer` with the reply;
//! * `join` (a room or a list), `leave` (a room), `rooms`: acked with the
//!   socket's rooms, sorted;
//! * `to` / `hub-to` `{rooms, except, event, args}`: a broadcast from the
//!   socket (sender excluded) or from the namespace (sender included),
//!   acked with the number of recipients;
//! * `broadcast-ack` `{rooms, timeoutMs}`: asks the rooms' members (sender
//!   excluded) `poll` with an ack and acks `{responses, timedOut,
//!   disconnected}`;
//! * `disconnect-me` `(close)`: the server disconnects the socket;
//! * any event whose name starts with `forbidden` is refused by an event
//!   middleware: its ack gets `{status: "error", code: "forbidden", ...}`.
//!
//! A CONNECT with auth `{"token":"bad"}` is refused with `unauthorized`; one
//! with `{"user": "<id>"}` belongs to that user and joins `user:<id>`.
//!
//! In a cluster (`--redis-url`), the same contract as the official node of
//! the mixed-cluster tests (`e2e/node/lib/official-node.mjs`):
//! * `whoami` also gives `node` (`--node-name`) and `uid` (the cluster id),
//!   in a cluster only;
//! * `set-data` `(value)`: stored as the socket's `data.app`; acked `true`;
//! * `fetch` `{rooms, except}`: `{sockets: [{id, rooms, data}]}` sorted by
//!   id (`data` is `data.app`); when a node did not answer, `{error}` plus
//!   the partial `sockets` and `replies` (who answered, who stayed silent);
//! * `sockets-join` `{rooms, except, join}`, `sockets-leave` `{..., leave}`:
//!   acked `true`; `disconnect-sockets` `{..., close}`: acked `true`, then
//!   done;
//! * `remote-emit` `{id, event, args}`: emits to that socket wherever it is;
//!   acked with 1 or 0 (not found);
//! * `server-side-emit` `{event, args, ack, timeoutMs}`: to the other nodes;
//!   with `ack`, `{error, responses}` (`error` null when every node
//!   answered);
//! * the server-side event `cluster-ping` sends `cluster-pinged {node, args}`
//!   to this node's sockets and acks `{node, args}`;
//! * `server-count`, `all-rooms` (sorted; `{error, rooms, replies}` when a
//!   node did not answer);
//! * `broadcast-ack` spans the nodes; answers from other nodes have a null
//!   `id`, and in a cluster `error` is `"operation has timed out"` when an
//!   answer is missing (as socket.io says).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tidewire::hub::{
    Admission, BroadcastOperator, ConnectError, Event, EventRejection, Handshake, Hub, Namespace, Replies, ServerAck,
    Socket,
};
use tidewire::protocol::socketio::Payload;

/// Installs the contract on `hub`; `node` names this node in answers when
/// it is `clustered`.
pub(crate) fn install(hub: &Hub, node: &str, clustered: bool) {
    let node: Option<[Arc<str>; 2]> = clustered.then(|| [node.into(), hub.node_id().clone()]);
    install_on(&hub.of("/"), &node);
    install_on(&hub.of("/chat"), &node);
    let dynamic = regex::Regex::new(r"^/dyn-\d+$").unwrap_or_else(|e| unreachable!("static pattern: {e}"));
    install_on(&hub.dynamic(dynamic), &node);
}

fn sorted_rooms(socket: &Socket) -> Value {
    let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    rooms.sort();
    json!(rooms)
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    }
}

/// `node` is this node's name and its cluster id, in a cluster.
fn install_on(ns: &Namespace, node: &Option<[Arc<str>; 2]>) {
    ns.use_middleware(|handshake: Arc<Handshake>| async move {
        if handshake.auth.get("token") == Some(&json!("bad")) {
            return Err(ConnectError::new("unauthorized"));
        }
        // `auth.user` names the user: the socket joins `user:<user>`.
        Ok(match handshake.auth.get("user").and_then(Value::as_str) {
            Some(user) => Admission::user(user),
            None => Admission::accept(),
        })
    });
    ns.use_event_middleware(|_socket: Socket, event: Event| async move {
        if event.name.starts_with("forbidden") {
            return Err(EventRejection::new("forbidden", format!("{} is not allowed", event.name)));
        }
        Ok(event)
    });
    ns.on("echo", |socket: Socket, mut event: Event| async move {
        let args = std::mem::take(&mut event.args);
        let result = if event.ack.is_some() { event.reply(args) } else { socket.emit("echo", args) };
        if let Err(e) = result {
            tracing::debug!(error = %e, "echo not delivered");
        }
    });
    let cluster_id = node.clone();
    ns.on("whoami", move |socket: Socket, mut event: Event| {
        let mut me = json!({ "id": socket.id(), "nsp": socket.namespace(), "auth": socket.handshake().auth });
        if let Some([name, uid]) = &cluster_id {
            me["node"] = json!(&**name);
            me["uid"] = json!(&**uid);
        }
        async move {
            let _ = event.reply(me);
        }
    });
    ns.on("ask", |socket: Socket, _event: Event| async move {
        match socket.emit_with_ack("question", "ping?").await {
            Ok(answer) => {
                // The first argument only, its attachments kept.
                let first = answer.arg::<Value>(0).unwrap_or(Value::Null);
                let _ = socket.emit("answer", Payload { data: vec![first], attachments: answer.attachments });
            }
            Err(e) => tracing::debug!(error = %e, "question not answered"),
        }
    });
    ns.on("join", |socket: Socket, mut event: Event| async move {
        // Answered once the cluster delivers the rooms' broadcasts here: a
        // broadcast sent after the answer reaches this socket.
        let answer = match socket.join_many_async(strings(&first_arg(&event))).await {
            Ok(()) => sorted_rooms(&socket),
            Err(e) => json!({ "status": "error", "code": "too_many_rooms", "message": e.to_string() }),
        };
        let _ = event.reply(answer);
    });
    ns.on("leave", |socket: Socket, mut event: Event| async move {
        for room in strings(&first_arg(&event)) {
            socket.leave(&room);
        }
        let _ = event.reply(sorted_rooms(&socket));
    });
    ns.on("rooms", |socket: Socket, mut event: Event| async move {
        let _ = event.reply(sorted_rooms(&socket));
    });
    for (name, from_socket) in [("to", true), ("hub-to", false)] {
        ns.on(name, move |socket: Socket, mut event: Event| async move {
            let spec = first_arg(&event);
            let mut op = if from_socket { socket.broadcast() } else { socket.nsp().broadcast() };
            op = op.to_many(strings(&spec["rooms"]));
            for room in strings(&spec["except"]) {
                op = op.except(room);
            }
            let name = spec["event"].as_str().unwrap_or("message").to_owned();
            let args = match &spec["args"] {
                Value::Array(items) => items.clone(),
                _ => vec![],
            };
            // Placeholders in `args` still point at this packet's attachments.
            let reached = op.emit(&name, Payload { data: args, attachments: event.args.attachments.clone() });
            let _ = event.reply(reached);
        });
    }
    let clustered = node.is_some();
    ns.on("broadcast-ack", move |socket: Socket, mut event: Event| async move {
        let spec = first_arg(&event);
        let timeout = Duration::from_millis(spec["timeoutMs"].as_u64().unwrap_or(1000));
        let op = socket.broadcast().to_many(strings(&spec["rooms"])).timeout(timeout);
        let report = match op.emit_with_ack("poll", "?").await {
            Ok(r) => r,
            Err(e) => {
                let _ = event.reply(json!({ "error": e.to_string() }));
                return;
            }
        };
        let missing = !report.timed_out.is_empty() || report.missing_remote > 0 || report.missing_nodes > 0;
        let responses: Vec<Value> = report
            .responses
            .into_iter()
            .map(|(id, p)| json!({ "id": if id.is_empty() { Value::Null } else { id.into() }, "args": p.data }))
            .collect();
        let mut answer =
            json!({ "responses": responses, "timedOut": report.timed_out, "disconnected": report.disconnected });
        // In a cluster, say so as socket.io does (the single-node contract
        // has the lists only).
        if clustered && missing {
            answer["error"] = json!("operation has timed out");
        }
        let _ = event.reply(answer);
    });
    ns.on("disconnect-me", |socket: Socket, event: Event| async move {
        let close = event.arg::<bool>(0).unwrap_or(false);
        socket.disconnect(close);
    });
    let name: Arc<str> = node.as_ref().map_or_else(|| "tidewire".into(), |[name, _]| name.clone());
    install_cluster(ns, &name);
}

/// The selection `{rooms, except}` of a cluster-wide operation.
fn selection(socket: &Socket, spec: &Value) -> BroadcastOperator {
    let mut op = socket.nsp().broadcast().to_many(strings(&spec["rooms"]));
    for room in strings(&spec["except"]) {
        op = op.except(room);
    }
    op
}

/// The first argument, `null` when there is none.
fn first_arg(event: &Event) -> Value {
    event.arg(0).unwrap_or(Value::Null)
}

/// `error` of a request some node did not answer.
fn incomplete(what: &str, replies: &Replies) -> Option<String> {
    (!replies.complete()).then(|| match &replies.error {
        Some(e) => format!("{what}: {e}"),
        None => format!("{what}: only {} of {} nodes answered", replies.received, replies.expected),
    })
}

fn install_cluster(ns: &Namespace, node: &Arc<str>) {
    ns.on("set-data", |socket: Socket, mut event: Event| async move {
        let mut data = socket.data();
        if !data.is_object() {
            data = json!({});
        }
        data["app"] = first_arg(&event);
        socket.set_data(data);
        let _ = event.reply(true);
    });
    ns.on("fetch", |socket: Socket, mut event: Event| async move {
        let fetched = selection(&socket, &first_arg(&event)).fetch_sockets().await;
        let mut sockets: Vec<Value> = fetched
            .iter()
            .map(|s| {
                let mut rooms = s.rooms.clone();
                rooms.sort();
                json!({ "id": s.id, "rooms": rooms, "data": s.data.get("app").cloned().unwrap_or(Value::Null) })
            })
            .collect();
        sockets.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let answer = match incomplete("fetchSockets", &fetched.replies) {
            None => json!({ "sockets": sockets }),
            Some(error) => json!({ "error": error, "sockets": sockets, "replies": fetched.replies }),
        };
        let _ = event.reply(answer);
    });
    ns.on("sockets-join", |socket: Socket, mut event: Event| async move {
        let spec = first_arg(&event);
        selection(&socket, &spec).sockets_join(strings(&spec["join"]));
        let _ = event.reply(true);
    });
    ns.on("sockets-leave", |socket: Socket, mut event: Event| async move {
        let spec = first_arg(&event);
        let op = selection(&socket, &spec);
        for room in strings(&spec["leave"]) {
            op.sockets_leave(&room);
        }
        let _ = event.reply(true);
    });
    ns.on("disconnect-sockets", |socket: Socket, mut event: Event| async move {
        let spec = first_arg(&event);
        let op = selection(&socket, &spec);
        let _ = event.reply(true);
        op.disconnect_sockets(spec["close"].as_bool().unwrap_or(false));
    });
    ns.on("remote-emit", |socket: Socket, mut event: Event| async move {
        let spec = first_arg(&event);
        let id = spec["id"].as_str().unwrap_or_default().to_owned();
        let found = socket.nsp().to(id).fetch_sockets().await.into_value();
        let sent = found.first().is_some_and(|s| {
            let args = match &spec["args"] {
                Value::Array(items) => items.clone(),
                _ => vec![],
            };
            let name = spec["event"].as_str().unwrap_or("message");
            s.emit(name, Payload { data: args, attachments: event.args.attachments.clone() }).is_ok()
        });
        let _ = event.reply(u8::from(sent));
    });
    ns.on("server-side-emit", |socket: Socket, mut event: Event| async move {
        let spec = first_arg(&event);
        let name = spec["event"].as_str().unwrap_or("message").to_owned();
        let args = Payload::json(match &spec["args"] {
            Value::Array(items) => items.clone(),
            _ => vec![],
        });
        if spec["ack"].as_bool() != Some(true) {
            let answer = match socket.nsp().server_side_emit(&name, &args) {
                Ok(()) => json!(true),
                Err(e) => json!({ "error": e.to_string() }),
            };
            let _ = event.reply(answer);
            return;
        }
        let timeout = spec["timeoutMs"].as_u64().map(Duration::from_millis);
        let answers = socket.nsp().server_side_emit_with_ack(&name, &args, timeout).await;
        let error = (!answers.replies.complete()).then(|| {
            format!("timeout reached: only {} responses received out of {}", answers.len(), answers.replies.expected)
        });
        let _ = event.reply(json!({ "error": error, "responses": answers.value }));
    });
    let name = node.clone();
    let nsp = ns.clone();
    ns.on_server_event("cluster-ping", move |args: Payload, ack: Option<ServerAck>| {
        let answer = json!({ "node": &*name, "args": args.data });
        let nsp = nsp.clone();
        async move {
            nsp.broadcast().local().emit("cluster-pinged", &answer);
            if let Some(ack) = ack {
                ack.send(&answer);
            }
        }
    });
    ns.on("server-count", |socket: Socket, mut event: Event| async move {
        let answer = match socket.nsp().server_count().await {
            Ok(n) => json!(n),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let _ = event.reply(answer);
    });
    ns.on("all-rooms", |socket: Socket, mut event: Event| async move {
        let rooms = socket.nsp().all_rooms().await;
        let answer = match incomplete("allRooms", &rooms.replies) {
            None => json!(rooms.value),
            Some(error) => json!({ "error": error, "rooms": rooms.value, "replies": rooms.replies }),
        };
        let _ = event.reply(answer);
    });
}
