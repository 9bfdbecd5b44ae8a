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
//!   createdAt}`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidewire::hub::{Admission, BoxFuture, ConnectError, Event, Handshake, Hub, PresenceOptions, Socket};
use tidewire::limits::{EventRule, JsonSchema};

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

/// Why a message was not saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SaveError {
    /// The message would start a room (one without history) and its sender
    /// has started as many as they may: acked with code `too_many_rooms`.
    TooManyRooms {
        /// Rooms a user may have started at a time.
        limit: usize,
    },
    /// The store failed.
    #[expect(dead_code, reason = "a store over a database can fail; the memory store never does")]
    Failed(String),
}

/// Where messages are saved. Async so that a database can sit behind it.
pub(crate) trait MessageStore: Send + Sync + 'static {
    /// Saves `message` and returns it as stored.
    fn save(&self, message: ChatMessage) -> BoxFuture<Result<ChatMessage, SaveError>>;
}

/// The bounds of a [`MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreLimits {
    /// Messages kept per room, the oldest dropped first.
    pub(crate) messages_per_room: usize,
    /// Bytes of messages kept in total (an estimate: the strings plus the
    /// message's own size); past it, the least recently used rooms go.
    pub(crate) max_bytes: usize,
    /// Rooms kept; past it, the least recently used room goes.
    pub(crate) max_rooms: usize,
    /// Rooms one user may have started (sent the first kept message of) at
    /// a time. A room that is dropped no longer counts.
    pub(crate) rooms_per_user: usize,
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits { messages_per_room: 1000, max_bytes: 32 << 20, max_rooms: 10_000, rooms_per_user: 20 }
    }
}

/// The default store: recent messages of the recently used rooms, in
/// memory, within [`StoreLimits`]. A room whose history is dropped is
/// forgotten entirely (no empty rooms are kept), and so is the start it
/// counted for its user.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    limits: StoreLimits,
    state: Mutex<Rooms>,
}

#[derive(Debug, Default)]
struct Rooms {
    rooms: HashMap<String, Room>,
    /// Room ids by last use, least recent first.
    by_use: BTreeMap<u64, String>,
    /// Rooms started per user (users with none are not kept).
    started: HashMap<String, usize>,
    /// Bytes of all the messages kept.
    bytes: usize,
    /// Counts saves: the use order of rooms.
    clock: u64,
}

#[derive(Debug)]
struct Room {
    messages: VecDeque<ChatMessage>,
    bytes: usize,
    last_used: u64,
    starter: String,
}

/// What a message is counted as in [`StoreLimits::max_bytes`].
fn cost(m: &ChatMessage) -> usize {
    std::mem::size_of::<ChatMessage>()
        + m.id.len()
        + m.room_id.len()
        + m.sender_id.len()
        + m.content.len()
        + m.created_at.len()
}

impl Rooms {
    /// Forgets the least recently used room, other than `keep`; whether one was.
    fn evict_one(&mut self, keep: &str) -> bool {
        let Some((&used, id)) = self.by_use.iter().find(|(_, id)| id.as_str() != keep) else { return false };
        let id = id.clone();
        self.by_use.remove(&used);
        if let Some(room) = self.rooms.remove(&id) {
            self.bytes -= room.bytes;
            if let Some(n) = self.started.get_mut(&room.starter) {
                *n -= 1;
                if *n == 0 {
                    self.started.remove(&room.starter);
                }
            }
        }
        true
    }

