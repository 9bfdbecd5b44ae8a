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
//!   joined the room; saved through the [`MessageStore`] (a message that
//!   would start a room beyond the sender's allowance is acked
//!   `{status: "error", code: "too_many_rooms", message}`); acked
//!   `{status: "ok", data: message}`; the room's other members get
//!   `chat:new_message` with the message `{id, roomId, senderId, content,
//!   createdAt}`. When the store fails, nothing is sent to the room and the
//!   ack is `{status: "error", code: "store_unavailable", message}`.
//! * `chat:typing` `({roomId, typing})`: a typing notice, sent volatile
//!   (dropped rather than queued for a slow or disconnected member) to the
//!   room's other connections as `chat:typing` `{roomId, userId, name,
//!   typing}`; rate-limited and checked against a JSON schema like
//!   `chat:message`, members only (`code: "forbidden"`); acked `{status:
//!   "ok"}` when the client asks for an ack (the web app does not).
//! * `chat:history` `({roomId, before?, limit?})`: checked against a JSON
//!   schema like `chat:message`; members of the room only (`code:
//!   "forbidden"` otherwise); acked `{status: "ok", data: [message, ...]}`
//!   with the newest `limit` messages (default 50, at most 100) whose id is
//!   below `before` (a message id; all when absent), oldest first. The
//!   first id of a page is the `before` of the page preceding it.

use std::sync::Arc;
use std::time::SystemTime;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidewire::hub::{Admission, ConnectError, Event, EventRejection, Handshake, Hub, PresenceOptions, Socket};
use tidewire::limits::{EventRule, JsonSchema};
use tidewire_server::store::{MessageStore, NewMessage, SaveError};

/// The longest message accepted, in characters.
pub(crate) const MAX_CONTENT_CHARS: usize = 2000;
/// Messages in a `chat:history` page when the request names no `limit`.
pub(crate) const HISTORY_DEFAULT_LIMIT: u64 = 50;
/// The most messages a `chat:history` page may ask for.
pub(crate) const HISTORY_MAX_LIMIT: u64 = 100;

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

