//! Shared helpers for the `tidewire-server` wire tests.
//!
//! Every test spawns its own server process (`--port 0`), reads the ready
//! line, and talks raw wire to it: plain TCP for HTTP edge cases and
//! hand-made WebSocket frames, tokio-tungstenite for well-formed WebSocket
//! traffic. The child process is killed when the [`Server`] is dropped.
#![allow(dead_code, unreachable_pub, missing_docs, missing_debug_implementations)]

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod postgres;

/// Default wait for one expected reply.
pub const STEP: Duration = Duration::from_secs(5);
/// Default bound for a whole test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Run a test body with an overall deadline, so every test stops by itself.
pub fn run<F: Future<Output = ()> + 'static>(body: F) -> Pin<Box<dyn Future<Output = ()>>> {
    run_for(TEST_TIMEOUT, body)
}

pub fn run_for<F: Future<Output = ()> + 'static>(limit: Duration, body: F) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        if timeout(limit, Box::pin(body)).await.is_err() {
            panic!("test did not finish within {limit:?}");
        }
    })
}

// ---------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------

/// A running `tidewire-server` child process; killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<u8>>>,
    /// Whatever the server printed to stdout after the ready line.
    extra_stdout: Arc<Mutex<Vec<u8>>>,
    /// The data directory [`chat_command`] made up for it, removed on drop.
    _scratch: Scratch,
}

pub const READY_PREFIX: &str = "tidewire-server listening on http://127.0.0.1:";
pub const READY_ANY_HOST: &str = "tidewire-server listening on http://";

/// The variables a chat-mode test must not inherit: they choose the mode,
/// the address, the token secret, development mode and the message store.
const CHAT_MODE_ENV: [&str; 8] = [
    "JWT_SECRET",
    "TIDEWIRE_CONFORMANCE",
    "TIDEWIRE_DEV",
    "HOST",
    "TIDEWIRE_ADMIN_ADDR",
    "CLIENT_URL",
    "TIDEWIRE_DATA_DIR",
    "DATABASE_URL",
];

/// The name of the data directories [`chat_command`] makes up; a [`Server`]
/// (or [`run_to_exit`]) removes its own when done.
const SCRATCH_DATA_DIR: &str = "tidewire-test-chat-data-";

/// A `tidewire-server` command for the chat app: `--port 0`, `args`, and
/// `env` over this process's environment minus [`CHAT_MODE_ENV`]. Its
/// message store is a SQLite file in a data directory of its own, removed
/// with the server, unless `env` names one (`TIDEWIRE_DATA_DIR`) or a
/// database (`DATABASE_URL`).
pub fn chat_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidewire-server"));
    for name in CHAT_MODE_ENV {
        command.env_remove(name);
    }
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!("{SCRATCH_DATA_DIR}{}-{n}", std::process::id()));
    command.env("TIDEWIRE_DATA_DIR", scratch);
    command.args(["--port", "0"]).args(args).envs(env.iter().copied());
    command
}

/// The data directory [`chat_command`] made up for `command`, if it still
/// uses it.
fn scratch_data_dir(command: &Command) -> Option<std::path::PathBuf> {
    let (_, dir) = command.get_envs().find(|(name, _)| *name == "TIDEWIRE_DATA_DIR")?;
    let dir = std::path::PathBuf::from(dir?);
    dir.file_name()?.to_str()?.starts_with(SCRATCH_DATA_DIR).then_some(dir)
}

