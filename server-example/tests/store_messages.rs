//! The chat's message stores, one test body per behaviour run against
//! every backend: in memory, SQLite in a temporary directory, and
//! PostgreSQL in a database of the test's own (see `common/postgres.rs`
//! for how the tests find PostgreSQL: they fail, never skip, without it).
//! What only a database does (survive a restart, fail) runs on the two
//! databases.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::postgres::{TestDatabase, with_database};
use sqlx::{Connection as _, SqliteConnection};
use tempfile::TempDir;
use tidewire_server::store::{
    ChatMessage, MemoryStore, MessageStore, NewMessage, SQLITE_FILE, SaveError, SqlStore, StoreLimits, cost,
};

enum Backend {
    Memory,
    Sqlite(TempDir),
    Postgres(TestDatabase),
}

/// A store as opened by a [`Backend`].
enum Opened {
    Memory(MemoryStore),
    Sql(SqlStore),
}

impl Opened {
    fn store(&self) -> &dyn MessageStore {
        match self {
            Opened::Memory(store) => store,
            Opened::Sql(store) => store,
        }
    }

    /// Closes it as a server does when it stops.
    async fn close(self) {
        if let Opened::Sql(store) = self {
            store.close().await;
        }
    }
}

impl Backend {
    async fn memory() -> Backend {
        Backend::Memory
    }

    async fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().expect("a temporary directory"))
    }

    async fn postgres() -> Backend {
        Backend::Postgres(TestDatabase::create().await)
    }

    /// Opens the store (a new one for memory; the same data otherwise).
    async fn open(&self, limits: StoreLimits) -> Opened {
        match self {
            Backend::Memory => Opened::Memory(MemoryStore::new(limits)),
            // A directory that does not exist yet: the store makes it.
            Backend::Sqlite(dir) => {
                Opened::Sql(SqlStore::open_sqlite(&dir.path().join("data"), limits).await.expect("open SQLite"))
            }
            Backend::Postgres(db) => {
                Opened::Sql(SqlStore::open_postgres(&db.url, limits).await.expect("open PostgreSQL"))
            }
        }
    }

    /// Breaks the database under an open store.
    async fn break_store(&self) {
        match self {
            Backend::Memory => unreachable!("the memory store cannot fail"),
            // The table is gone: every save and read fails.
            Backend::Sqlite(dir) => {
                let path = dir.path().join("data").join(SQLITE_FILE);
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query("DROP TABLE messages").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            // The database is gone, and the store's connections with it.
            Backend::Postgres(db) => db.drop_now().await,
        }
    }
}

fn limits(messages_per_room: usize, max_bytes: usize, max_rooms: usize, rooms_per_user: usize) -> StoreLimits {
    StoreLimits { messages_per_room, max_bytes, max_rooms, rooms_per_user }
}

const AT: &str = "2026-01-01T00:00:00.000Z";

fn message(room: &str, sender: &str, content: &str) -> NewMessage {
    NewMessage::new(room, sender, content, AT)
}

async fn save(store: &dyn MessageStore, room: &str, sender: &str, content: &str) -> ChatMessage {
    store.save(message(room, sender, content)).await.unwrap_or_else(|e| panic!("save to {room}: {e}"))
}

/// The contents kept in `room`, oldest first.
async fn kept(store: &dyn MessageStore, room: &str) -> Vec<String> {
    store.history(room, None, 10_000).await.unwrap().into_iter().map(|m| m.content).collect()
}

fn id(m: &ChatMessage) -> i64 {
    m.id.parse().unwrap_or_else(|_| panic!("a numeric id: {m:?}"))
}

