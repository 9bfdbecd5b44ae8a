//! [`SqlStore`]: the store in SQLite (the embedded default) or PostgreSQL.
//!
//! One code path for both, over sqlx's `Any` driver: the statements use
//! only what both databases share (`$1` parameters, `RETURNING`, `CAST`).
//! The schema is in `server-example/migrations/{sqlite,postgres}/`, built
//! into the binary and applied at startup.
//!
//! Saves are serialized: in SQLite by `BEGIN IMMEDIATE` (one writer at a
//! time), in PostgreSQL by the lock on the one `store_state` row each save
//! updates first, so that several nodes sharing a database keep the bounds
//! (rooms per user, bytes and rooms in all) exactly.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, ConnectOptions as _, Connection as _};

use super::{BoxFuture, ChatMessage, MessageStore, NewMessage, SaveError, StoreError, StoreLimits, cost};

/// The SQLite file's name in the data directory.
pub const SQLITE_FILE: &str = "chat.db";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long a save or a history read waits for a connection before the
/// store counts as unavailable (the client is waiting for its ack).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages in a SQL database, within [`StoreLimits`]. Cloning shares the
/// connection pool.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    limits: StoreLimits,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl SqlStore {
    /// Opens the SQLite store in `data_dir` ([`SQLITE_FILE`]), making the
    /// directory and the database when missing, in WAL mode, and brings
    /// its schema up to date.
    ///
    /// # Errors
    /// When the directory or the file cannot be made or opened, or a
    /// migration fails.
    pub async fn open_sqlite(data_dir: &Path, limits: StoreLimits) -> Result<SqlStore, StoreError> {
        let io = |what: &str, e: std::io::Error| StoreError(format!("{what} {}: {e}", data_dir.display()));
        tokio::fs::create_dir_all(data_dir).await.map_err(|e| io("cannot make the data directory", e))?;
        let dir = tokio::fs::canonicalize(data_dir).await.map_err(|e| io("cannot find the data directory", e))?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join(SQLITE_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(ACQUIRE_TIMEOUT);
        // WAL is a property of the file: set here once, it holds for the
        // pool's connections too, which are opened from a URL (the `Any`
        // driver's way) that cannot carry it.
        let mut conn = options.connect().await?;
        SQLITE_MIGRATIONS.run(&mut conn).await.map_err(|e| StoreError(format!("migrating the SQLite store: {e}")))?;
        conn.close().await?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(options.to_url_lossy().as_str())
            .await?;
        Ok(SqlStore { pool, limits, kind: Kind::Sqlite })
    }

    /// Opens the PostgreSQL store at `url` (`postgres://` or
    /// `postgresql://`) and brings its schema up to date (nodes starting
    /// together take turns: sqlx locks the migrations).
    ///
    /// # Errors
    /// When `url` is not a PostgreSQL URL, the database cannot be reached,
    /// or a migration fails.
    pub async fn open_postgres(url: &str, limits: StoreLimits) -> Result<SqlStore, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError("DATABASE_URL must be a postgres:// URL".to_owned()));
        }
        let options = PgConnectOptions::from_str(url)?;
        let mut conn = options.connect().await?;
        POSTGRES_MIGRATIONS
            .run(&mut conn)
            .await
            .map_err(|e| StoreError(format!("migrating the PostgreSQL store: {e}")))?;
        conn.close().await?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(8).acquire_timeout(ACQUIRE_TIMEOUT).connect(url).await?;
        Ok(SqlStore { pool, limits, kind: Kind::Postgres })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }

    /// Closes the pool: waits for the connections in use to come back, then
    /// closes them all (a SQLite file is then checkpointed).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn save_message(&self, message: NewMessage) -> Result<ChatMessage, SaveError> {
        let mut tx = match self.kind {
            Kind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Kind::Postgres => self.pool.begin().await,
        }
        .map_err(StoreError::from)?;
        match save_in(&mut tx, &self.limits, &message).await.map_err(StoreError::from)? {
            Some(id) => {
                tx.commit().await.map_err(StoreError::from)?;
                Ok(message.with_id(id))
            }
            // Rolled back on drop: nothing changed.
            None => Err(SaveError::TooManyRooms { limit: self.limits.rooms_per_user }),
        }
    }

    async fn page(&self, room_id: &str, before: Option<i64>, limit: usize) -> Result<Vec<ChatMessage>, StoreError> {
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT seq, room_id, sender_id, content, created_at FROM messages \
             WHERE room_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(room_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(int(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut page: Vec<ChatMessage> = rows
            .into_iter()
            .map(|(seq, room_id, sender_id, content, created_at)| {
                NewMessage { room_id, sender_id, content, created_at }.with_id(seq)
            })
            .collect();
        page.reverse();
        Ok(page)
    }
}

impl MessageStore for SqlStore {
    fn save(&self, message: NewMessage) -> BoxFuture<'_, Result<ChatMessage, SaveError>> {
        Box::pin(self.save_message(message))
    }

    fn history<'a>(
        &'a self,
        room_id: &'a str,
        before: Option<i64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>> {
        Box::pin(self.page(room_id, before, limit))
    }
}

/// A count or size as the databases' 64-bit integer.
fn int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Saves `m` inside the caller's transaction, keeping the store's bounds as
/// the memory store does; its id, or `None` when it would start a room
/// beyond its sender's allowance (the caller rolls back).
async fn save_in(db: &mut AnyConnection, limits: &StoreLimits, m: &NewMessage) -> Result<Option<i64>, sqlx::Error> {
    // First a write: in PostgreSQL the row lock makes concurrent saves take turns.
    let (now, mut total): (i64, i64) =
        sqlx::query_as("UPDATE store_state SET clock = clock + 1 WHERE id = 1 RETURNING clock, bytes")
            .fetch_one(&mut *db)
            .await?;
    let room = m.room_id.as_str();
    let known: Option<String> =
        sqlx::query_scalar("SELECT starter FROM rooms WHERE id = $1").bind(room).fetch_optional(&mut *db).await?;
    if known.is_some() {
        sqlx::query("UPDATE rooms SET last_used = $2 WHERE id = $1").bind(room).bind(now).execute(&mut *db).await?;
    } else {
        let started: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rooms WHERE starter = $1")
            .bind(&m.sender_id)
            .fetch_one(&mut *db)
            .await?;
        if started >= int(limits.rooms_per_user) {
            return Ok(None);
        }
        let rooms: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rooms").fetch_one(&mut *db).await?;
        let excess = rooms - int(limits.max_rooms.max(1)) + 1;
        if excess > 0 {
            total -= evict(db, room, excess).await?.unwrap_or(0);
        }
        sqlx::query("INSERT INTO rooms (id, starter, last_used, messages, bytes) VALUES ($1, $2, $3, 0, 0)")
            .bind(room)
            .bind(&m.sender_id)
            .bind(now)
            .execute(&mut *db)
            .await?;
    }
    let bytes = int(cost(m));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (room_id, sender_id, content, created_at, bytes) VALUES ($1, $2, $3, $4, $5) \
         RETURNING seq",
    )
    .bind(room)
    .bind(&m.sender_id)
    .bind(&m.content)
    .bind(&m.created_at)
    .bind(bytes)
    .fetch_one(&mut *db)
    .await?;
    let messages: i64 = sqlx::query_scalar(
        "UPDATE rooms SET messages = messages + 1, bytes = bytes + $2 WHERE id = $1 RETURNING messages",
    )
    .bind(room)
    .bind(bytes)
    .fetch_one(&mut *db)
    .await?;
    total += bytes;
    // The room's own bound, then the store's: other rooms go first, least
    // recently used first; the room written to keeps its newest message
    // whatever its size.
    let over_room = messages - int(limits.messages_per_room.max(1));
    if over_room > 0 {
        total -= trim(db, room, over_room).await?;
    }
    let max = int(limits.max_bytes);
    while total > max {
        match evict(db, room, 1).await? {
            Some(freed) => total -= freed,
            None => break,
        }
    }
    if total > max {
        let sizes: Vec<i64> = sqlx::query_scalar("SELECT bytes FROM messages WHERE room_id = $1 ORDER BY seq")
            .bind(room)
            .fetch_all(&mut *db)
            .await?;
        let (mut over, mut drop) = (total - max, 0);
        for size in &sizes[..sizes.len().saturating_sub(1)] {
            if over <= 0 {
                break;
            }
            over -= size;
            drop += 1;
        }
        if drop > 0 {
            total -= trim(db, room, drop).await?;
        }
    }
    sqlx::query("UPDATE store_state SET bytes = $1 WHERE id = 1").bind(total).execute(&mut *db).await?;
    Ok(Some(id))
}