/// A data directory [`chat_command`] made up, removed on drop (after the
/// server that used it was killed: fields drop after `Drop::drop`).
struct Scratch(Option<std::path::PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Run `command` to its exit (within `limit`, else it is killed and this
/// panics); returns whether it succeeded and what it printed on stderr.
pub fn run_to_exit(mut command: Command, limit: Duration) -> (bool, String) {
    let _scratch = Scratch(scratch_data_dir(&command));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidewire-server");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tidewire-server still running after {limit:?} (expected it to exit)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.success(), reader.join().unwrap_or_default())
}

impl Server {
    /// Start the conformance handlers with default options.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Start the conformance handlers with extra CLI arguments (in addition
    /// to `--port 0 --host 127.0.0.1 --conformance`).
    pub fn start_with(args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidewire-server"));
        command.args(["--port", "0", "--host", "127.0.0.1", "--conformance"]).args(args);
        Self::spawn(command)
    }

    /// Start the chat app (the default mode) with `args` after `--port 0`
    /// (`--host` defaults to 127.0.0.1) and `env` over a copy of this
    /// process's environment without the variables that choose the mode or
    /// the token secret. Pass `("JWT_SECRET", "...")` to set one.
    pub fn start_chat(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn(chat_command(args, env))
    }

    /// Spawn `command` (a `tidewire-server` invocation) and wait for its
    /// ready line.
    pub fn spawn(mut command: Command) -> Server {
        let scratch = Scratch(scratch_data_dir(&command));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tidewire-server");

        // Collect stderr (logs) so it can be shown when a test fails.
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut l = log2.lock().unwrap();
                        // keep the log bounded
                        if l.len() < 4 << 20 {
                            l.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        });

        // Read the ready line on a thread (std pipes block), then keep draining stdout.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<std::io::Result<String>>();
        let extra_stdout = Arc::new(Mutex::new(Vec::new()));
        let extra2 = extra_stdout.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let r = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut e = extra2.lock().unwrap();
                        if e.len() < 1 << 20 {
                            e.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        });

        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                panic!("reading ready line failed: {e}");
            }
            Err(_) => {
                let _ = child.kill();
                let l = log.lock().unwrap();
                panic!("server printed no ready line within 30s; stderr:\n{}", String::from_utf8_lossy(&l));
            }
        };
        let trimmed = line.trim_end_matches(['\n', '\r']);
        // `http://HOST:PORT` for any host (a test may bind 0.0.0.0).
        let port = match trimmed
            .strip_prefix(READY_ANY_HOST)
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(_, port)| port.parse::<u16>())
        {
            Some(Ok(p)) if p != 0 => p,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let l = log.lock().unwrap();
                panic!(
                    "unexpected ready line {line:?} (want `{READY_PREFIX}PORT`); stderr:\n{}",
                    String::from_utf8_lossy(&l)
                );
            }
        };
        Server { child, port, log, extra_stdout, _scratch: scratch }
    }

    /// Everything printed on stdout after the ready line (should stay empty:
    /// logs go to stderr).
    pub fn extra_stdout(&self) -> String {
        String::from_utf8_lossy(&self.extra_stdout.lock().unwrap()).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `true` while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics if the server process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("server exited: {status}; stderr:\n{}", self.log_text());
        }
    }

    /// Resident set size of the server process, in KiB (Linux /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    pub fn ws_url(&self, path_query: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path_query)
    }

    /// Send a signal to the server (used by the shutdown test).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Wait (polling) until the process exits; returns whether it did within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: String = if text.len() > 16_000 {
                let mut start = text.len() - 16_000;
                while !text.is_char_boundary(start) {
                    start += 1;
                }
                text[start..].to_string()
            } else {
                text
            };
            eprintln!("---- tidewire-server stderr (tail) ----\n{tail}\n---- end ----");
        }
    }
}

pub const SIO_WS: &str = "/socket.io/?EIO=4&transport=websocket";
pub const SIO_POLL: &str = "/socket.io/?EIO=4&transport=polling";
pub const EIO_WS: &str = "/engine.io/?EIO=4&transport=websocket";
pub const EIO_POLL: &str = "/engine.io/?EIO=4&transport=polling";

// ---------------------------------------------------------------------------
// Engine.IO handshake
// ---------------------------------------------------------------------------

