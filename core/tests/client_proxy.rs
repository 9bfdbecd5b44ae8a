//! The client through an HTTP CONNECT proxy, live: a small proxy on
//! loopback (made here) in front of the core's server. The proxy is given
//! explicitly (with credentials, or refusing wrong ones with 407) or taken
//! from `HTTP_PROXY` / `NO_PROXY`; the environment cases run in a child
//! process of this test binary, so that no other test sees the variables.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::json;
use tidewire::client::{Manager, ManagerOptions, ManagerState, Proxy, SocketOptions, SocketState, TransportKind};
use tidewire::embed::{EmbedOptions, Embedded};
use tidewire::hub::{Event, Socket};
use tidewire::protocol::socketio::Payload;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

mod client_common;
use client_common::{STEP, settled};

const CHILD: &str = "TIDEWIRE_PROXY_TEST_CHILD";

async fn server() -> (Embedded, std::net::SocketAddr) {
    let e = Embedded::new(EmbedOptions::default()).unwrap();
    e.namespace("/").unwrap().on("echo", |_s: Socket, ev: Event| async move {
        if let Some(ack) = ev.ack {
            let _ = ack.send(ev.args);
        }
    });
    let addr = e.listen().await.unwrap();
    (e, addr)
}

/// An HTTP CONNECT proxy on loopback that records the targets it tunnelled
/// to, and asks for `credentials` (`user:password`) when given.
struct ConnectProxy {
    port: u16,
    tunnels: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    async fn start(credentials: Option<&str>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels: Arc<Mutex<Vec<String>>> = Arc::default();
        let expected = credentials.map(|c| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c)));
        let seen = tunnels.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (seen, expected) = (seen.clone(), expected.clone());
                tokio::spawn(async move {
                    let _ = tunnel(client, seen, expected).await;
                });
            }
        });
        ConnectProxy { port, tunnels }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn tunnels(&self) -> Vec<String> {
        self.tunnels.lock().unwrap().clone()
    }
}

async fn tunnel(client: TcpStream, seen: Arc<Mutex<Vec<String>>>, auth: Option<String>) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let target = match head.first().and_then(|l| l.strip_prefix("CONNECT ")) {
        Some(rest) => rest.split(' ').next().unwrap_or_default().to_owned(),
        None => return client.get_mut().write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await,
    };
    if let Some(auth) = auth {
        let given = head.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("proxy-authorization").then(|| v.trim().to_owned())
        });
        if given.as_deref() != Some(auth.as_str()) {
            return client
                .get_mut()
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")
                .await;
        }
    }
    seen.lock().unwrap().push(target.clone());
    let mut upstream = TcpStream::connect(&target).await?;
    client.get_mut().write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Connects with `proxy`, round-trips an ack, waits for the WebSocket
/// upgrade; the error when it cannot connect.
async fn round_trip(url: &str, proxy: Proxy) -> Result<(), String> {
    let opts = ManagerOptions { proxy, reconnection: false, ..ManagerOptions::default() };
    let manager = Manager::new(url, opts).unwrap();
    let socket = manager.socket("/", SocketOptions::default());
    match settled(&socket).await {
        SocketState::Connected { .. } => {}
        other => return Err(format!("{other:?}")),
    }
    let reply = socket.emit_with_ack("echo", Payload::json(vec![json!("via")]), Some(STEP)).await;
    assert_eq!(reply.map(|p| p.data), Ok(vec![json!("via")]));
    let upgraded = ManagerState::Open { transport: TransportKind::WebSocket };
    tokio::time::timeout(STEP, manager.watch_state().wait_for(|s| *s == upgraded)).await.expect("upgraded").unwrap();
    manager.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_proxy_tunnels_polling_and_websocket() {
    let (_server, addr) = server().await;
    let proxy = ConnectProxy::start(None).await;
    round_trip(&format!("http://{addr}"), Proxy::Url(proxy.url())).await.unwrap();
    // The polling requests and the WebSocket, all through the proxy.
    let tunnels = proxy.tunnels();
    assert!(tunnels.len() >= 2, "{tunnels:?}");
    assert!(tunnels.iter().all(|t| *t == addr.to_string()), "{tunnels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_are_sent_and_a_refusal_is_clear() {
    let (_server, addr) = server().await;
    let proxy = ConnectProxy::start(Some("alice:s3cret")).await;
    let with = |creds: &str| Proxy::Url(format!("http://{creds}@127.0.0.1:{}", proxy.port));
    round_trip(&format!("http://{addr}"), with("alice:s3cret")).await.unwrap();
    let refused = round_trip(&format!("http://{addr}"), with("alice:wrong")).await.unwrap_err();
    assert!(refused.contains("proxy authorization required"), "{refused}");
    assert!(proxy.tunnels().iter().all(|t| *t == addr.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_names_the_proxy_unless_no_proxy_or_direct() {
    if std::env::var_os(CHILD).is_some() {
        return; // The child runs `environment_child` only.
    }
    let (_server, addr) = server().await;
    let proxy = ConnectProxy::start(None).await;
    let child = |mode: &str, no_proxy: &str| {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["environment_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, format!("{mode} http://{addr}"))
            .env("HTTP_PROXY", proxy.url())
            .env("NO_PROXY", no_proxy)
            .env_remove("http_proxy")
            .env_remove("no_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).contains("environment_child ... ok")
    };
    assert!(child("system", ""), "the child test ran");
    let through = proxy.tunnels().len();
    assert!(through >= 2, "HTTP_PROXY was used: {:?}", proxy.tunnels());
    // NO_PROXY names the server's host: straight there.
    assert!(child("system", "127.0.0.1"));
    // Direct: the environment is not read.
    assert!(child("direct", ""));
    assert_eq!(proxy.tunnels().len(), through, "NO_PROXY and Direct bypass the proxy");
}

/// Run by the test above in a child process, with the environment set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_child() {
    let Some(spec) = std::env::var(CHILD).ok() else { return };
    let (mode, url) = spec.split_once(' ').unwrap();
    let proxy = if mode == "direct" { Proxy::Direct } else { Proxy::System };
    round_trip(url, proxy).await.unwrap();
}
