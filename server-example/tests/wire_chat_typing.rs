//! `chat:typing` over the wire: a member's notice reaches the room's other
//! members (not the sender, not outsiders) as `{roomId, userId, name,
//! typing}`; outsiders are refused, wrong shapes and oversized notices get
//! the ack error shapes of `chat:message`, bursts are rate-limited with a
//! `retryAfterMs`, and the server keeps serving.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &str = "typing-secret";

struct Client {
    ws: SioWs,
    next: u64,
}

impl Client {
    async fn new(port: u16, user: &str) -> Client {
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
        let claims = json!({ "sub": user, "name": user.to_uppercase(), "exp": exp });
        let token =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        let mut ws = SioWs::open(port).await;
        ws.connect("/", Some(&json!({ "token": token }).to_string())).await;
        Client { ws, next: 1 }
    }

    /// Emits `event` with `arg`; the ack's argument (events meanwhile skipped).
    async fn call(&mut self, event: &str, arg: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.ws.call(id, event, arg).await
    }

    /// The next `event` this client gets (others skipped).
    async fn next_event(&mut self, event: &str) -> Value {
        loop {
            let p = self.ws.recv_packet().await;
            if p.ty == 2 && p.data.as_ref().is_some_and(|d| d[0] == event) {
                return p.data.unwrap()[1].clone();
            }
        }
    }

    /// Fails if `event` arrives within `d`.
    async fn no_event(&mut self, event: &str, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Some(frame) =
            self.ws.ws.recv_within(deadline.saturating_duration_since(tokio::time::Instant::now())).await
        {
            if let Frame::Text(text) = frame {
                assert!(!text.contains(&format!("\"{event}\"")), "unexpected {event}: {text}");
            }
        }
    }
}

fn code(ack: &Value) -> (&str, &str) {
    (ack["status"].as_str().unwrap_or_default(), ack["code"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn typing_reaches_the_other_members_only() {
    run(async {
        let server = Server::start_chat(&[], &[("JWT_SECRET", SECRET)]);
        let mut alice = Client::new(server.port, "alice").await;
        let mut bob = Client::new(server.port, "bob").await;
        let mut carol = Client::new(server.port, "carol").await;
        for c in [&mut alice, &mut bob] {
            assert_eq!(c.call("chat:join", json!("general")).await["status"], "ok");
        }
        assert_eq!(carol.call("chat:join", json!("random")).await["status"], "ok");

        let ack = alice.call("chat:typing", json!({ "roomId": "general", "typing": true })).await;
        assert_eq!(ack, json!({ "status": "ok" }));
        let notice = bob.next_event("chat:typing").await;
        assert_eq!(notice, json!({ "roomId": "general", "userId": "alice", "name": "ALICE", "typing": true }));
        // Without an ack, as the web app sends it.
        alice.ws.send(&format!("42{}", json!(["chat:typing", { "roomId": "general", "typing": false }]))).await;
        assert_eq!(bob.next_event("chat:typing").await["typing"], false);
        alice.no_event("chat:typing", Duration::from_millis(300)).await;
        carol.no_event("chat:typing", Duration::from_millis(100)).await;

        // Outsiders are refused.
        let ack = carol.call("chat:typing", json!({ "roomId": "general", "typing": true })).await;
        assert_eq!(code(&ack), ("error", "forbidden"), "{ack}");
        bob.no_event("chat:typing", Duration::from_millis(300)).await;
    })
    .await
}

#[tokio::test]
async fn bad_typing_notices_get_error_acks_and_bursts_are_rate_limited() {
    run(async {
        // Shapes first, with the rate off (refusals count against it too).
        let mut server = Server::start_chat(&["--rate-chat-typing", "off"], &[("JWT_SECRET", SECRET)]);
        let mut alice = Client::new(server.port, "alice").await;
        assert_eq!(alice.call("chat:join", json!("general")).await["status"], "ok");
        for bad in [
            json!({}),
            json!("general"),
            json!({ "roomId": "general" }),
            json!({ "roomId": "general", "typing": "yes" }),
            json!({ "roomId": "no spaces", "typing": true }),
            json!({ "typing": true }),
        ] {
            let ack = alice.call("chat:typing", bad.clone()).await;
            assert_eq!(code(&ack), ("error", "invalid_payload"), "{bad}: {ack}");
        }
        let huge = json!({ "roomId": "general", "typing": true, "pad": "x".repeat(300) });
        let ack = alice.call("chat:typing", huge).await;
        assert_eq!(code(&ack), ("error", "payload_too_large"), "{ack}");

        // The default rate (2/s, bursts of 6): a burst of 10 is cut, with a time to retry.
        let mut server2 = Server::start_chat(&[], &[("JWT_SECRET", SECRET)]);
        let mut bob = Client::new(server2.port, "bob").await;
        assert_eq!(bob.call("chat:join", json!("general")).await["status"], "ok");
        let mut limited = 0;
        for _ in 0..10 {
            let ack = bob.call("chat:typing", json!({ "roomId": "general", "typing": true })).await;
            if ack["status"] == "error" {
                assert_eq!(code(&ack), ("error", "rate_limited"), "{ack}");
                assert!(ack["retryAfterMs"].as_u64().is_some(), "{ack}");
                limited += 1;
            }
        }
        assert!((3..=5).contains(&limited), "{limited} of 10 limited");
        // Messages are limited on their own: the chat goes on.
        let ack = bob.call("chat:message", json!({ "roomId": "general", "content": "still here" })).await;
        assert_eq!(ack["status"], "ok", "{ack}");
        server.assert_running();
        server2.assert_running();
    })
    .await
}