/// The `roomId` a `chat:join` or `chat:leave` names, if valid.
fn room_id_arg(event: &Event) -> Option<String> {
    valid_room_id(&event.arg::<Value>(0).ok()?).map(str::to_owned)
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

/// The shape of a `chat:history` request. `before` is a message id as
/// given (a decimal string; 18 digits at most, so it fits in an i64).
fn history_schema() -> JsonSchema {
    let schema = json!({
        "type": "object",
        "properties": {
            "roomId": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" },
            "before": { "type": "string", "pattern": "^[0-9]{1,18}$" },
            "limit": { "type": "integer", "minimum": 1, "maximum": HISTORY_MAX_LIMIT },
        },
        "required": ["roomId"],
    });
    JsonSchema::first_arg(&schema).unwrap_or_else(|e| unreachable!("the history schema is valid: {e}"))
}

/// The shape of a `chat:typing` notice.
fn typing_schema() -> JsonSchema {
    let schema = json!({
        "type": "object",
        "properties": {
            "roomId": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" },
            "typing": { "type": "boolean" },
        },
        "required": ["roomId", "typing"],
    });
    JsonSchema::first_arg(&schema).unwrap_or_else(|e| unreachable!("the typing schema is valid: {e}"))
}

/// Installs the chat application on the main namespace of `hub`.
pub(crate) fn install(hub: &Hub, tokens: Tokens, store: Arc<dyn MessageStore>, policy: Arc<dyn RoomPolicy>) {
    let ns = hub.of("/");
    // Who is in each chat room, once per user however many tabs they have.
    ns.enable_presence(PresenceOptions::rooms_with_prefix("room:"));
    // A message is at most 2,000 characters of up to 4 bytes, plus framing.
    ns.limit_event("chat:message", EventRule::new().max_bytes(4 * MAX_CONTENT_CHARS + 512).validator(message_schema()));
    ns.limit_event("chat:history", EventRule::new().max_bytes(512).validator(history_schema()));
    ns.limit_event("chat:typing", EventRule::new().max_bytes(256).validator(typing_schema()));
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
    // A recovered session rejoins only the rooms its user may join now:
    // the token it reconnects with may have lost a role since.
    let guard_policy = policy.clone();
    ns.restore_room_guard(move |data: &Value, _user: Option<&str>, room: &str| {
        let Some(room_id) = room.strip_prefix("room:") else { return true };
        serde_json::from_value::<Claims>(data["claims"].clone()).is_ok_and(|c| guard_policy.may_join(&c, room_id))
    });
    ns.on_connect(|socket: Socket| async move {
        tracing::info!(socket = socket.id(), user = socket.user_id(), address = %socket.handshake().address, "connected");
    });
    ns.on_disconnect(|socket: Socket, reason: tidewire::hub::DisconnectReason| async move {
        tracing::info!(socket = socket.id(), user = socket.user_id(), %reason, "disconnected");
    });

    ns.on("chat:join", move |socket: Socket, mut event: Event| {
        let policy = policy.clone();
        async move {
            match join(&socket, &event, &*policy).await {
                Ok(joined) => {
                    let _ = event.reply(json!({ "status": "ok" }));
                    if let Some((room, notice)) = joined {
                        socket.to(room).emit("chat:user_joined", notice);
                    }
                }
                Err(refusal) => {
                    let _ = event.reply(refusal);
                }
            }
        }
    });

    ns.on("chat:leave", |socket: Socket, mut event: Event| async move {
        let Some(room_id) = room_id_arg(&event) else {
            let _ = event.reply(status_error("invalid roomId"));
            return;
        };
        let room = format!("room:{room_id}");
        if socket.in_room(&room) {
            socket.leave(&room);
            socket.to(room).emit("chat:user_left", json!({ "userId": socket.user_id(), "roomId": room_id }));
        }
        let _ = event.reply(json!({ "status": "ok" }));
    });

    ns.on("chat:typing", |socket: Socket, mut event: Event| async move {
        let body: Value = event.arg(0).unwrap_or(Value::Null);
        let (Some(room_id), Some(typing)) = (valid_room_id(&body["roomId"]), body["typing"].as_bool()) else {
            let _ = event.reply(EventRejection::new("invalid_payload", "roomId and typing are required").to_ack());
            return;
        };
        let room = format!("room:{room_id}");
        if !socket.in_room(&room) {
            let _ = event.reply(EventRejection::new("forbidden", format!("join {room_id} first")).to_ack());
            return;
        }
        let notice = json!({
            "roomId": room_id,
            "userId": socket.user_id(),
            "name": socket.data()["name"],
            "typing": typing,
        });
        socket.to(room).volatile().emit("chat:typing", notice);
        let _ = event.reply(json!({ "status": "ok" }));
    });

    let history_store = store.clone();
    // Messages are saved, relayed and answered in the order they arrived:
    // a store that saves asynchronously would otherwise finish a burst's
    // saves in any order and give a sender's messages ids out of order.
    // The turn is taken first thing (handlers run inline up to their first
    // await, and the lock is first come, first served).
    let turns = Arc::new(tokio::sync::Mutex::new(()));
    ns.on("chat:message", move |socket: Socket, mut event: Event| {
        let (store, turns) = (store.clone(), turns.clone());
        async move {
            let _turn = turns.lock().await;
            let answer = match send_message(&socket, &event, &*store).await {
                Ok(answer) | Err(answer) => answer,
            };
            let _ = event.reply(answer);
        }
    });

    ns.on("chat:history", move |socket: Socket, mut event: Event| {
        let store = history_store.clone();
        async move {
            let answer = match history(&socket, &event, &*store).await {
                Ok(answer) | Err(answer) => answer,
            };
            let _ = event.reply(answer);
        }
    });
}

/// The answer to a `chat:history` (its shape was checked by the schema).
async fn history(socket: &Socket, event: &Event, store: &dyn MessageStore) -> Result<Value, Value> {
    let body: Value = event.arg(0).unwrap_or(Value::Null);
    let invalid = |message: &str| EventRejection::new("invalid_payload", message).to_ack();
    let room_id = valid_room_id(&body["roomId"]).ok_or_else(|| invalid("roomId is required"))?;
    let before = match &body["before"] {
        Value::Null => None,
        v => {
            Some(v.as_str().and_then(|s| s.parse::<i64>().ok()).ok_or_else(|| invalid("before must be a message id"))?)
        }
    };
    // The schema allows 50.0 as an integer: read it as a number.
    let limit = match &body["limit"] {
        Value::Null => HISTORY_DEFAULT_LIMIT,
        v => v.as_f64().map_or(0, |f| f as u64),
    };
    if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
        return Err(invalid(&format!("limit must be 1 to {HISTORY_MAX_LIMIT}")));
    }
    if !socket.in_room(&format!("room:{room_id}")) {
        return Err(EventRejection::new("forbidden", format!("join {room_id} before reading its history")).to_ack());
    }
    match store.history(room_id, before, limit as usize).await {
        Ok(page) => Ok(json!({ "status": "ok", "data": page })),
        Err(e) => {
            tracing::warn!(error = %e, room = room_id, "history not read");
            Err(store_unavailable("the history could not be read: try again later"))
        }
    }
}