    fn save(&mut self, limits: &StoreLimits, message: ChatMessage) -> Result<(), SaveError> {
        self.clock += 1;
        let now = self.clock;
        let id = message.room_id.clone();
        match self.rooms.get_mut(&id) {
            Some(room) => {
                self.by_use.remove(&room.last_used);
                room.last_used = now;
            }
            None => {
                let starter = message.sender_id.clone();
                if self.started.get(&starter).copied().unwrap_or(0) >= limits.rooms_per_user {
                    return Err(SaveError::TooManyRooms { limit: limits.rooms_per_user });
                }
                while self.rooms.len() >= limits.max_rooms.max(1) && self.evict_one(&id) {}
                *self.started.entry(starter.clone()).or_default() += 1;
                let room = Room { messages: VecDeque::new(), bytes: 0, last_used: now, starter };
                self.rooms.insert(id.clone(), room);
            }
        }
        self.by_use.insert(now, id.clone());
        let room = self.rooms.get_mut(&id).unwrap_or_else(|| unreachable!("the room was just found or made"));
        let added = cost(&message);
        room.messages.push_back(message);
        room.bytes += added;
        self.bytes += added;
        // The room's own bound, then the store's: other rooms go first,
        // least recently used first; the room written to keeps its newest
        // message whatever its size.
        let over_room = room.messages.len().saturating_sub(limits.messages_per_room.max(1));
        self.trim(&id, over_room);
        while self.bytes > limits.max_bytes && self.evict_one(&id) {}
        while self.bytes > limits.max_bytes && self.rooms.get(&id).is_some_and(|r| r.messages.len() > 1) {
            self.trim(&id, 1);
        }
        Ok(())
    }

    /// Drops the `n` oldest messages of room `id`.
    fn trim(&mut self, id: &str, n: usize) {
        let Some(room) = self.rooms.get_mut(id) else { return };
        for old in room.messages.drain(..n.min(room.messages.len())) {
            let c = cost(&old);
            room.bytes -= c;
            self.bytes -= c;
        }
    }
}