/// Drops up to `n` of the least recently used rooms other than `keep`, with
/// their messages; the bytes freed, `None` when there was none to drop.
async fn evict(db: &mut AnyConnection, keep: &str, n: i64) -> Result<Option<i64>, sqlx::Error> {
    let victims: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, bytes FROM rooms WHERE id <> $1 ORDER BY last_used LIMIT $2")
            .bind(keep)
            .bind(n)
            .fetch_all(&mut *db)
            .await?;
    if victims.is_empty() {
        return Ok(None);
    }
    let mut freed = 0;
    for (id, bytes) in victims {
        sqlx::query("DELETE FROM messages WHERE room_id = $1").bind(&id).execute(&mut *db).await?;
        sqlx::query("DELETE FROM rooms WHERE id = $1").bind(&id).execute(&mut *db).await?;
        freed += bytes;
    }
    Ok(Some(freed))
}

/// Drops the `n` oldest messages of `room`; the bytes freed.
async fn trim(db: &mut AnyConnection, room: &str, n: i64) -> Result<i64, sqlx::Error> {
    let freed: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(bytes) AS BIGINT) FROM (SELECT bytes FROM messages WHERE room_id = $1 ORDER BY seq LIMIT $2) \
         AS oldest",
    )
    .bind(room)
    .bind(n)
    .fetch_one(&mut *db)
    .await?;
    sqlx::query(
        "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages WHERE room_id = $1 ORDER BY seq LIMIT $2)",
    )
    .bind(room)
    .bind(n)
    .execute(&mut *db)
    .await?;
    let freed = freed.unwrap_or(0);
    sqlx::query("UPDATE rooms SET messages = messages - $2, bytes = bytes - $3 WHERE id = $1")
        .bind(room)
        .bind(n)
        .bind(freed)
        .execute(&mut *db)
        .await?;
    Ok(freed)
}