/// Ids increase in save order, messages with the same `createdAt` too, and
/// history pages back from the newest, each page oldest first.
async fn ids_order_messages_and_history_pages_back(backend: Backend) {
    let opened = backend.open(StoreLimits::default()).await;
    let store = opened.store();
    let mut general = Vec::new();
    for i in 0..7 {
        general.push(save(store, "general", if i % 2 == 0 { "alice" } else { "bob" }, &format!("m{i}")).await);
        if i % 3 == 0 {
            save(store, "other", "carol", &format!("o{i}")).await;
        }
    }
    assert!(general.iter().all(|m| m.created_at == AT && m.room_id == "general"));
    let ids: Vec<i64> = general.iter().map(id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase in save order: {ids:?}");

    let newest = store.history("general", None, 3).await.unwrap();
    assert_eq!(newest, general[4..]);
    let before = store.history("general", Some(id(&newest[0])), 3).await.unwrap();
    assert_eq!(before, general[1..4]);
    let first = store.history("general", Some(id(&before[0])), 3).await.unwrap();
    assert_eq!(first, general[..1]);
    assert!(store.history("general", Some(id(&first[0])), 3).await.unwrap().is_empty());
    // All at once, none, another room, a room without history.
    assert_eq!(store.history("general", None, 100).await.unwrap(), general);
    assert!(store.history("general", None, 0).await.unwrap().is_empty());
    assert_eq!(kept(store, "other").await, ["o0", "o3", "o6"]);
    assert!(store.history("nowhere", None, 50).await.unwrap().is_empty());
    // A cursor past the newest message pages from the newest.
    assert_eq!(store.history("general", Some(i64::MAX), 2).await.unwrap(), general[5..]);
    opened.close().await;
}

async fn a_user_may_start_only_so_many_rooms(backend: Backend) {
    let opened = backend.open(limits(10, usize::MAX, 100, 2)).await;
    let store = opened.store();
    save(store, "a", "mallory", "1").await;
    save(store, "b", "mallory", "2").await;
    assert_eq!(store.save(message("c", "mallory", "3")).await, Err(SaveError::TooManyRooms { limit: 2 }));
    assert!(kept(store, "c").await.is_empty(), "a refused message is not kept");
    save(store, "a", "mallory", "4").await; // rooms with history are open to everyone
    save(store, "c", "alice", "5").await; // others start their own
    save(store, "c", "mallory", "6").await;
    assert_eq!(kept(store, "c").await, ["5", "6"]);
    opened.close().await;
}

async fn each_room_keeps_its_newest_messages(backend: Backend) {
    let opened = backend.open(limits(2, usize::MAX, 100, 100)).await;
    let store = opened.store();
    for i in 0..5 {
        save(store, "r", "u", &i.to_string()).await;
    }
    assert_eq!(kept(store, "r").await, ["3", "4"]);
    opened.close().await;
}

async fn past_max_rooms_the_least_recently_used_room_goes(backend: Backend) {
    let opened = backend.open(limits(10, usize::MAX, 2, 2)).await;
    let store = opened.store();
    save(store, "a", "mallory", "0").await;
    save(store, "b", "mallory", "1").await;
    save(store, "a", "mallory", "2").await; // a is now the more recent
    save(store, "c", "alice", "3").await; // b goes
    assert!(kept(store, "b").await.is_empty());
    assert_eq!(kept(store, "a").await, ["0", "2"]);
    // b no longer counts as started by mallory.
    save(store, "d", "mallory", "4").await; // a goes (c is more recent)
    assert!(kept(store, "a").await.is_empty());
    assert_eq!((kept(store, "c").await, kept(store, "d").await), (vec!["3".to_owned()], vec!["4".to_owned()]));
    opened.close().await;
}

async fn past_max_bytes_least_recently_used_rooms_go_then_the_oldest_messages(backend: Backend) {
    let body = "x".repeat(1000);
    let one = cost(&message("a", "u", &body));
    let opened = backend.open(limits(100, 3 * one, 100, 100)).await;
    let store = opened.store();
    for room in ["a", "b", "c", "b"] {
        save(store, room, "u", &body).await; // the fourth is over: a, the least recent, goes
    }
    assert_eq!([kept(store, "a").await.len(), kept(store, "b").await.len(), kept(store, "c").await.len()], [0, 2, 1]);
    // One room alone over the bound keeps its newest messages.
    let mut last = Vec::new();
    for _ in 0..6 {
        last.push(save(store, "b", "u", &body).await);
    }
    assert!(kept(store, "c").await.is_empty());
    assert_eq!(store.history("b", None, 100).await.unwrap(), last[3..]);
    // A single message larger than the bound is kept alone.
    let big = save(store, "d", "u", &"y".repeat(5000)).await;
    assert!(kept(store, "b").await.is_empty());
    assert_eq!(store.history("d", None, 100).await.unwrap(), [big]);
    opened.close().await;
}

/// Concurrent saves all land, with distinct ids in their commit order.
async fn concurrent_saves_get_distinct_ids(backend: Backend) {
    let opened = Arc::new(backend.open(StoreLimits::default()).await);
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let opened = opened.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..10 {
                    ids.push(id(&save(opened.store(), "busy", &format!("user-{t}"), &format!("{t}-{i}")).await));
                }
                ids
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for task in tasks {
        let ids = task.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "one sender's ids increase: {ids:?}");
        all.extend(ids);
    }
    assert_eq!(all.len(), 40, "distinct ids");
    let page = opened.store().history("busy", None, 100).await.unwrap();
    assert_eq!(page.iter().map(id).collect::<Vec<_>>(), all.into_iter().collect::<Vec<_>>());
}