impl MemoryStore {
    pub(crate) fn new(limits: StoreLimits) -> MemoryStore {
        MemoryStore { limits, state: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MessageStore for MemoryStore {
    fn save(&self, message: ChatMessage) -> BoxFuture<Result<ChatMessage, SaveError>> {
        let saved = self.lock().save(&self.limits, message.clone()).map(|()| message);
        Box::pin(async move { saved })
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

    ns.on("chat:message", move |socket: Socket, mut event: Event| {
        let store = store.clone();
        async move {
            let answer = match send_message(&socket, &event, &*store).await {
                Ok(answer) | Err(answer) => answer,
            };
            let _ = event.reply(answer);
        }
    });
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
    let message = ChatMessage {
        id: tidewire::engine::new_id(),
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
        Err(SaveError::Failed(e)) => {
            tracing::warn!(error = %e, "message not saved");
            Err(status_error("the message could not be saved"))
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

    fn message(id: usize, room: &str, sender: &str, content_bytes: usize) -> ChatMessage {
        ChatMessage {
            id: id.to_string(),
            room_id: room.into(),
            sender_id: sender.into(),
            content: "x".repeat(content_bytes),
            created_at: String::new(),
        }
    }

    fn save(store: &MemoryStore, m: ChatMessage) -> Result<(), SaveError> {
        store.lock().save(&store.limits, m)
    }

    /// Room ids kept, with their message ids.
    fn kept(store: &MemoryStore) -> Vec<(String, Vec<String>)> {
        let state = store.lock();
        let mut rooms: Vec<_> =
            state.rooms.iter().map(|(id, r)| (id.clone(), r.messages.iter().map(|m| m.id.clone()).collect())).collect();
        rooms.sort();
        rooms
    }

    /// The store's accounting matches what it holds.
    fn check(store: &MemoryStore) {
        let state = store.lock();
        let bytes: usize = state.rooms.values().flat_map(|r| r.messages.iter()).map(cost).sum();
        assert_eq!(state.bytes, bytes);
        assert_eq!(state.by_use.len(), state.rooms.len());
        assert!(state.rooms.values().all(|r| !r.messages.is_empty()), "no empty rooms");
        let mut started: HashMap<String, usize> = HashMap::new();
        for r in state.rooms.values() {
            *started.entry(r.starter.clone()).or_default() += 1;
        }
        assert_eq!(state.started, started);
    }

    fn limits(messages_per_room: usize, max_bytes: usize, max_rooms: usize, rooms_per_user: usize) -> StoreLimits {
        StoreLimits { messages_per_room, max_bytes, max_rooms, rooms_per_user }
    }

    #[test]
    fn memory_store_keeps_the_last_messages_per_room() {
        let store = MemoryStore::new(limits(2, usize::MAX, 100, 100));
        for i in 0..3 {
            save(&store, message(i, "r", "u", 1)).unwrap();
        }
        assert_eq!(kept(&store), [("r".into(), vec!["1".into(), "2".into()])]);
        check(&store);
    }

    #[test]
    fn past_max_rooms_the_least_recently_used_room_goes() {
        let store = MemoryStore::new(limits(10, usize::MAX, 2, 100));
        save(&store, message(0, "a", "u", 1)).unwrap();
        save(&store, message(1, "b", "v", 1)).unwrap();
        save(&store, message(2, "a", "u", 1)).unwrap(); // a is now the more recent
        save(&store, message(3, "c", "w", 1)).unwrap();
        assert_eq!(kept(&store), [("a".into(), vec!["0".into(), "2".into()]), ("c".into(), vec!["3".into()])]);
        check(&store);
        assert!(!store.lock().started.contains_key("v"), "b's starter no longer counts it");
    }

    #[test]
    fn past_max_bytes_least_recently_used_rooms_go_then_the_oldest_messages() {
        let one = cost(&message(0, "a", "u", 1000));
        let store = MemoryStore::new(limits(100, 3 * one, 100, 100));
        save(&store, message(0, "a", "u", 1000)).unwrap();
        save(&store, message(1, "b", "u", 1000)).unwrap();
        save(&store, message(2, "c", "u", 1000)).unwrap();
        save(&store, message(3, "b", "u", 1000)).unwrap(); // over: a, the least recent, goes
        assert_eq!(kept(&store), [("b".into(), vec!["1".into(), "3".into()]), ("c".into(), vec!["2".into()])]);
        check(&store);
        // One room alone over the bound keeps its newest messages.
        for i in 4..10 {
            save(&store, message(i, "b", "u", 1000)).unwrap();
        }
        assert_eq!(kept(&store), [("b".into(), vec!["7".into(), "8".into(), "9".into()])]);
        assert!(store.lock().bytes <= 3 * one);
        // A single message larger than the bound is kept alone.
        save(&store, message(10, "d", "u", 5000)).unwrap();
        assert_eq!(kept(&store), [("d".into(), vec!["10".into()])]);
        check(&store);
    }

    #[test]
    fn a_user_may_start_only_so_many_rooms() {
        let store = MemoryStore::new(limits(10, usize::MAX, 100, 2));
        save(&store, message(0, "a", "mallory", 1)).unwrap();
        save(&store, message(1, "b", "mallory", 1)).unwrap();
        assert_eq!(save(&store, message(2, "c", "mallory", 1)), Err(SaveError::TooManyRooms { limit: 2 }));
        save(&store, message(3, "a", "mallory", 1)).unwrap(); // rooms with history are open to everyone
        save(&store, message(4, "c", "alice", 1)).unwrap(); // others start their own
        save(&store, message(5, "c", "mallory", 1)).unwrap();
        assert_eq!(kept(&store).len(), 3);
        check(&store);
    }

    #[test]
    fn a_dropped_room_gives_its_starter_a_start_back() {
        let store = MemoryStore::new(limits(10, usize::MAX, 2, 2));
        save(&store, message(0, "a", "mallory", 1)).unwrap();
        save(&store, message(1, "b", "mallory", 1)).unwrap();
        save(&store, message(2, "c", "alice", 1)).unwrap(); // a goes (max_rooms)
        save(&store, message(3, "d", "mallory", 1)).unwrap(); // so mallory may start d
        assert_eq!(kept(&store).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        check(&store);
    }

    #[test]
    fn the_store_stays_bounded_under_a_flood_of_rooms() {
        let l = limits(1000, 1 << 20, 50, usize::MAX);
        let store = MemoryStore::new(l);
        for i in 0..20_000 {
            save(&store, message(i, &format!("room-{}", i % 500), &format!("user-{}", i % 7), 8000)).unwrap();
            let state = store.lock();
            assert!(state.bytes <= l.max_bytes && state.rooms.len() <= l.max_rooms);
        }
        check(&store);
    }
}