/// Parse and validate an Engine.IO v4 OPEN packet (`0{...}`); returns the JSON.
pub fn parse_open(packet: &str, expect_upgrades: &[&str]) -> Value {
    let json = packet.strip_prefix('0').unwrap_or_else(|| panic!("expected an OPEN packet `0{{...}}`, got {packet:?}"));
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("handshake is not JSON ({e}): {packet:?}"));
    let obj = v.as_object().expect("handshake is a JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"],
        "handshake must have exactly these five keys: {packet}"
    );
    let sid = v["sid"].as_str().expect("sid is a string");
    assert!(!sid.is_empty(), "sid is empty");
    assert!(v["pingInterval"].is_u64(), "pingInterval is an integer: {packet}");
    assert!(v["pingTimeout"].is_u64(), "pingTimeout is an integer: {packet}");
    assert!(v["maxPayload"].is_u64(), "maxPayload is an integer: {packet}");
    let ups: Vec<&str> = v["upgrades"]
        .as_array()
        .expect("upgrades is an array")
        .iter()
        .map(|u| u.as_str().expect("upgrade is a string"))
        .collect();
    assert_eq!(ups, expect_upgrades, "upgrades in {packet}");
    v
}

// ---------------------------------------------------------------------------
// Socket.IO packets
// ---------------------------------------------------------------------------

/// A decoded Socket.IO packet (the part after the Engine.IO `4`).
#[derive(Debug, Clone, PartialEq)]
pub struct SioPacket {
    pub ty: u8,
    pub attachments: Option<usize>,
    pub nsp: String,
    pub id: Option<u64>,
    pub data: Option<Value>,
}

/// Parse an Engine.IO MESSAGE carrying a Socket.IO packet, e.g. `42/chat,3["x"]`.
pub fn parse_sio(text: &str) -> SioPacket {
    let s = text.strip_prefix('4').unwrap_or_else(|| panic!("not an Engine.IO message packet: {text:?}"));
    let bytes = s.as_bytes();
    assert!(!bytes.is_empty(), "empty Socket.IO packet: {text:?}");
    let ty = bytes[0];
    assert!(ty.is_ascii_digit() && ty <= b'6', "bad Socket.IO type in {text:?}");
    let ty = ty - b'0';
    let mut i = 1;
    let mut attachments = None;
    if ty == 5 || ty == 6 {
        let start = i;
        while i < bytes.len() && bytes[i] != b'-' {
            i += 1;
        }
        assert!(i < bytes.len(), "binary packet without `-`: {text:?}");
        attachments = Some(s[start..i].parse().expect("attachment count"));
        i += 1;
    }
    let mut nsp = "/".to_string();
    if i < bytes.len() && bytes[i] == b'/' {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        nsp = s[start..i].to_string();
        if i < bytes.len() {
            i += 1;
        }
    }
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let id = if i > start { Some(s[start..i].parse().expect("ack id")) } else { None };
    let data = if i < bytes.len() {
        Some(serde_json::from_str(&s[i..]).unwrap_or_else(|e| panic!("packet data is not JSON ({e}): {text:?}")))
    } else {
        None
    };
    SioPacket { ty, attachments, nsp, id, data }
}

/// `{"_placeholder":true,"num":n}`
pub fn placeholder(n: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": n})
}

/// Replace every placeholder in `v` by `{"$bin": "<base64>"}` so packets with
/// attachments can be compared structurally. Panics on a bad placeholder.
pub fn fill_placeholders(v: &Value, bins: &[Vec<u8>]) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_placeholders(x, bins)).collect()),
        Value::Object(o) => {
            if o.get("_placeholder") == Some(&Value::Bool(true)) {
                assert_eq!(o.len(), 2, "placeholder has exactly _placeholder and num: {v}");
                let n = o["num"].as_u64().expect("placeholder num is an integer") as usize;
                assert!(n < bins.len(), "placeholder num {n} out of range ({})", bins.len());
                return serde_json::json!({"$bin": b64(&bins[n])});
            }
            Value::Object(o.iter().map(|(k, x)| (k.clone(), fill_placeholders(x, bins))).collect())
        }
        other => other.clone(),
    }
}

/// `{"$bin": "<base64>"}`, the form [`fill_placeholders`] produces.
pub fn bin(data: &[u8]) -> Value {
    serde_json::json!({"$bin": b64(data)})
}

