//! The cost of serving a long-polling request on a node that does not own
//! the session (`cluster::forward`): one session opened on node A (`--url`),
//! then round trips (`POST` an `echo` event with an ack, `GET` its answer)
//! sent to A itself (local) or to node B (`--node-b`, each request passed on
//! to A over Redis and answered from there), alternated in blocks. Reports
//! the latency of each request kind on both paths and what forwarding adds.
//!
//! HTTP/1.1 over one keep-alive connection per node, one request at a time:
//! the figures are per request, not throughput.

use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::client::{self, Error, Target};
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ForwardOpts {
    /// The other node (`http://host:port`), which forwards to `--url`.
    #[arg(long)]
    node_b: String,
    /// Round trips measured on each path.
    #[arg(long, default_value_t = 5_000)]
    round_trips: usize,
    /// Round trips per block before switching paths.
    #[arg(long, default_value_t = 100)]
    block: usize,
    /// Round trips on each path before measuring.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
}

/// Latencies of one path.
#[derive(Debug, Serialize)]
pub(crate) struct Path {
    post: LatencySummary,
    get: LatencySummary,
    round_trip: LatencySummary,
}

#[derive(Debug, Serialize)]
pub(crate) struct ForwardReport {
    local: Path,
    forwarded: Path,
    /// Forwarded minus local, per request (`POST` and `GET`), in ms.
    added_post_p50_ms: f64,
    added_post_p99_ms: f64,
    added_get_p50_ms: f64,
    added_get_p99_ms: f64,
}

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    host: String,
    io: BufReader<TcpStream>,
}

pub(crate) fn broken(what: impl std::fmt::Display) -> Error {
    Box::new(std::io::Error::other(what.to_string()))
}

impl Conn {
    pub(crate) async fn open(target: &Target) -> Result<Conn, Error> {
        Conn::open_from(target, None).await
    }

    /// [`Conn::open`] from this source address (see [`client::tcp`]).
    pub(crate) async fn open_from(target: &Target, source: Option<std::net::SocketAddr>) -> Result<Conn, Error> {
        let host = target.addr().to_string();
        let stream = client::tcp(target, source).await?;
        Ok(Conn { host, io: BufReader::new(stream) })
    }

    /// Sends one request and reads its answer: (status, body).
    pub(crate) async fn request(&mut self, method: &str, path: &str, body: &str) -> Result<(u16, String), Error> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let stream = self.io.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| broken("no status"))?;
        let mut len = 0;
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(broken("connection closed"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                len = value.trim().parse().map_err(broken)?;
            }
        }
        let mut body = vec![0; len];
        self.io.read_exact(&mut body).await?;
        Ok((status, String::from_utf8(body).map_err(broken)?))
    }
}

pub(crate) const PATH: &str = "/socket.io/?EIO=4&transport=polling";

/// `GET`s on `conn` until a packet starting with `prefix`, answering pings.
async fn poll_for(conn: &mut Conn, sid: &str, prefix: &str) -> Result<(), Error> {
    loop {
        let (status, body) = conn.request("GET", &format!("{PATH}&sid={sid}"), "").await?;
        if status != 200 {
            return Err(broken(format!("GET: {status} {body}")));
        }
        let packets: Vec<&str> = body.split('\u{1e}').collect();
        if packets.contains(&"2") {
            conn.request("POST", &format!("{PATH}&sid={sid}"), "3").await?;
        }
        if packets.iter().any(|p| p.starts_with(prefix)) {
            return Ok(());
        }
    }
}

pub(crate) async fn run(a: &Target, opts: &ForwardOpts) -> Result<ForwardReport, Error> {
    let b = Target::parse(&opts.node_b)?;
    let mut on_a = Conn::open(a).await?;
    let mut on_b = Conn::open(&b).await?;
    let (_, open) = on_a.request("GET", PATH, "").await?;
    let open: serde_json::Value = serde_json::from_str(open.get(1..).unwrap_or_default())?;
    let sid = open["sid"].as_str().ok_or_else(|| broken("no sid"))?.to_owned();
    on_a.request("POST", &format!("{PATH}&sid={sid}"), "40").await?;
    poll_for(&mut on_a, &sid, "40").await?;
    let mut hist: [[Latency; 3]; 2] = Default::default();
    let mut id: u64 = 0;
    let blocks = (opts.round_trips + opts.warmup).div_ceil(opts.block.max(1));
    for block in 0..blocks * 2 {
        let path = block % 2;
        let conn = if path == 0 { &mut on_a } else { &mut on_b };
        for _ in 0..opts.block.max(1) {
            id += 1;
            let measured = block / 2 * opts.block >= opts.warmup;
            let started = Instant::now();
            let (status, body) =
                conn.request("POST", &format!("{PATH}&sid={sid}"), &format!("42{id}[\"echo\",\"x\"]")).await?;
            if status != 200 {
                return Err(broken(format!("POST: {status} {body}")));
            }
            let posted = Instant::now();
            poll_for(conn, &sid, &format!("43{id}[")).await?;
            let done = Instant::now();
            if measured {
                let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                hist[path][0].record_us(us(posted - started));
                hist[path][1].record_us(us(done - posted));
                hist[path][2].record_us(us(done - started));
            }
        }
    }
    let path = |h: &[Latency; 3]| Path { post: h[0].summary(), get: h[1].summary(), round_trip: h[2].summary() };
    let (local, forwarded) = (path(&hist[0]), path(&hist[1]));
    Ok(ForwardReport {
        added_post_p50_ms: forwarded.post.p50_ms - local.post.p50_ms,
        added_post_p99_ms: forwarded.post.p99_ms - local.post.p99_ms,
        added_get_p50_ms: forwarded.get.p50_ms - local.get.p50_ms,
        added_get_p99_ms: forwarded.get.p99_ms - local.get.p99_ms,
        local,
        forwarded,
    })
}