/// Messages, their ids and the rooms' starters survive closing and
/// reopening the store, and new ids stay above the old ones.
async fn a_restart_keeps_messages_ids_and_starters(backend: Backend) {
    let opened = backend.open(limits(100, usize::MAX, 100, 1)).await;
    let before: Vec<ChatMessage> = vec![
        save(opened.store(), "general", "alice", "one").await,
        save(opened.store(), "general", "bob", "two").await,
        save(opened.store(), "general", "alice", "three").await,
    ];
    opened.close().await;

    let reopened = backend.open(limits(100, usize::MAX, 100, 1)).await;
    let store = reopened.store();
    assert_eq!(store.history("general", None, 50).await.unwrap(), before);
    let next = save(store, "general", "carol", "four").await;
    assert!(before.iter().all(|m| id(m) < id(&next)), "{next:?} after {before:?}");
    // alice started general before the restart: one room is her allowance.
    assert_eq!(store.save(message("elsewhere", "alice", "x")).await, Err(SaveError::TooManyRooms { limit: 1 }));
    reopened.close().await;
}

/// A database that fails answers every save and read with an error, and
/// keeps nothing.
async fn a_failing_database_is_an_error(backend: Backend) {
    let opened = backend.open(StoreLimits::default()).await;
    let store = opened.store();
    save(store, "general", "alice", "kept").await;
    backend.break_store().await;
    match store.save(message("general", "alice", "lost")).await {
        Err(SaveError::Unavailable(e)) => assert!(!e.0.is_empty()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(store.history("general", None, 50).await.is_err());
}

macro_rules! on_backend {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $test() {
                    super::common::run(async { super::$test(super::Backend::$backend().await).await }).await
                }
            )*
        }
    };
}

on_backend!(memory:
    ids_order_messages_and_history_pages_back,
    a_user_may_start_only_so_many_rooms,
    each_room_keeps_its_newest_messages,
    past_max_rooms_the_least_recently_used_room_goes,
    past_max_bytes_least_recently_used_rooms_go_then_the_oldest_messages,
    concurrent_saves_get_distinct_ids,
);

on_backend!(sqlite:
    ids_order_messages_and_history_pages_back,
    a_user_may_start_only_so_many_rooms,
    each_room_keeps_its_newest_messages,
    past_max_rooms_the_least_recently_used_room_goes,
    past_max_bytes_least_recently_used_rooms_go_then_the_oldest_messages,
    concurrent_saves_get_distinct_ids,
    a_restart_keeps_messages_ids_and_starters,
    a_failing_database_is_an_error,
);

on_backend!(postgres:
    ids_order_messages_and_history_pages_back,
    a_user_may_start_only_so_many_rooms,
    each_room_keeps_its_newest_messages,
    past_max_rooms_the_least_recently_used_room_goes,
    past_max_bytes_least_recently_used_rooms_go_then_the_oldest_messages,
    concurrent_saves_get_distinct_ids,
    a_restart_keeps_messages_ids_and_starters,
    a_failing_database_is_an_error,
);

#[tokio::test]
async fn the_sqlite_store_makes_its_directory_and_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let store = SqlStore::open_sqlite(&data, StoreLimits::default()).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", data.join(SQLITE_FILE).display())).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn only_postgres_urls_open_the_postgres_store() {
    let err = SqlStore::open_postgres("mysql://localhost/db", StoreLimits::default()).await.unwrap_err();
    assert!(err.0.contains("postgres://"), "{err}");
}

#[test]
fn test_database_urls_name_their_database() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t"),
        "postgres://postgres@127.0.0.1:5432/t"
    );
    assert_eq!(with_database("postgres://u:p@h", "t"), "postgres://u:p@h/t");
    assert_eq!(
        with_database("postgres:///postgres?host=/var/run/postgresql&user=root", "t"),
        "postgres:///t?host=/var/run/postgresql&user=root"
    );
}
