//! Cluster nodes over a real Redis for the fault tests: a node in this
//! process, or in a process of its own (this test binary run again, so
//! that it can be frozen with SIGSTOP), and the core's client as a peer.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tidewire::bus::{RedisBus, RedisBusConfig};
use tidewire::client::{Client, ClientConfig};
use tidewire::cluster::ClusterConfig;
use tidewire::embed::{EmbedOptions, Embedded};
use tidewire::hub::{Admission, Event, Handshake, PresenceOptions, ServerAck, Socket};
use tidewire::protocol::socketio::Payload;

pub(crate) const STEP: Duration = Duration::from_secs(10);
/// The cluster's request timeout in these tests.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How often nodes beat (three missed: a node is forgotten, its users leave).
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(200);
/// The presence-tracked room every peer joins.
pub(crate) const ROOM: &str = "room:chat";

/// A bus that reconnects and probes quickly.
pub(crate) fn fast() -> RedisBusConfig {
    RedisBusConfig::default()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .probe(Duration::from_millis(200), Duration::from_millis(500))
}

/// A node in this process.
pub(crate) struct Node {
    pub(crate) server: Embedded,
    pub(crate) url: String,
    pub(crate) bus: Arc<RedisBus>,
}

impl Node {
    /// A node on the Redis at `redis_url`: `join` puts the socket in a room
    /// (acked), presence on the `room:` rooms (users from `auth.user`), and
    /// the server-side event `load?` answered with the node's socket count.
    pub(crate) async fn start(redis_url: &str) -> Node {
        let server = Embedded::new(EmbedOptions::default()).unwrap();
        let hub = server.hub().clone();
        let ns = hub.of("/");
        ns.enable_presence(PresenceOptions::rooms_with_prefix("room:"));
        ns.use_middleware(|h: Arc<Handshake>| async move {
            Ok(Admission::user(h.auth["user"].as_str().unwrap_or("anon").to_owned()))
        });
        ns.on("join", |s: Socket, ev: Event| async move {
            let room = ev.args.data.first().and_then(Value::as_str).unwrap_or(ROOM).to_owned();
            let _ = s.join_async(room).await;
            if let Some(ack) = ev.ack {
                let _ = ack.send(Payload::json(vec![json!(true)]));
            }
        });
        let counted = ns.clone();
        ns.on_server_event("load?", move |_args: Payload, ack: Option<ServerAck>| {
            let n = counted.socket_count();
            async move {
                if let Some(ack) = ack {
                    ack.send(&json!({ "sockets": n }));
                }
            }
        });
        let (bus, inbound) = RedisBus::connect(redis_url, fast()).unwrap();
        let bus = Arc::new(bus);
        let config = ClusterConfig::default().request_timeout(REQUEST_TIMEOUT).heartbeat_interval(HEARTBEAT);
        hub.join_cluster(bus.clone(), inbound, config).await.unwrap();
        let addr = server.listen().await.unwrap();
        Node { server, url: format!("http://{addr}"), bus }
    }

    pub(crate) fn uid(&self) -> String {
        self.server.hub().node_id().to_string()
    }
}

/// The environment variable that makes [`serve_node_process`] serve.
const NODE_ENV: &str = "TIDEWIRE_FAULT_NODE_REDIS";

/// The body of the test (named `test`, ignored) that a [`NodeProcess`]
/// runs: without the variable it returns at once; with it, it serves a
/// [`Node`], prints its address and uid, and exits when its stdin closes
/// (its parent went away).
pub(crate) fn serve_node_process() {
    let Ok(redis_url) = std::env::var(NODE_ENV) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let node = Node::start(&redis_url).await;
        println!("FAULT-NODE {} {}", node.url, node.uid());
        std::io::stdout().flush().unwrap();
        // Each new subscriber connection (a gap in its subscription), on stderr.
        let bus = node.bus.clone();
        tokio::spawn(async move {
            let mut made = bus.connections_made();
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let now = bus.connections_made();
                if now != made {
                    eprintln!("fault node: subscriber connections made: {now}");
                    made = now;
                }
            }
        });
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        })
        .await
        .unwrap();
    });
    std::process::exit(0);
}

/// A [`Node`] in a process of its own; killed when dropped.
pub(crate) struct NodeProcess {
    pub(crate) url: String,
    pub(crate) uid: String,
    child: Child,
    _stdin: ChildStdin,
}

impl NodeProcess {
    /// Runs this test binary's `test` named `test_name` with the node's
    /// Redis URL, and waits for the node to serve.
    pub(crate) fn start(test_name: &str, redis_url: &str) -> NodeProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test_name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(NODE_ENV, redis_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // After libtest's `test node_process ... `, on the same line.
        let announced = lines.find_map(|l| Some(l.ok()?.split_once("FAULT-NODE ")?.1.to_owned()));
        let Some(announced) = announced else {
            let _ = child.kill();
            panic!("the node process did not start");
        };
        let (url, uid) = announced.split_once(' ').unwrap();
        NodeProcess { url: url.to_owned(), uid: uid.to_owned(), child, _stdin: stdin }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGSTOP: the process stops running, its connections stay open.
    pub(crate) fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub(crate) fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of user `user` and the sequence numbers it received as `news`.
pub(crate) struct Peer {
    pub(crate) client: Client,
    pub(crate) news: Arc<Mutex<Vec<u64>>>,
}

impl Peer {
    pub(crate) async fn connect(url: &str, user: &str) -> Peer {
        let mut config = ClientConfig::new(url);
        config.auth = Some(json!({ "user": user }));
        config.connect_timeout = STEP;
        let client = Client::connect(config).await.unwrap();
        let news: Arc<Mutex<Vec<u64>>> = Arc::default();
        let sink = news.clone();
        client.on("news", move |_: &str, args: Payload| {
            if let Some(n) = args.data.first().and_then(Value::as_u64) {
                sink.lock().unwrap().push(n);
            }
        });
        Peer { client, news }
    }

    pub(crate) async fn join(&self, room: &str) {
        self.client.emit_with_ack("join", Payload::json(vec![json!(room)]), Some(STEP)).await.unwrap();
    }

    /// The users its node lists in `room` (`presence:list`), or `None`
    /// when it does not answer in time.
    pub(crate) async fn present_users(&self, room: &str) -> Option<usize> {
        let id = room.strip_prefix("room:").unwrap_or(room);
        let answer = self
            .client
            .emit_with_ack("presence:list", Payload::json(vec![json!(id)]), Some(Duration::from_secs(2)))
            .await
            .ok()?;
        answer.data.first()?.get("users")?.as_array().map(Vec::len)
    }

    pub(crate) fn received(&self) -> Vec<u64> {
        self.news.lock().unwrap().clone()
    }
}

/// Polls `cond` every 20 ms until it holds; how long it took, or `None`
/// after `within`.
pub(crate) async fn within(within: Duration, mut cond: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    loop {
        if cond().await {
            return Some(started.elapsed());
        }
        if started.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