/// Count the placeholders in `v` and check each attachment is referenced once.
pub fn check_placeholders(v: &Value, attachments: usize) {
    fn walk(v: &Value, seen: &mut Vec<u64>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, seen)),
            Value::Object(o) => {
                if o.get("_placeholder") == Some(&Value::Bool(true)) {
                    seen.push(o["num"].as_u64().expect("integer num"));
                } else {
                    o.values().for_each(|x| walk(x, seen));
                }
            }
            _ => {}
        }
    }
    let mut seen = Vec::new();
    walk(v, &mut seen);
    seen.sort_unstable();
    let want: Vec<u64> = (0..attachments as u64).collect();
    assert_eq!(seen, want, "placeholders must number the attachments 0..n: {v}");
}

// ---------------------------------------------------------------------------
// WebSocket client (tokio-tungstenite)
// ---------------------------------------------------------------------------

/// What a WebSocket read produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame, with its code if any.
    Close(Option<u16>),
    /// The connection ended (EOF, reset, or a protocol error on our side).
    Gone(String),
}

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(port: u16, path_query: &str) -> WsClient {
        Self::try_connect(port, path_query)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {path_query} failed: {e}"))
    }

    pub async fn try_connect(port: u16, path_query: &str) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let url = format!("ws://127.0.0.1:{port}{path_query}");
        let (ws, _resp) =
            timeout(STEP, tokio_tungstenite::connect_async(url)).await.expect("WebSocket connect timed out")?;
        Ok(WsClient { ws })
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_string())).await.unwrap_or_else(|e| panic!("send text {s:?}: {e}"));
    }

    /// Send text; ignore errors (the server may already have closed).
    pub async fn send_text_lossy(&mut self, s: &str) {
        let _ = self.ws.send(Message::text(s.to_string())).await;
    }

    pub async fn send_binary(&mut self, b: &[u8]) {
        self.ws.send(Message::binary(b.to_vec())).await.unwrap_or_else(|e| panic!("send binary: {e}"));
    }

    pub async fn send_binary_lossy(&mut self, b: &[u8]) {
        let _ = self.ws.send(Message::binary(b.to_vec())).await;
    }

    /// Next data/close frame (WebSocket ping/pong are skipped), within `limit`.
    /// `None` if nothing arrived in time.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = match timeout(left, self.ws.next()).await {
                Err(_) => return None,
                Ok(n) => n,
            };
            return Some(match next {
                None => Frame::Gone("end of stream".into()),
                Some(Err(e)) => Frame::Gone(e.to_string()),
                Some(Ok(Message::Text(t))) => Frame::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
                Some(Ok(Message::Close(c))) => Frame::Close(c.map(|c| u16::from(c.code))),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Frame(_))) => continue,
            });
        }
    }

    /// Next frame; panics on timeout.
    pub async fn recv(&mut self) -> Frame {
        match self.recv_within(STEP).await {
            Some(f) => f,
            None => panic!("no frame from server within {STEP:?}"),
        }
    }

    /// Next frame must be a text frame.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Frame::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Next frame must be a binary frame.
    pub async fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            Frame::Binary(b) => b,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Next frame must be exactly this text.
    pub async fn expect_text(&mut self, want: &str) {
        let got = self.recv_text().await;
        assert_eq!(got, want, "unexpected text frame");
    }

    /// Read until the server closes the connection (close frame or EOF/reset).
    /// Returns the close code (if a close frame came) and every data frame seen
    /// before. Panics if the connection is still open after `limit`.
    pub async fn expect_closed_within(&mut self, limit: Duration) -> (Option<u16>, Vec<Frame>) {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                None => panic!("server did not close the connection within {limit:?}; frames seen: {seen:?}"),
                Some(Frame::Close(code)) => {
                    // drain until the stream ends (bounded)
                    let _ = timeout(Duration::from_secs(1), async { while let Some(Ok(_)) = self.ws.next().await {} })
                        .await;
                    return (code, seen);
                }
                Some(Frame::Gone(_)) => return (None, seen),
                Some(f) => seen.push(f),
            }
        }
    }

    pub async fn expect_closed(&mut self) -> (Option<u16>, Vec<Frame>) {
        self.expect_closed_within(STEP).await
    }

    /// Assert that nothing at all arrives (and the connection stays open) for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Some(f) = self.recv_within(d).await {
            panic!("expected no frame for {d:?}, got {f:?}");
        }
    }

    pub async fn close(mut self) {
        let _ = timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// A Socket.IO client session over a WebSocket (no polling).
pub struct SioWs {
    pub ws: WsClient,
    /// Engine.IO session id.
    pub eio_sid: String,
    pub handshake: Value,
}

impl SioWs {
    /// Open `/socket.io/` over WebSocket and read the Engine.IO handshake.
    pub async fn open(port: u16) -> SioWs {
        let mut ws = WsClient::connect(port, SIO_WS).await;
        let open = ws.recv_text().await;
        let handshake = parse_open(&open, &[]);
        let eio_sid = handshake["sid"].as_str().unwrap().to_string();
        SioWs { ws, eio_sid, handshake }
    }

    /// Send CONNECT for `nsp` (with optional raw JSON auth) and expect the
    /// CONNECT reply `40[nsp,]{"sid":..}` with exactly the key `sid`.
    /// Returns the socket id.
    pub async fn connect(&mut self, nsp: &str, auth: Option<&str>) -> String {
        self.ws.send_text(&connect_packet(nsp, auth)).await;
        let reply = self.ws.recv_text().await;
        check_connect_reply(&reply, nsp)
    }

    /// Open + CONNECT to `/`.
    pub async fn connected(port: u16) -> (SioWs, String) {
        let mut s = SioWs::open(port).await;
        let sid = s.connect("/", None).await;
        (s, sid)
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send_text(text).await
    }

    pub async fn recv_packet(&mut self) -> SioPacket {
        let t = self.ws.recv_text().await;
        parse_sio(&t)
    }

    /// Emits `event` with `arg` and ack id `id` on `/`; returns the ack's
    /// first argument (the events arriving meanwhile are skipped).
    pub async fn call(&mut self, id: u64, event: &str, arg: Value) -> Value {
        self.send(&format!("42{id}{}", serde_json::json!([event, arg]))).await;
        loop {
            let p = self.recv_packet().await;
            if p.ty == 3 && p.id == Some(id) {
                return p.data.unwrap()[0].clone();
            }
        }
    }

    /// Receive one packet and, for BINARY_EVENT/BINARY_ACK, its attachments;
    /// returns the packet with placeholders replaced (see [`fill_placeholders`]).
    pub async fn recv_full(&mut self) -> SioPacket {
        let t = self.ws.recv_text().await;
        let mut p = parse_sio(&t);
        if let Some(n) = p.attachments {
            assert!(n > 0, "binary packet with zero attachments from server: {t:?}");
            let data = p.data.clone().expect("binary packet has data");
            check_placeholders(&data, n);
            let mut bins = Vec::new();
            for _ in 0..n {
                bins.push(self.ws.recv_binary().await);
            }
            p.data = Some(fill_placeholders(&data, &bins));
        }
        p
    }

    /// Send a packet followed by binary attachments.
    pub async fn send_with_attachments(&mut self, header: &str, bins: &[&[u8]]) {
        self.ws.send_text(header).await;
        for b in bins {
            self.ws.send_binary(b).await;
        }
    }
}

/// `40`, `40{"token":"x"}`, `40/chat,`, `40/chat,{"token":"x"}`.
pub fn connect_packet(nsp: &str, auth: Option<&str>) -> String {
    let mut p = String::from("40");
    if nsp != "/" {
        p.push_str(nsp);
        p.push(',');
    }
    if let Some(a) = auth {
        p.push_str(a);
    }
    p
}

/// Validate a CONNECT reply for `nsp`; returns the socket id.
pub fn check_connect_reply(reply: &str, nsp: &str) -> String {
    let p = parse_sio(reply);
    assert_eq!(p.ty, 0, "expected CONNECT reply for {nsp}, got {reply:?}");
    assert_eq!(p.nsp, nsp, "CONNECT reply namespace in {reply:?}");
    assert_eq!(p.id, None, "CONNECT reply has no ack id: {reply:?}");
    let data = p.data.expect("CONNECT reply has data");
    let obj = data.as_object().expect("CONNECT reply data is an object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, ["sid"], "CONNECT reply must have exactly the key sid: {reply}");
    let sid = obj["sid"].as_str().expect("sid is a string").to_string();
    assert!(!sid.is_empty());
    sid
}

/// A second, well-behaved client must still be served: WebSocket handshake,
/// CONNECT, echo with ack; and a polling handshake.
pub async fn assert_alive(port: u16) {
    let (mut s, _sid) = SioWs::connected(port).await;
    s.send(r#"4217["echo","still alive",{"n":1}]"#).await;
    let p = s.recv_packet().await;
    assert_eq!(
        (p.ty, p.id, p.data),
        (3, Some(17), Some(serde_json::json!(["still alive", {"n": 1}]))),
        "echo ack from a fresh client after the bad input"
    );
    s.ws.close().await;

    let r = http_get(port, SIO_POLL).await;
    assert_eq!(r.status, 200, "polling handshake after the bad input");
    parse_open(&r.text(), &["websocket"]);
}

// ---------------------------------------------------------------------------
// Raw HTTP over TCP
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("response body is UTF-8")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Assert an Engine.IO HTTP error: status 400, JSON body `{"code":..,"message":..}`.
    pub fn assert_eio_error(&self, code: u64, message: &str) {
        assert_eq!(self.status, 400, "status (body {:?})", String::from_utf8_lossy(&self.body));
        let ct = self.header("content-type").unwrap_or("");
        assert!(ct.starts_with("application/json"), "error Content-Type should be application/json, got {ct:?}");
        assert_eq!(self.json(), serde_json::json!({"code": code, "message": message}), "error body");
    }
}

pub async fn tcp(port: u16) -> TcpStream {
    let s = timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect");
    s.set_nodelay(true).unwrap();
    s
}

/// Read one HTTP/1.1 response (Content-Length, chunked, or until EOF).
/// `None` if the connection closed before a status line arrived.
pub async fn read_response(stream: &mut TcpStream) -> Option<HttpResponse> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        let mut chunk = vec![0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().expect("content-length");
        while rest.len() < len {
            let mut chunk = vec![0u8; 8192];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            // need a size line
            let line_end = loop {
                if let Some(p) = find(&rest, b"\r\n") {
                    break p;
                }
                let mut chunk = vec![0u8; 8192];
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return Some(HttpResponse { status, headers, body });
                }
                rest.extend_from_slice(&chunk[..n]);
            };
            let size_str = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).expect("chunk size");
            rest.drain(..line_end + 2);
            if size == 0 {
                break;
            }
            while rest.len() < size + 2 {
                let mut chunk = vec![0u8; 8192];
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            body.extend_from_slice(&rest[..size.min(rest.len())]);
            rest.drain(..(size + 2).min(rest.len()));
        }
        body
    } else if status == 101 || status == 204 || status == 304 {
        Vec::new()
    } else {
        let _ = stream.read_to_end(&mut rest).await;
        rest
    };
    Some(HttpResponse { status, headers, body })
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Send raw request bytes on a fresh connection and read the response.
pub async fn http_raw(port: u16, request: &[u8]) -> HttpResponse {
    let mut s = tcp(port).await;
    // The server may answer (e.g. 413) and close before the whole body is written.
    let _ = s.write_all(request).await;
    timeout(STEP, read_response(&mut s))
        .await
        .expect("no HTTP response in time")
        .expect("connection closed without an HTTP response")
}

pub async fn http_get(port: u16, path: &str) -> HttpResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    http_raw(port, req.as_bytes()).await
}

