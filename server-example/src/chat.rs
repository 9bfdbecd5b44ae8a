//! The chat application: the classic socket.io tutorial done properly.
//!
//! * Handshake auth: a JWT (HS256) in `auth.token`; its `sub` claim is the
//!   user id, `name` the display name, `role` an optional role, `exp` its
//!   expiry (required unless the server runs with
//!   `--allow-tokens-without-exp`). Missing, invalid or expired tokens get
//!   `connect_error` with a clear message.
//!   Every connection of a user is in the room `user:<userId>`.
//! * `chat:join` `(roomId)`: joins `room:<roomId>` if the [`RoomPolicy`]
//!   allows it, acks `{status: "ok"}` or `{status: "error", message}`; the
//!   room's other members get `chat:user_joined` `{userId, name, roomId}`.
//! * `chat:leave` `(roomId)`: leaves; the room gets `chat:user_left`.
//! * presence in every chat room: members get `presence:join` `{roomId,
//!   userId, name}` when a user's first connection joins and
//!   `presence:leave` `{roomId, userId}` when their last one leaves;
//!   `presence:list` `(roomId)` is acked with `{status: "ok", roomId, users:
//!   [{userId, connections, name}]}`.
//! * `chat:message` `({roomId, content})`: rate-limited and checked against
//!   a JSON schema by the core (`{status: "error", code: "rate_limited" |
//!   "invalid_payload" | "payload_too_large"}`), refused unless the sender
//!   joined the room; saved through the [`MessageStore`]; acked
//!   `{status: "ok", data: message}`; the room's other members get
//!   `chat:new_message` with the message `{id, roomId, senderId, content,
//!   createdAt}`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidewire::hub::{Admission, BoxFuture, ConnectError, Event, Handshake, Hub, PresenceOptions, Socket};
use tidewire::limits::{EventRule, JsonSchema};
use tidewire::protocol::socketio::Payload;

/// The longest message accepted, in characters.
pub(crate) const MAX_CONTENT_CHARS: usize = 2000;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The user id.
    pub(crate) sub: String,
    /// The display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// An optional role (`staff` may enter `staff-*` rooms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) exp: Option<u64>,
}

/// A saved chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatMessage {
    pub(crate) id: String,
    pub(crate) room_id: String,
    pub(crate) sender_id: String,
    pub(crate) content: String,
    pub(crate) created_at: String,
}

/// Where messages are saved. Async so that a database can sit behind it.
pub(crate) trait MessageStore: Send + Sync + 'static {
    /// Saves `message` and returns it as stored.
    fn save(&self, message: ChatMessage) -> BoxFuture<Result<ChatMessage, String>>;
}

/// The default store: the last `per_room` messages of each room, in memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    per_room: usize,
    rooms: Mutex<HashMap<String, VecDeque<ChatMessage>>>,
}

impl MemoryStore {
    pub(crate) fn new(per_room: usize) -> MemoryStore {
        MemoryStore { per_room, rooms: Mutex::default() }
    }
}

impl MessageStore for MemoryStore {
    fn save(&self, message: ChatMessage) -> BoxFuture<Result<ChatMessage, String>> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let room = rooms.entry(message.room_id.clone()).or_default();
        if room.len() == self.per_room {
            room.pop_front();
        }
        room.push_back(message.clone());
        Box::pin(async move { Ok(message) })
    }
}

/// Who may enter which room.
pub(crate) trait RoomPolicy: Send + Sync + 'static {
    /// Whether the user with `claims` may join `room_id`.
    fn may_join(&self, claims: &Claims, room_id: &str) -> bool;
}

/// The demo policy: rooms named `staff-*` need the role `staff`.
#[derive(Debug, Default)]
pub(crate) struct StaffRooms;

impl RoomPolicy for StaffRooms {
    fn may_join(&self, claims: &Claims, room_id: &str) -> bool {
        !room_id.starts_with("staff-") || claims.role.as_deref() == Some("staff")
    }
}

/// Verifies and signs access tokens.
#[derive(Clone)]
pub(crate) struct Tokens {
    decoding: Arc<DecodingKey>,
    encoding: Arc<EncodingKey>,
    /// Whether a token without `exp` is accepted (never, by default).
    allow_without_exp: bool,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

impl Tokens {
    pub(crate) fn new(secret: &str) -> Tokens {
        Tokens {
            decoding: Arc::new(DecodingKey::from_secret(secret.as_bytes())),
            encoding: Arc::new(EncodingKey::from_secret(secret.as_bytes())),
            allow_without_exp: false,
        }
    }

    /// Whether tokens without an `exp` claim are accepted (they never
    /// expire, so by default they are refused).
    pub(crate) fn allow_without_exp(mut self, yes: bool) -> Tokens {
        self.allow_without_exp = yes;
        self
    }