/// The ack of a request the store failed.
fn store_unavailable(message: &str) -> Value {
    EventRejection::new("store_unavailable", message).to_ack()
}

/// Joins the room a `chat:join` names. `Ok` with the room and the notice
/// for its other members when the socket was not in it yet; `Err` with
/// the refusal.
async fn join(socket: &Socket, event: &Event, policy: &dyn RoomPolicy) -> Result<Option<(String, Value)>, Value> {
    let Some(room_id) = room_id_arg(event) else {
        return Err(status_error("roomId must be 1-64 characters of A-Z, a-z, 0-9, - and _"));
    };
    let claims = claims_of(socket).ok_or_else(|| status_error("not authenticated"))?;
    if !policy.may_join(&claims, &room_id) {
        tracing::info!(user = %claims.sub, room = %room_id, "join refused");
        return Err(status_error(format!("you may not join {room_id}")));
    }
    let room = format!("room:{room_id}");
    let already = socket.in_room(&room);
    // Acked once other nodes' messages to the room reach this socket.
    socket.join_async(room.clone()).await.map_err(|e| status_error(e.to_string()))?;
    if already {
        return Ok(None);
    }
    let name = socket.data()["name"].clone();
    Ok(Some((room, json!({ "userId": claims.sub, "name": name, "roomId": room_id }))))
}

/// Saves and relays a `chat:message`; the answer for the sender, `Err`
/// when refused.
async fn send_message(socket: &Socket, event: &Event, store: &dyn MessageStore) -> Result<Value, Value> {
    let body: Value = event.arg(0).unwrap_or(Value::Null);
    let room_id = valid_room_id(&body["roomId"]).ok_or_else(|| status_error("roomId is required"))?.to_owned();
    let content = body["content"].as_str().unwrap_or_default();
    if content.trim().is_empty() {
        return Err(status_error("content must be a non-empty string"));
    }
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(status_error(format!("content is longer than {MAX_CONTENT_CHARS} characters")));
    }
    let room = format!("room:{room_id}");
    if !socket.in_room(&room) {
        return Err(status_error(format!("join {room_id} before sending to it")));
    }
    let message = NewMessage {
        room_id,
        sender_id: socket.user_id().unwrap_or_default().to_owned(),
        content: content.to_owned(),
        created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    };
    match store.save(message).await {
        Ok(saved) => {
            socket.to(room).emit("chat:new_message", &saved);
            Ok(json!({ "status": "ok", "data": saved }))
        }
        Err(SaveError::TooManyRooms { limit }) => {
            let message = format!(
                "you have started {limit} rooms with history already: send to one of them, or wait until an old \
                 one is dropped"
            );
            Err(json!({ "status": "error", "code": "too_many_rooms", "message": message }))
        }
        Err(SaveError::Unavailable(e)) => {
            // Nothing was saved, so nothing is sent to the room.
            tracing::warn!(error = %e, "message not saved");
            Err(store_unavailable("the message could not be saved: try again later"))
        }
    }
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
}