pub async fn http_post(port: u16, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    http_raw(port, &req).await
}

// ---------------------------------------------------------------------------
// Engine.IO long-polling session
// ---------------------------------------------------------------------------

/// One packet of a polling payload.
#[derive(Debug, Clone, PartialEq)]
pub enum PollPacket {
    Text(String),
    Binary(Vec<u8>),
}

/// Split a v4 polling payload on `\x1e`; `b<base64>` is binary.
pub fn decode_payload(body: &str) -> Vec<PollPacket> {
    body.split('\x1e')
        .map(|p| match p.strip_prefix('b') {
            Some(b64) => PollPacket::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_else(|e| panic!("bad base64 in {p:?}: {e}")),
            ),
            None => PollPacket::Text(p.to_string()),
        })
        .collect()
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub struct Polling {
    pub port: u16,
    pub base: &'static str,
    pub sid: String,
    pub handshake: Value,
}

impl Polling {
    /// Polling handshake on `/socket.io/` or `/engine.io/` (`base` = the path with EIO and transport).
    pub async fn open(port: u16, base: &'static str) -> Polling {
        let r = http_get(port, base).await;
        assert_eq!(r.status, 200, "polling handshake status: {:?}", r.text());
        let text = r.text();
        // The handshake response holds only the OPEN packet.
        assert!(!text.contains('\x1e'), "handshake response holds one packet: {text:?}");
        let handshake = parse_open(&text, &["websocket"]);
        let sid = handshake["sid"].as_str().unwrap().to_string();
        Polling { port, base, sid, handshake }
    }

