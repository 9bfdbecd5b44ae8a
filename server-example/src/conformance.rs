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

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tidewire::hub::{Admission, ConnectError, Event, EventRejection, Handshake, Hub, Namespace, Socket};
use tidewire::protocol::socketio::Payload;

/// Installs the contract on `hub`.
pub(crate) fn install(hub: &Hub) {
    install_on(&hub.of("/"));
    install_on(&hub.of("/chat"));
    let dynamic = regex::Regex::new(r"^/dyn-\d+$").unwrap_or_else(|e| unreachable!("static pattern: {e}"));
    install_on(&hub.dynamic(dynamic));
}

fn ack_with(event: Event, value: Value) {
    if let Some(ack) = event.ack {
        let _ = ack.send(Payload::json(vec![value]));
    }
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

fn install_on(ns: &Namespace) {
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
    ns.on("echo", |socket: Socket, event: Event| async move {
        let result = match event.ack {
            Some(ack) => ack.send(event.args),
            None => socket.emit("echo", event.args),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "echo not delivered");
        }
    });
    ns.on("whoami", |socket: Socket, event: Event| async move {
        let me = json!({ "id": socket.id(), "nsp": socket.namespace(), "auth": socket.handshake().auth });
        ack_with(event, me);
    });
    ns.on("ask", |socket: Socket, _event: Event| async move {
        match socket.emit_with_ack("question", Payload::json(vec![json!("ping?")]), None).await {
            Ok(answer) => {
                let first = answer.data.into_iter().next().unwrap_or(Value::Null);
                let mut args = Payload::json(vec![first]);
                args.attachments = answer.attachments;
                let _ = socket.emit("answer", args);
            }
            Err(e) => tracing::debug!(error = %e, "question not answered"),
        }
    });
    ns.on("join", |socket: Socket, event: Event| async move {
        if let Err(e) = socket.join_many(strings(event.args.data.first().unwrap_or(&Value::Null))) {
            return ack_with(event, json!({ "status": "error", "code": "too_many_rooms", "message": e.to_string() }));
        }
        let rooms = sorted_rooms(&socket);
        ack_with(event, rooms);
    });
    ns.on("leave", |socket: Socket, event: Event| async move {
        for room in strings(event.args.data.first().unwrap_or(&Value::Null)) {
            socket.leave(&room);
        }
        let rooms = sorted_rooms(&socket);
        ack_with(event, rooms);
    });
    ns.on("rooms", |socket: Socket, event: Event| async move {
        let rooms = sorted_rooms(&socket);
        ack_with(event, rooms);
    });
    for (name, from_socket) in [("to", true), ("hub-to", false)] {
        ns.on(name, move |socket: Socket, event: Event| async move {
            let spec = event.args.data.first().cloned().unwrap_or(Value::Null);
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
            ack_with(event, json!(reached));
        });
    }
    ns.on("broadcast-ack", |socket: Socket, event: Event| async move {
        let spec = event.args.data.first().cloned().unwrap_or(Value::Null);
        let timeout = Duration::from_millis(spec["timeoutMs"].as_u64().unwrap_or(1000));
        let op = socket.broadcast().to_many(strings(&spec["rooms"])).timeout(timeout);
        let report = match op.emit_with_ack("poll", Payload::json(vec![json!("?")])).await {
            Ok(r) => r,
            Err(e) => return ack_with(event, json!({ "error": e.to_string() })),
        };
        let responses: Vec<Value> =
            report.responses.into_iter().map(|(id, p)| json!({ "id": id, "args": p.data })).collect();
        ack_with(
            event,
            json!({ "responses": responses, "timedOut": report.timed_out, "disconnected": report.disconnected }),
        );
    });
    ns.on("disconnect-me", |socket: Socket, event: Event| async move {
        let close = event.args.data.first().and_then(Value::as_bool).unwrap_or(false);
        socket.disconnect(close);
    });
}
