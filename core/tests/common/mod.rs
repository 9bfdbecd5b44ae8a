//! Helpers shared by the integration tests that need a Redis server.

#![allow(dead_code)]

#[cfg(all(feature = "client", feature = "server"))]
pub(crate) mod cluster;
pub(crate) mod proxy;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server of the test's own; killed when dropped.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub(crate) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    pub(crate) fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        RedisServer::adopt(port, child)
    }

    /// Waits for a started `redis-server` to accept connections.
    pub(crate) fn adopt(port: u16, mut child: Child) -> RedisServer {
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return RedisServer { port, child: Some(child) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start on port {port}");
    }

    pub(crate) fn start() -> RedisServer {
        RedisServer::start_on(RedisServer::free_port())
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Crashes Redis (SIGKILL) after pausing its writers, so that every
    /// `PUBLISH` it answered was also written to its subscribers.
    ///
    /// Redis answers a `PUBLISH` and writes the message to the subscribers
    /// in the same event-loop turn, the publisher first (Redis 7 queues the
    /// last client to write at the head): a SIGKILL between those writes
    /// loses a message its publisher saw answered. That is Redis pub/sub's
    /// own at-most-once window, which no client can close (measured: 10 of
    /// 24,535 answered messages in one of 20 raw-socket kills under full
    /// load). `CLIENT PAUSE WRITE` holds the publishes that arrive from now
    /// on unanswered, as a crash would, and lets the answered ones finish.
    pub(crate) fn crash(&mut self) {
        let paused = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "client", "pause", "10000", "write"])
            .output()
            .expect("redis-cli is installed");
        assert!(paused.status.success(), "CLIENT PAUSE failed: {paused:?}");
        std::thread::sleep(Duration::from_millis(20));
        self.kill();
    }

    /// `CLIENT PAUSE <ms> <mode>` (`ALL` or `WRITE`): Redis holds the
    /// commands of every client (`WRITE`: the writes, `PUBLISH` included)
    /// for `ms`, keeping their connections.
    pub(crate) fn pause(&self, ms: u64, mode: &str) {
        let paused = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "client", "pause", &ms.to_string(), mode])
            .output()
            .expect("redis-cli is installed");
        assert!(paused.status.success() && paused.stdout.starts_with(b"OK"), "CLIENT PAUSE failed: {paused:?}");
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of `n` masters (no replicas) of the test's own, each on
/// a free loopback port (its cluster bus on the port + 10000); killed and
/// its files removed when dropped.
pub(crate) struct RedisCluster {
    pub(crate) ports: Vec<u16>,
    nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// A loopback port free for the node and for its cluster bus.
    fn free_cluster_port() -> u16 {
        loop {
            let port = RedisServer::free_port();
            if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                return port;
            }
        }
    }

    pub(crate) fn start(n: usize) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "tidewire-redis-cluster-{}-{}",
            std::process::id(),
            Self::free_cluster_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ports = Vec::new();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let port = Self::free_cluster_port();
            let conf = dir.join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(&conf)
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            nodes.push(RedisServer::adopt(port, child));
            ports.push(port);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(status.success(), "redis-cli --cluster create failed");
        // Ready once every node says the cluster is ok.
        for port in &ports {
            let mut ok = false;
            for _ in 0..500 {
                let out =
                    Command::new("redis-cli").args(["-p", &port.to_string(), "cluster", "info"]).output().unwrap();
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(ok, "the cluster did not become ready on port {port}");
        }
        RedisCluster { ports, nodes, dir }
    }

    pub(crate) fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.ports[i])
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