    /// Checks a token: signature, algorithm, `exp` (required unless
    /// [`allow_without_exp`](Self::allow_without_exp)), `sub`.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, ConnectError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims = if self.allow_without_exp {
            ["sub".to_owned()].into()
        } else {
            ["sub".to_owned(), "exp".to_owned()].into()
        };
        validation.leeway = 0;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) if !data.claims.sub.is_empty() => Ok(data.claims),
            Ok(_) => Err(ConnectError::new("invalid token: empty subject")),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => ConnectError::new("token expired"),
                ErrorKind::InvalidSignature => ConnectError::new("invalid token: bad signature"),
                ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
                    ConnectError::new("invalid token: no exp claim (tokens must expire)")
                }
                _ => ConnectError::new(format!("invalid token: {e}")),
            }),
        }
    }

    /// Signs `claims` (the dev token endpoint and tests use it).
    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| e.to_string())
    }
}

fn status_error(message: impl Into<String>) -> Value {
    json!({ "status": "error", "message": message.into() })
}

fn reply(event: Event, value: Value) {
    if let Some(ack) = event.ack {
        let _ = ack.send(Payload::json(vec![value]));
    }
}

/// A room id: 1 to 64 characters from `[A-Za-z0-9_-]`.
pub(crate) fn valid_room_id(v: &Value) -> Option<&str> {
    let id = v.as_str()?;
    let ok =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(id)
}

fn claims_of(socket: &Socket) -> Option<Claims> {
    serde_json::from_value(socket.data()["claims"].clone()).ok()
}

/// Installs the chat application on the main namespace of `hub`.
/// The shape of a `chat:message`, checked by the core before the handler
/// runs (the handler still checks what a schema cannot: membership, and
/// content that is only whitespace).
fn message_schema() -> JsonSchema {
    let schema = json!({
        "type": "object",
        "properties": {
            "roomId": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" },
            "content": { "type": "string", "minLength": 1, "maxLength": MAX_CONTENT_CHARS },
        },
        "required": ["roomId", "content"],
    });
    JsonSchema::first_arg(&schema).unwrap_or_else(|e| unreachable!("the message schema is valid: {e}"))
}