    pub fn url(&self) -> String {
        format!("{}&sid={}", self.base, self.sid)
    }

    pub async fn get(&self) -> HttpResponse {
        http_get(self.port, &self.url()).await
    }

    /// GET with a custom time limit; `None` if no answer in time.
    pub async fn get_within(&self, limit: Duration) -> Option<HttpResponse> {
        let req = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.url(), self.port);
        let mut s = tcp(self.port).await;
        s.write_all(req.as_bytes()).await.unwrap();
        match timeout(limit, read_response(&mut s)).await {
            Ok(r) => Some(r.expect("connection closed without a response")),
            Err(_) => None,
        }
    }

    /// GET that must answer 200; returns the decoded packets.
    pub async fn get_packets(&self) -> Vec<PollPacket> {
        let r = self.get().await;
        assert_eq!(r.status, 200, "polling GET status, body {:?}", r.text());
        decode_payload(&r.text())
    }

    pub async fn post(&self, body: &str) -> HttpResponse {
        http_post(self.port, &self.url(), "text/plain;charset=UTF-8", body.as_bytes()).await
    }

    /// POST that must answer 200 `ok`.
    pub async fn post_ok(&self, body: &str) {
        let r = self.post(body).await;
        assert_eq!((r.status, r.text()), (200, "ok".to_string()), "POST {body:?}");
    }

    /// Assert that the session is gone: a GET answers 400 code 1 (a GET may
    /// first drain a final payload ending with the close packet `1` or a noop).
    pub async fn assert_closed(&self) {
        for _ in 0..3 {
            let r = self
                .get_within(Duration::from_secs(3))
                .await
                .expect("GET on a closed session must not hang (session still open?)");
            if r.status == 400 {
                r.assert_eio_error(1, "Session ID unknown");
                return;
            }
            assert_eq!(r.status, 200, "GET on a closing session");
            let packets = decode_payload(&r.text());
            let last = packets.last().cloned();
            assert!(
                matches!(last, Some(PollPacket::Text(ref t)) if t == "1" || t == "6"),
                "a GET on a closing session may only drain a close/noop, got {packets:?}"
            );
        }
        panic!("session {} still answers polling GETs", self.sid);
    }
}

