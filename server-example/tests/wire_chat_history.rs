//! The chat's history over the wire, on both databases the server keeps
//! messages in: the SQLite file of its data directory (the default) and
//! PostgreSQL (`DATABASE_URL`, a database of the test's own; see
//! `common/postgres.rs`). `chat:history` pages back oldest first, is for
//! members only and checks its shape; messages survive a restart; a save
//! the database fails is an error for the sender and reaches no one.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::postgres::TestDatabase;
use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::{Connection as _, SqliteConnection};
use tempfile::TempDir;

const SECRET: &str = "history-secret";

enum Store {
    Sqlite(TempDir),
    Postgres(TestDatabase),
}

impl Store {
    async fn sqlite() -> Store {
        Store::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Store {
        Store::Postgres(TestDatabase::create().await)
    }

    /// A chat server keeping its messages here (restarting one on the same
    /// store finds them again). Message and history rates are off: the
    /// tests send bursts.
    fn start(&self) -> Server {
        let (name, value) = match self {
            Store::Sqlite(dir) => ("TIDEWIRE_DATA_DIR", dir.path().join("data").display().to_string()),
            Store::Postgres(db) => ("DATABASE_URL", db.url.clone()),
        };
        let args = ["--rate-chat-message", "off", "--rate-chat-history", "off"];
        Server::start_chat(&args, &[("JWT_SECRET", SECRET), (name, &value)])
    }

    /// Breaks the database under the running server.
    async fn break_it(&self) {
        match self {
            Store::Sqlite(dir) => {
                let path = dir.path().join("data").join(tidewire_server::store::SQLITE_FILE);
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query("DROP TABLE messages").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Store::Postgres(db) => db.drop_now().await,
        }
    }
}

/// A connected chat client for `user`.
async fn chat_client(port: u16, user: &str) -> SioWs {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = json!({ "sub": user, "exp": exp });
    let token =
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    let mut s = SioWs::open(port).await;
    s.connect("/", Some(&json!({ "token": token }).to_string())).await;
    s
}

/// A client with its own ack ids.
struct Client {
    ws: SioWs,
    next: u64,
}

impl Client {
    async fn new(port: u16, user: &str) -> Client {
        Client { ws: chat_client(port, user).await, next: 1 }
    }

    /// Emits `event` with `arg`; the ack's argument (events arriving
    /// meanwhile are skipped).
    async fn call(&mut self, event: &str, arg: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.ws.call(id, event, arg).await
    }

    async fn join(&mut self, room: &str) {
        assert_eq!(self.call("chat:join", json!(room)).await["status"], "ok", "join {room}");
    }

    /// Sends `content` to `room`; the message as saved.
    async fn say(&mut self, room: &str, content: &str) -> Value {
        let ack = self.call("chat:message", json!({ "roomId": room, "content": content })).await;
        assert_eq!(ack["status"], "ok", "{ack}");
        ack["data"].clone()
    }

    /// The messages of a `chat:history` page.
    async fn history(&mut self, request: Value) -> Vec<Value> {
        let ack = self.call("chat:history", request.clone()).await;
        assert_eq!(ack["status"], "ok", "{request}: {ack}");
        ack["data"].as_array().unwrap_or_else(|| panic!("data is an array: {ack}")).clone()
    }
}

fn id(m: &Value) -> i64 {
    m["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a numeric string id: {m}"))
}

async fn history_pages_back_oldest_first_and_survives_a_restart(store: Store) {
    let server = store.start();
    let mut alice = Client::new(server.port, "alice").await;
    alice.join("general").await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(alice.say("general", &format!("m{i}")).await);
    }
    assert!(sent.windows(2).all(|w| id(&w[0]) < id(&w[1])), "ids increase: {sent:?}");
    assert_eq!(alice.history(json!({ "roomId": "general" })).await, sent);
    let newest = alice.history(json!({ "roomId": "general", "limit": 2 })).await;
    assert_eq!(newest, sent[3..]);
    let before = alice.history(json!({ "roomId": "general", "before": newest[0]["id"], "limit": 2 })).await;
    assert_eq!(before, sent[1..3]);
    let first = alice.history(json!({ "roomId": "general", "before": before[0]["id"] })).await;
    assert_eq!(first, sent[..1]);
    assert!(alice.history(json!({ "roomId": "general", "before": first[0]["id"] })).await.is_empty());

    // A new process on the same store: the same messages, the same ids.
    drop(alice);
    drop(server);
    let server = store.start();
    let mut alice = Client::new(server.port, "alice").await;
    alice.join("general").await;
    assert_eq!(alice.history(json!({ "roomId": "general" })).await, sent);
    let next = alice.say("general", "after the restart").await;
    assert!(id(&next) > id(&sent[4]), "{next} after {}", sent[4]);
}

