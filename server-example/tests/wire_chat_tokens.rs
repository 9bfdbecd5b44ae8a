//! The chat's access tokens in production and development: without
//! `JWT_SECRET` the server refuses to start on a public address unless
//! `--dev` is given, development tokens are signed with a secret made per
//! process (not a constant from the source), and tokens must expire unless
//! `--allow-tokens-without-exp` says otherwise.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

/// The constant the server used to sign development tokens with.
const OLD_DEV_SECRET: &str = "tidewire-insecure-development-secret";

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn in_ten_minutes() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600
}

/// Opens a Socket.IO session and sends CONNECT with `token`; the reply.
async fn connect_with(port: u16, token: &str) -> SioPacket {
    let mut s = SioWs::open(port).await;
    s.send(&connect_packet("/", Some(&json!({ "token": token }).to_string()))).await;
    let reply = s.recv_packet().await;
    s.ws.close().await;
    reply
}

fn assert_connected(reply: &SioPacket, what: &str) {
    assert_eq!(reply.ty, 0, "{what}: expected CONNECT, got {reply:?}");
}

fn assert_refused(reply: &SioPacket, message: &str, what: &str) {
    assert_eq!(reply.ty, 4, "{what}: expected CONNECT_ERROR, got {reply:?}");
    assert_eq!(reply.data.as_ref().unwrap()["message"], message, "{what}");
}

async fn dev_token(port: u16, sub: &str) -> String {
    let r = http_get(port, &format!("/dev/token?sub={sub}")).await;
    assert_eq!(r.status, 200, "GET /dev/token: {}", r.text());
    r.text()
}

#[test]
fn without_a_secret_a_public_address_is_refused() {
    let (ok, stderr) = run_to_exit(chat_command(&["--host", "0.0.0.0"], &[]), Duration::from_secs(20));
    assert!(!ok, "the server must not start on 0.0.0.0 without JWT_SECRET or --dev");
    assert!(stderr.contains("JWT_SECRET is not set"), "stderr says why: {stderr}");
    assert!(stderr.contains("--dev"), "stderr names the way out: {stderr}");
    // An empty secret is no secret.
    let (ok, _) = run_to_exit(chat_command(&["--host", "0.0.0.0"], &[("JWT_SECRET", "")]), Duration::from_secs(20));
    assert!(!ok, "JWT_SECRET= (empty) on 0.0.0.0 must not start");
}

#[tokio::test]
async fn a_secret_or_dev_mode_starts_on_a_public_address() {
    run(async {
        let mut with_secret = Server::start_chat(&["--host", "0.0.0.0"], &[("JWT_SECRET", "s3cret")]);
        with_secret.assert_running();
        let r = http_get(with_secret.port, "/dev/token?sub=alice").await;
        assert_eq!(r.status, 404, "no /dev/token with a secret");
        let token = sign(&json!({ "sub": "alice", "exp": in_ten_minutes() }), "s3cret");
        assert_connected(&connect_with(with_secret.port, &token).await, "a token signed with JWT_SECRET");

        let mut dev = Server::start_chat(&["--host", "0.0.0.0", "--dev"], &[]);
        dev.assert_running();
        let token = dev_token(dev.port, "alice").await;
        assert_connected(&connect_with(dev.port, &token).await, "a /dev/token token in --dev mode");
        let env_dev = Server::start_chat(&["--host", "0.0.0.0"], &[("TIDEWIRE_DEV", "1")]);
        let token = dev_token(env_dev.port, "alice").await;
        assert_connected(&connect_with(env_dev.port, &token).await, "a /dev/token token with TIDEWIRE_DEV=1");
    })
    .await
}

#[tokio::test]
async fn development_tokens_are_signed_with_a_secret_made_per_process() {
    run(async {
        // On loopback without any configuration, as the README's first command.
        let a = Server::start_chat(&[], &[]);
        let b = Server::start_chat(&[], &[]);
        let token_a = dev_token(a.port, "mallory").await;
        assert_connected(&connect_with(a.port, &token_a).await, "a's token on a");
        assert_refused(
            &connect_with(b.port, &token_a).await,
            "invalid token: bad signature",
            "a's token on b (each process has its own secret)",
        );
        let forged = sign(&json!({ "sub": "admin", "role": "staff", "exp": in_ten_minutes() }), OLD_DEV_SECRET);
        assert_refused(
            &connect_with(a.port, &forged).await,
            "invalid token: bad signature",
            "a token signed with the secret that used to be in the source",
        );
    })
    .await
}

#[tokio::test]
async fn tokens_without_exp_are_refused_unless_allowed() {
    run(async {
        let secret = ("JWT_SECRET", "s3cret");
        let no_exp = sign(&json!({ "sub": "bob" }), "s3cret");
        let strict = Server::start_chat(&[], &[secret]);
        assert_refused(
            &connect_with(strict.port, &no_exp).await,
            "invalid token: no exp claim (tokens must expire)",
            "a token without exp, by default",
        );
        let relaxed = Server::start_chat(&["--allow-tokens-without-exp"], &[secret]);
        assert_connected(&connect_with(relaxed.port, &no_exp).await, "a token without exp, allowed by the flag");
        let relaxed_env = Server::start_chat(&[], &[secret, ("TIDEWIRE_ALLOW_TOKENS_WITHOUT_EXP", "true")]);
        assert_connected(&connect_with(relaxed_env.port, &no_exp).await, "allowed by the environment");
    })
    .await
}
