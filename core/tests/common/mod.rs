//! Helpers shared by the integration tests that need a Redis server.

#![allow(dead_code)]

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
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        // Ready once it accepts connections.
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