// ---------------------------------------------------------------------------
// Hand-made WebSocket frames over raw TCP
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn close_code(&self) -> Option<u16> {
        if self.opcode == 0x8 && self.payload.len() >= 2 {
            Some(u16::from_be_bytes([self.payload[0], self.payload[1]]))
        } else {
            None
        }
    }
}

pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encode a masked client frame.
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// A masked frame header declaring `declared_len` bytes (payload not included).
pub fn frame_header(fin: bool, opcode: u8, declared_len: u64) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | (opcode & 0x0f), 0x80 | 127];
    f.extend_from_slice(&declared_len.to_be_bytes());
    f.extend_from_slice(&MASK);
    f
}

impl RawWs {
    /// HTTP upgrade by hand; panics unless the server answers 101.
    pub async fn connect(port: u16, path_query: &str) -> RawWs {
        match Self::try_connect(port, path_query).await {
            Ok(ws) => ws,
            Err(r) => panic!("WebSocket upgrade refused: {r:?}"),
        }
    }

    /// HTTP upgrade by hand; `Err` carries a non-101 response (or `None` if
    /// the server closed without answering).
    pub async fn try_connect(port: u16, path_query: &str) -> Result<RawWs, Option<HttpResponse>> {
        Self::try_connect_pipelined(port, path_query, &[]).await
    }

