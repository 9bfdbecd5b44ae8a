//! A `redis-server` of the suite's own for the cluster scenario, and just
//! enough of the Redis protocol (RESP2) to see that it is up and how many
//! nodes subscribed to a channel.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::client;

/// A Redis reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

/// The reply at the start of `buf` and its length; `None` while incomplete
/// (or unparsable).
pub(crate) fn parse(buf: &[u8]) -> Option<(Resp, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[1..end]).ok()?;
    let next = end + 2;
    match *buf.first()? {
        b'+' => Some((Resp::Simple(line.to_owned()), next)),
        b'-' => Some((Resp::Error(line.to_owned()), next)),
        b':' => Some((Resp::Int(line.parse().ok()?), next)),
        b'$' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some((Resp::Bulk(None), next));
            }
            let len = usize::try_from(len).ok()?;
            let body = buf.get(next..next + len)?;
            (buf.get(next + len..next + len + 2)? == b"\r\n").then(|| (Resp::Bulk(Some(body.to_vec())), next + len + 2))
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut items = Vec::new();
            let mut at = next;
            for _ in 0..n.max(0) {
                let (item, used) = parse(&buf[at..])?;
                items.push(item);
                at += used;
            }
            Some((Resp::Array(items), at))
        }
        _ => None,
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends one command on a connection of its own, returns the reply.
pub(crate) async fn command(port: u16, args: &[&str]) -> Result<Resp, client::Error> {
    let io = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(&encode(args)).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err::<Resp, client::Error>("redis closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((reply, _)) = parse(&buf) {
                return Ok(reply);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), io).await.map_err(|_| "redis did not answer within 2 s")?
}

/// A `redis-server` on a free loopback port, killed when dropped.
#[derive(Debug)]
pub(crate) struct RedisServer {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) pid: Option<u32>,
}

impl RedisServer {
    /// Starts `redis-server` (no persistence) on a free loopback port,
    /// pinned to `core` when given; returns once it answers PING.
    pub(crate) async fn start(core: Option<usize>) -> Result<RedisServer, client::Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let port_arg = port.to_string();
        let args = ["--port", port_arg.as_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        let mut cmd = match core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg("redis-server").args(args);
                c
            }
            None => {
                let mut c = Command::new("redis-server");
                c.args(args);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start redis-server (is it on PATH?): {e}"))?;
        let pid = child.id();
        let mut server = RedisServer { child, port, pid };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match command(port, &["PING"]).await {
                Ok(Resp::Simple(s)) if s == "PONG" => return Ok(server),
                _ if Instant::now() < deadline => {
                    if let Ok(Some(status)) = server.child.try_wait() {
                        return Err(format!("redis-server on port {port} exited: {status}").into());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return Err(format!("redis-server on port {port} not up within 10 s: {other:?}").into()),
            }
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until `n` nodes (at least) subscribed to `channel`, at most
    /// `timeout`.
    pub(crate) async fn wait_subscribers(&self, channel: &str, n: i64, timeout: Duration) -> Result<(), client::Error> {
        let deadline = Instant::now() + timeout;
        let mut seen = None;
        while Instant::now() < deadline {
            if let Ok(Resp::Array(items)) = command(self.port, &["PUBSUB", "NUMSUB", channel]).await
                && let Some(Resp::Int(count)) = items.get(1)
            {
                if *count >= n {
                    return Ok(());
                }
                seen = Some(*count);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{channel}: {seen:?} subscribers after {timeout:?}, expected {n}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        assert_eq!(parse(b"+PONG\r\n"), Some((Resp::Simple("PONG".into()), 7)));
        assert_eq!(parse(b"-ERR x\r\n"), Some((Resp::Error("ERR x".into()), 8)));
        assert_eq!(parse(b":42\r\n"), Some((Resp::Int(42), 5)));
        assert_eq!(parse(b"$-1\r\n"), Some((Resp::Bulk(None), 5)));
        let numsub = b"*2\r\n$16\r\nsocket.io-req#/#\r\n:2\r\n";
        assert_eq!(
            parse(numsub),
            Some((Resp::Array(vec![Resp::Bulk(Some(b"socket.io-req#/#".to_vec())), Resp::Int(2)]), numsub.len()))
        );
        // Incomplete until the last byte.
        for cut in 0..numsub.len() {
            assert_eq!(parse(&numsub[..cut]), None, "{cut}");
        }
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(encode(&["PUBSUB", "NUMSUB", "a#"]), b"*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$2\r\na#\r\n".to_vec());
    }
}