async fn history_is_for_members_and_checks_its_shape(store: Store) {
    let server = store.start();
    let mut alice = Client::new(server.port, "alice").await;
    alice.join("general").await;
    let mut sent = Vec::new();
    for i in 0..120 {
        sent.push(alice.say("general", &format!("m{i}")).await);
    }
    // Default 50, at most 100.
    assert_eq!(alice.history(json!({ "roomId": "general" })).await, sent[70..]);
    assert_eq!(alice.history(json!({ "roomId": "general", "limit": 100 })).await, sent[20..]);
    assert_eq!(alice.history(json!({ "roomId": "general", "limit": 1 })).await, sent[119..]);

    let mut bob = Client::new(server.port, "bob").await;
    let refused = bob.call("chat:history", json!({ "roomId": "general" })).await;
    assert_eq!((&refused["status"], &refused["code"]), (&json!("error"), &json!("forbidden")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("general"), "{refused}");
    bob.join("general").await;
    assert_eq!(bob.history(json!({ "roomId": "general", "limit": 2 })).await, sent[118..]);

    for bad in [
        json!({}),
        json!("general"),
        json!({ "roomId": "" }),
        json!({ "roomId": "no spaces" }),
        json!({ "roomId": "general", "limit": 0 }),
        json!({ "roomId": "general", "limit": 101 }),
        json!({ "roomId": "general", "limit": "5" }),
        json!({ "roomId": "general", "limit": 2.5 }),
        json!({ "roomId": "general", "before": 5 }),
        json!({ "roomId": "general", "before": "abc" }),
        json!({ "roomId": "general", "before": "1".repeat(19) }),
    ] {
        let ack = bob.call("chat:history", bad.clone()).await;
        assert_eq!((&ack["status"], &ack["code"]), (&json!("error"), &json!("invalid_payload")), "{bad}: {ack}");
    }
}

async fn a_failed_save_is_an_error_and_reaches_no_one(store: Store) {
    let server = store.start();
    let mut alice = Client::new(server.port, "alice").await;
    let mut bob = Client::new(server.port, "bob").await;
    alice.join("general").await;
    bob.join("general").await;
    alice.say("general", "saved").await;

    store.break_it().await;
    let ack = alice.call("chat:message", json!({ "roomId": "general", "content": "lost" })).await;
    assert_eq!((&ack["status"], &ack["code"]), (&json!("error"), &json!("store_unavailable")), "{ack}");
    assert!(ack["message"].as_str().is_some_and(|m| !m.is_empty()), "{ack}");
    let ack = alice.call("chat:history", json!({ "roomId": "general" })).await;
    assert_eq!(ack["code"], "store_unavailable", "{ack}");

    // Bob gets the message that was saved, then, in order, alice leaving:
    // had "lost" been sent to the room, it would have come in between.
    assert_eq!(alice.call("chat:leave", json!("general")).await["status"], "ok");
    let mut messages = Vec::new();
    loop {
        let p = bob.ws.recv_packet().await;
        let Some(data) = p.data.filter(|_| p.ty == 2) else { continue };
        match data[0].as_str() {
            Some("chat:new_message") => messages.push(data[1]["content"].clone()),
            Some("chat:user_left") => break,
            _ => {}
        }
    }
    assert_eq!(messages, [json!("saved")]);
}

/// A store that cannot be opened stops the server at startup, saying why.
#[test]
fn a_store_that_cannot_open_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let under_file = file.join("data").display().to_string();
    let (ok, stderr) = run_to_exit(chat_command(&[], &[("TIDEWIRE_DATA_DIR", &under_file)]), STEP * 4);
    assert!(!ok && stderr.contains("cannot open the message store in"), "{stderr}");
    let (ok, stderr) = run_to_exit(chat_command(&[], &[("DATABASE_URL", "mysql://127.0.0.1/chat")]), STEP * 4);
    assert!(!ok && stderr.contains("DATABASE_URL must be a postgres:// URL"), "{stderr}");
}

macro_rules! on_store {
    ($store:ident: $($test:ident),* $(,)?) => {
        mod $store {
            $(
                #[tokio::test]
                async fn $test() {
                    super::common::run(async { super::$test(super::Store::$store().await).await }).await
                }
            )*
        }
    };
}

on_store!(sqlite:
    history_pages_back_oldest_first_and_survives_a_restart,
    history_is_for_members_and_checks_its_shape,
    a_failed_save_is_an_error_and_reaches_no_one,
);

on_store!(postgres:
    history_pages_back_oldest_first_and_survives_a_restart,
    history_is_for_members_and_checks_its_shape,
    a_failed_save_is_an_error_and_reaches_no_one,
);
