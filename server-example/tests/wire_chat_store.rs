//! The chat's message store is bounded: one user may start only so many
//! rooms (a message that would start one more is acked with code
//! `too_many_rooms`), and rooms with history stay open to everyone.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &str = "store-secret";

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

async fn send(s: &mut SioWs, id: u64, room: &str) -> Value {
    assert_eq!(s.call(id, "chat:join", json!(room)).await["status"], "ok", "join {room}");
    s.call(id + 1, "chat:message", json!({ "roomId": room, "content": "hello" })).await
}

#[tokio::test]
async fn a_user_may_start_only_so_many_rooms() {
    run(async {
        let server = Server::start_chat(&["--store-rooms-per-user", "3"], &[("JWT_SECRET", SECRET)]);
        let mut mallory = chat_client(server.port, "mallory").await;
        for (i, room) in ["r1", "r2", "r3"].into_iter().enumerate() {
            let ack = send(&mut mallory, 10 * i as u64, room).await;
            assert_eq!(ack["status"], "ok", "room {room}: {ack}");
        }
        let refused = send(&mut mallory, 100, "r4").await;
        assert_eq!(refused["status"], "error", "{refused}");
        assert_eq!(refused["code"], "too_many_rooms", "{refused}");
        assert!(refused["message"].as_str().unwrap().contains('3'), "{refused}");
        // Rooms she started stay usable, and another user starts his own.
        assert_eq!(send(&mut mallory, 200, "r1").await["status"], "ok");
        let mut bob = chat_client(server.port, "bob").await;
        assert_eq!(send(&mut bob, 300, "r4").await["status"], "ok", "bob starts r4");
        assert_eq!(send(&mut mallory, 400, "r4").await["status"], "ok", "then r4 has history: open to mallory");
    })
    .await
}