pub(crate) fn install(hub: &Hub, tokens: Tokens, store: Arc<dyn MessageStore>, policy: Arc<dyn RoomPolicy>) {
    let ns = hub.of("/");
    // Who is in each chat room, once per user however many tabs they have.
    ns.enable_presence(PresenceOptions::rooms_with_prefix("room:"));
    // A message is at most 2,000 characters of up to 4 bytes, plus framing.
    ns.limit_event("chat:message", EventRule::new().max_bytes(4 * MAX_CONTENT_CHARS + 512).validator(message_schema()));
    ns.use_middleware(move |handshake: Arc<Handshake>| {
        let tokens = tokens.clone();
        async move {
            let Some(token) = handshake.auth.get("token").and_then(Value::as_str) else {
                return Err(ConnectError::new("authentication required: send a JWT as auth.token"));
            };
            let claims = tokens.verify(token)?;
            let name = claims.name.clone().unwrap_or_else(|| claims.sub.clone());
            let presence = json!({ "name": name });
            let data = json!({ "name": name, "claims": claims });
            Ok(Admission::user(claims.sub.clone()).with_data(data).with_presence(presence))
        }
    });
    ns.on_connect(|socket: Socket| async move {
        tracing::info!(socket = socket.id(), user = socket.user_id(), address = %socket.handshake().address, "connected");
    });
    ns.on_disconnect(|socket: Socket, reason: tidewire::hub::DisconnectReason| async move {
        tracing::info!(socket = socket.id(), user = socket.user_id(), %reason, "disconnected");
    });

    ns.on("chat:join", move |socket: Socket, event: Event| {
        let policy = policy.clone();
        async move {
            let Some(room_id) = event.args.data.first().and_then(valid_room_id).map(str::to_owned) else {
                return reply(event, status_error("roomId must be 1-64 characters of A-Z, a-z, 0-9, - and _"));
            };
            let Some(claims) = claims_of(&socket) else { return reply(event, status_error("not authenticated")) };
            if !policy.may_join(&claims, &room_id) {
                tracing::info!(user = %claims.sub, room = %room_id, "join refused");
                return reply(event, status_error(format!("you may not join {room_id}")));
            }
            let room = format!("room:{room_id}");
            let already = socket.in_room(&room);
            if let Err(e) = socket.join(room.clone()) {
                return reply(event, status_error(e.to_string()));
            }
            reply(event, json!({ "status": "ok" }));
            if !already {
                let name = socket.data()["name"].clone();
                let joined = json!({ "userId": claims.sub, "name": name, "roomId": room_id });
                socket.to(room).emit("chat:user_joined", Payload::json(vec![joined]));
            }
        }
    });

    ns.on("chat:leave", |socket: Socket, event: Event| async move {
        let Some(room_id) = event.args.data.first().and_then(valid_room_id).map(str::to_owned) else {
            return reply(event, status_error("invalid roomId"));
        };
        let room = format!("room:{room_id}");
        if socket.in_room(&room) {
            socket.leave(&room);
            let left = json!({ "userId": socket.user_id(), "roomId": room_id });
            socket.to(room).emit("chat:user_left", Payload::json(vec![left]));
        }
        reply(event, json!({ "status": "ok" }));
    });

    ns.on("chat:message", move |socket: Socket, event: Event| {
        let store = store.clone();
        async move {
            let body = event.args.data.first().cloned().unwrap_or(Value::Null);
            let Some(room_id) = valid_room_id(&body["roomId"]).map(str::to_owned) else {
                return reply(event, status_error("roomId is required"));
            };
            let content = body["content"].as_str().unwrap_or_default();
            if content.trim().is_empty() {
                return reply(event, status_error("content must be a non-empty string"));
            }
            if content.chars().count() > MAX_CONTENT_CHARS {
                return reply(event, status_error(format!("content is longer than {MAX_CONTENT_CHARS} characters")));
            }
            let room = format!("room:{room_id}");
            if !socket.in_room(&room) {
                return reply(event, status_error(format!("join {room_id} before sending to it")));
            }
            let message = ChatMessage {
                id: tidewire::engine::new_id(),
                room_id,
                sender_id: socket.user_id().unwrap_or_default().to_owned(),
                content: content.to_owned(),
                created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            };
            match store.save(message).await {
                Ok(saved) => {
                    let value = serde_json::to_value(&saved).unwrap_or(Value::Null);
                    socket.to(room).emit("chat:new_message", Payload::json(vec![value.clone()]));
                    reply(event, json!({ "status": "ok", "data": value }));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "message not saved");
                    reply(event, status_error("the message could not be saved"));
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, exp: Option<u64>) -> Claims {
        Claims { sub: sub.into(), name: None, role: None, exp }
    }

    #[test]
    fn tokens_verify_signature_expiry_and_subject() {
        let tokens = Tokens::new("secret");
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let ok = tokens.sign(&claims("alice", Some(now + 60))).unwrap();
        assert_eq!(tokens.verify(&ok).unwrap().sub, "alice");
        let no_exp = tokens.sign(&claims("bob", None)).unwrap();
        assert_eq!(tokens.verify(&no_exp).unwrap_err().message, "invalid token: no exp claim (tokens must expire)");
        assert_eq!(tokens.clone().allow_without_exp(true).verify(&no_exp).unwrap().sub, "bob");
        let expired = tokens.sign(&claims("alice", Some(now - 10))).unwrap();
        assert_eq!(tokens.verify(&expired).unwrap_err().message, "token expired");
        let forged = Tokens::new("other").sign(&claims("alice", None)).unwrap();
        assert_eq!(tokens.verify(&forged).unwrap_err().message, "invalid token: bad signature");
        assert!(tokens.verify("garbage").unwrap_err().message.starts_with("invalid token"));
        let empty = tokens.sign(&claims("", None)).unwrap();
        assert!(tokens.verify(&empty).is_err());
    }

    #[test]
    fn room_ids_and_policy() {
        assert_eq!(valid_room_id(&json!("general")), Some("general"));
        assert_eq!(valid_room_id(&json!("a-b_C9")), Some("a-b_C9"));
        for bad in [json!(""), json!("x".repeat(65)), json!("sp ace"), json!("a:b"), json!(7), json!(null)] {
            assert_eq!(valid_room_id(&bad), None, "{bad}");
        }
        let mut staff = claims("s", None);
        staff.role = Some("staff".into());
        assert!(StaffRooms.may_join(&claims("u", None), "general"));
        assert!(!StaffRooms.may_join(&claims("u", None), "staff-ops"));
        assert!(StaffRooms.may_join(&staff, "staff-ops"));
    }

    #[test]
    fn memory_store_keeps_the_last_messages_per_room() {
        let store = MemoryStore::new(2);
        for i in 0..3 {
            let m = ChatMessage {
                id: i.to_string(),
                room_id: "r".into(),
                sender_id: "u".into(),
                content: "c".into(),
                created_at: String::new(),
            };
            drop(store.save(m));
        }
        let rooms = store.rooms.lock().unwrap();
        let ids: Vec<_> = rooms["r"].iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
    }
}