    /// Like [`RawWs::try_connect`], with `extra` bytes (frames) written in
    /// the same write as the upgrade request, before any answer.
    pub async fn try_connect_pipelined(
        port: u16,
        path_query: &str,
        extra: &[u8],
    ) -> Result<RawWs, Option<HttpResponse>> {
        let mut stream = tcp(port).await;
        let mut req = format!(
            "GET {path_query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        req.extend_from_slice(extra);
        stream.write_all(&req).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p;
            }
            let mut chunk = vec![0u8; 4096];
            let n = timeout(STEP, stream.read(&mut chunk)).await.expect("upgrade response timed out").unwrap_or(0);
            if n == 0 {
                return Err(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            // Re-parse as a full response for the caller.
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            return Err(Some(HttpResponse { status, headers: Vec::new(), body: buf[head_end + 4..].to_vec() }));
        }
        assert!(
            head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "bad Sec-WebSocket-Accept in {head:?}"
        );
        let rest = buf[head_end + 4..].to_vec();
        Ok(RawWs { stream, buf: rest })
    }

    /// Connect and read the Engine.IO OPEN packet.
    pub async fn open(port: u16, path_query: &str) -> (RawWs, Value) {
        let mut ws = Self::connect(port, path_query).await;
        let f = ws.read_frame_within(STEP).await.expect("handshake frame in time").expect("handshake frame");
        assert_eq!(f.opcode, 1, "handshake is a text frame");
        let hs = parse_open(&String::from_utf8(f.payload).unwrap(), &[]);
        (ws, hs)
    }

    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(&encode_frame(fin, opcode, payload)).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    async fn fill(&mut self, need: usize) -> bool {
        while self.buf.len() < need {
            let mut chunk = vec![0u8; 16384];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    }

    /// Read one frame; `Ok(None)` on EOF/reset. `Err(())` on timeout.
    pub async fn read_frame_within(&mut self, limit: Duration) -> Result<Option<RawFrame>, ()> {
        timeout(limit, self.read_frame()).await.map_err(|_| ())
    }

    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        if !self.fill(2).await {
            return None;
        }
        let b0 = self.buf[0];
        let b1 = self.buf[1];
        let masked = b1 & 0x80 != 0;
        let mut len = u64::from(b1 & 0x7f);
        let mut off = 2;
        if len == 126 {
            if !self.fill(4).await {
                return None;
            }
            len = u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
            off = 4;
        } else if len == 127 {
            if !self.fill(10).await {
                return None;
            }
            len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap());
            off = 10;
        }
        assert!(len < 256 << 20, "server frame too large: {len}");
        let mut mask = None;
        if masked {
            if !self.fill(off + 4).await {
                return None;
            }
            mask = Some([self.buf[off], self.buf[off + 1], self.buf[off + 2], self.buf[off + 3]]);
            off += 4;
        }
        let total = off + len as usize;
        if !self.fill(total).await {
            return None;
        }
        let mut payload = self.buf[off..total].to_vec();
        if let Some(m) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= m[i % 4];
            }
        }
        self.buf.drain(..total);
        Some(RawFrame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, payload })
    }

    /// Read frames until a close frame (returns its code, or `Some(1005)` for
    /// an empty close) or EOF (`None`). Panics if still open after `limit`.
    pub async fn expect_closed_within(&mut self, limit: Duration) -> Option<u16> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame_within(left).await {
                Err(()) => panic!("server did not close the connection within {limit:?}"),
                Ok(None) => return None,
                Ok(Some(f)) if f.opcode == 0x8 => {
                    return Some(f.close_code().unwrap_or(1005));
                }
                Ok(Some(_)) => continue,
            }
        }
    }
}
