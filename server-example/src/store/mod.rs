//! Where the chat's messages are kept.
//!
//! A [`MessageStore`] saves messages and pages back through a room's
//! history. Three implement it:
//!
//! * [`SqlStore::open_sqlite`]: the embedded default, one SQLite file
//!   ([`SQLITE_FILE`]) in the server's data directory, in WAL mode;
//! * [`SqlStore::open_postgres`]: PostgreSQL, for several nodes sharing one
//!   history (`DATABASE_URL`);
//! * [`MemoryStore`]: nothing survives the process (tests, embedding).
//!
//! Every store keeps the same bounds ([`StoreLimits`]): messages per room,
//! bytes and rooms in all (least recently used rooms dropped first), and
//! the rooms a user may start. A message id is a decimal number given by the
//! store, unique for the store's lifetime (never reused, even after its room
//! is dropped), and increasing in the order messages were saved: history is
//! paged by id, so messages with equal `createdAt` keep their order.
//!
//! # Examples
//!
//! ```
//! use tidewire_server::store::{MemoryStore, MessageStore, NewMessage, StoreLimits};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new(StoreLimits::default());
//! let saved = store.save(NewMessage::new("general", "alice", "hi", "2026-01-01T00:00:00.000Z")).await.unwrap();
//! let page = store.history("general", None, 50).await.unwrap();
//! assert_eq!(page, [saved]);
//! # });
//! ```

mod memory;
mod sql;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use memory::MemoryStore;
pub use sql::{SQLITE_FILE, SqlStore};

/// A boxed future borrowing the store, as the [`MessageStore`] methods
/// return (the trait is used as `dyn MessageStore`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A message to save: everything but the id, which the store gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The room, without the `room:` prefix.
    pub room_id: String,
    /// The sender's user id.
    pub sender_id: String,
    /// The text.
    pub content: String,
    /// When the server received it (RFC 3339, milliseconds, UTC).
    pub created_at: String,
}

impl NewMessage {
    /// A message of `sender_id` to `room_id`.
    pub fn new(
        room_id: impl Into<String>,
        sender_id: impl Into<String>,
        content: impl Into<String>,
        created_at: impl Into<String>,
    ) -> NewMessage {
        NewMessage {
            room_id: room_id.into(),
            sender_id: sender_id.into(),
            content: content.into(),
            created_at: created_at.into(),
        }
    }

    fn with_id(self, id: i64) -> ChatMessage {
        ChatMessage {
            id: id.to_string(),
            room_id: self.room_id,
            sender_id: self.sender_id,
            content: self.content,
            created_at: self.created_at,
        }
    }
}

/// A saved chat message, as clients get it (`{id, roomId, senderId,
/// content, createdAt}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// The store's id: a decimal number, increasing in save order.
    pub id: String,
    /// The room, without the `room:` prefix.
    pub room_id: String,
    /// The sender's user id.
    pub sender_id: String,
    /// The text.
    pub content: String,
    /// When the server received it (RFC 3339).
    pub created_at: String,
}

/// The store could not be read or written (its database is down, full,
/// gone, ...): nothing was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        StoreError(e.to_string())
    }
}

/// Why a message was not saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveError {
    /// The message would start a room (one without history) and its sender
    /// has started as many as they may: acked with code `too_many_rooms`.
    TooManyRooms {
        /// Rooms a user may have started at a time.
        limit: usize,
    },
    /// The store failed: acked with code `store_unavailable`.
    Unavailable(StoreError),
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::TooManyRooms { limit } => write!(f, "the sender has started {limit} rooms already"),
            SaveError::Unavailable(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SaveError {}

impl From<StoreError> for SaveError {
    fn from(e: StoreError) -> SaveError {
        SaveError::Unavailable(e)
    }
}

/// Where messages are saved. Async so that a database can sit behind it.
pub trait MessageStore: Send + Sync + 'static {
    /// Saves `message` and returns it as stored, with its id.
    ///
    /// # Errors
    /// [`SaveError::TooManyRooms`] when the message would start a room
    /// beyond its sender's allowance ([`StoreLimits::rooms_per_user`]);
    /// [`SaveError::Unavailable`] when the store failed (nothing saved).
    fn save(&self, message: NewMessage) -> BoxFuture<'_, Result<ChatMessage, SaveError>>;

    /// Up to `limit` messages of `room_id` with an id below `before` (all
    /// when `None`): the newest of them, oldest first. A client pages back
    /// by passing the first id of a page as the next `before`.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    fn history<'a>(
        &'a self,
        room_id: &'a str,
        before: Option<i64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>>;
}

/// The bounds of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Messages kept per room, the oldest dropped first.
    pub messages_per_room: usize,
    /// Bytes of messages kept in total (an estimate: the strings plus a
    /// message's own size, see [`cost`]); past it, the least recently used
    /// rooms go, then the oldest messages of the room written to (its newest
    /// message stays, whatever its size).
    pub max_bytes: usize,
    /// Rooms kept; past it, the least recently used room goes.
    pub max_rooms: usize,
    /// Rooms one user may have started (sent the first kept message of) at
    /// a time. A room that is dropped no longer counts.
    pub rooms_per_user: usize,
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits { messages_per_room: 1000, max_bytes: 32 << 20, max_rooms: 10_000, rooms_per_user: 20 }
    }
}

/// What a message counts for in [`StoreLimits::max_bytes`]: its strings,
/// its id as the longest one (20 digits), and the size of a
/// [`ChatMessage`]. The same in every store.
pub fn cost(m: &NewMessage) -> usize {
    std::mem::size_of::<ChatMessage>() + 20 + m.room_id.len() + m.sender_id.len() + m.content.len() + m.created_at.len()
}
