//! The control socket server (docs/control-protocol.md): a Unix stream socket
//! speaking JSON lines, served by a mio event loop on its own thread, so a
//! slow or stuck client never blocks the others, and nothing here ever
//! touches the data path.
//!
//! Each request is one line holding a JSON object with an `id` (any JSON
//! value, echoed back) and an `op`. Each answer is one line:
//! `{"id": ..., "result": ...}` or `{"id": ..., "error": {"code": ...,
//! "message": ...}}`, the message naming the field and value at fault.
//! A line may be at most `MAX_REQUEST` bytes, however it arrives; a
//! longer one is answered with `request_too_large` and the connection
//! closed (it cannot be resynchronised). Past the connection cap a client
//! is told so and closed; a silent one is closed after the idle timeout. Peers are checked with SO_PEERCRED: root, or the
//! daemon's own user.
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest request line, in bytes (1 MiB).
pub const MAX_REQUEST: usize = 1 << 20;
/// Bytes read and dropped after an oversized line before hanging up.
const MAX_DISCARD: usize = 256 << 20;
/// Answers a client may leave unread before it is disconnected.
const MAX_UNREAD_OUTPUT: usize = 64 << 20;
/// The default socket path.
pub const DEFAULT_SOCKET: &str = "/run/xvr/xvrd.sock";
/// Clients served at once by default; one more is told so and closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// How long a client may stay silent by default before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

const LISTENER: Token = Token(0);

/// The stable codes of error answers, for programs (see
/// docs/control-protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A request, or one of its fields, that is missing or wrong; the
    /// message names the field and value.
    BadRequest,
    /// A write whose resulting state fails validation; every problem is
    /// listed.
    Invalid,
    /// The data path could not do it (a worker did not answer, an
    /// interface could not be bound); nothing changed.
    Unavailable,
    /// A request line over the limit; the connection is closed after.
    RequestTooLarge,
    /// A peer that is neither root nor xvrd's own user.
    PermissionDenied,
    /// A fault of xvrd's own.
    Internal,
}

impl ErrorCode {
    /// Its name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error answer: a stable `code` for programs, a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// A request field that is missing or wrong.
    pub fn bad_field(field: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, format!("{field}: {why}"))
    }
}

/// A request's optional string field.
pub fn optional_str<'a>(
    request: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match request.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad_field(
            field,
            format!("{other} is not a string"),
        )),
    }
}

/// A request's optional true-or-false field.
pub fn optional_bool(request: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match request.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_field(
            field,
            format!("{other} is not true or false"),
        )),
    }
}

/// A request's optional number field, from 0 to `max`.
pub fn optional_u64(
    request: &Map<String, Value>,
    field: &str,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match request.get(field) {
        None => Ok(None),
        Some(v) => v.as_u64().filter(|n| *n <= max).map(Some).ok_or_else(|| {
            ApiError::bad_field(field, format!("{v} is not a number from 0 to {max}"))
        }),
    }
}

/// Answers requests; the server owns framing, peers and errors of form.
pub trait Handler {
    fn handle(&mut self, op: &str, request: &Map<String, Value>) -> Result<Value, ApiError>;
}

struct Connection {
    stream: UnixStream,
    /// When the peer last sent something (or connected).
    last_heard: Instant,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Close once the output is flushed (the peer closed, or is gone).
    closing: bool,
    /// Out of sync (an oversized line): input is read and dropped until
    /// the peer closes, so it reads its error before the end, not a reset.
    discarding: usize,
}

pub struct Server {
    poll: Poll,
    listener: UnixListener,
    connections: HashMap<Token, Connection>,
    next_token: usize,
    path: PathBuf,
    max_connections: usize,
    idle_timeout: Duration,
    /// An accept failed for want of descriptors (or similar): the
    /// listener's edge is spent, so accept again on the next tick.
    accept_pending: bool,
}

impl Server {
    /// Binds `path` (mode 0600; its directory is created if missing). A
    /// stale socket file that nobody listens on is replaced; a live one
    /// is an error (another daemon owns it).
    pub fn bind(path: &Path) -> io::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another xvrd is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let mut listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            connections: HashMap::new(),
            next_token: 1,
            path: path.to_path_buf(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            accept_pending: false,
        })
    }

    /// At most `max_connections` clients at once, each closed after
    /// `idle_timeout` without a byte from it.
    pub fn with_limits(mut self, max_connections: usize, idle_timeout: Duration) -> Server {
        self.max_connections = max_connections.max(1);
        self.idle_timeout = idle_timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves until `stop` is set (checked every 100 ms).
    pub fn run(&mut self, handler: &mut dyn Handler, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::Relaxed) {
            match self
                .poll
                .poll(&mut events, Some(Duration::from_millis(100)))
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => result?,
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    token => self.serve(token, handler),
                }
            }
            if self.accept_pending {
                self.accept_all();
            }
            self.close_idle();
        }
        Ok(())
    }

    /// Closes the connections silent for longer than the idle timeout.
    fn close_idle(&mut self) {
        let timeout = self.idle_timeout;
        let idle: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| c.last_heard.elapsed() > timeout)
            .map(|(token, _)| *token)
            .collect();
        for token in idle {
            if let Some(mut c) = self.connections.remove(&token) {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }

    fn accept_all(&mut self) {
        self.accept_pending = false;
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if let Err(why) = peer_allowed(&stream) {
                        let refusal =
                            answer("null", Err(ApiError::new(ErrorCode::PermissionDenied, why)));
                        let _ = stream.write_all(&refusal);
                        continue;
                    }
                    if self.connections.len() >= self.max_connections {
                        let why = format!(
                            "{} control connections are open, the most xvrd serves; \
                             try again when one closes",
                            self.connections.len()
                        );
                        let refusal =
                            answer("null", Err(ApiError::new(ErrorCode::Unavailable, why)));
                        let _ = stream.write_all(&refusal);
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, interest)
                        .is_ok()
                    {
                        let connection = Connection {
                            stream,
                            last_heard: Instant::now(),
                            input: Vec::new(),
                            output: Vec::new(),
                            closing: false,
                            discarding: 0,
                        };
                        self.connections.insert(token, connection);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors or similar: the client waits in the
                // backlog; try again on the next tick (100 ms) rather
                // than spin, or wait for a connection that may not come.
                Err(_) => {
                    self.accept_pending = true;
                    return;
                }
            }
        }
    }

    fn serve(&mut self, token: Token, handler: &mut dyn Handler) {
        let Some(c) = self.connections.get_mut(&token) else {
            return;
        };
        let mut buf = [0u8; 64 * 1024];
        while !c.closing {
            match c.stream.read(&mut buf) {
                Ok(0) => c.closing = true,
                Ok(n) if c.discarding > 0 => {
                    c.last_heard = Instant::now();
                    c.discarding += n;
                    if c.discarding > MAX_DISCARD {
                        c.closing = true;
                    }
                }
                Ok(n) => {
                    c.last_heard = Instant::now();
                    c.input.extend_from_slice(&buf[..n]);
                    answer_lines(c, handler);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.closing = true;
                    c.output.clear();
                }
            }
        }
        if c.closing {
            // Half-closed: what came before the end is still answered.
            answer_lines(c, handler);
        }
        if !flush(c) || c.output.len() > MAX_UNREAD_OUTPUT {
            // A broken peer, or one that stopped reading: let it go.
            c.closing = true;
            c.output.clear();
        }
        if c.discarding > 0 && c.output.is_empty() {
            // The error is out: the peer sees it, then the end.
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        if c.closing && c.output.is_empty() {
            if let Some(mut c) = self.connections.remove(&token) {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers every complete line in the input.
fn answer_lines(c: &mut Connection, handler: &mut dyn Handler) {
    let mut start = 0;
    let mut too_large = false;
    while let Some(end) = c.input[start..].iter().position(|&b| b == b'\n') {
        let line = &c.input[start..start + end];
        // However the line arrived: in one write or many.
        if line.len() > MAX_REQUEST {
            too_large = true;
            break;
        }
        let reply = respond(line, handler);
        c.output.extend_from_slice(&reply);
        start += end + 1;
    }
    c.input.drain(..start);
    if too_large || c.input.len() > MAX_REQUEST {
        let error = ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("a request line may be at most {MAX_REQUEST} bytes"),
        );
        c.output.extend_from_slice(&answer("null", Err(error)));
        c.input.clear();
        c.discarding = 1;
    }
}

/// Writes what it can until the peer would block; false if the peer is
/// gone.
fn flush(c: &mut Connection) -> bool {
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => return false,
            Ok(n) => {
                c.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

/// A request's `id` as its bytes were sent, to echo exactly (a number
/// too long for u64 or f64 included).
#[derive(serde::Deserialize)]
struct RawId<'a> {
    #[serde(borrow)]
    id: Option<&'a serde_json::value::RawValue>,
}

/// One request line to one answer line.
pub fn respond(line: &[u8], handler: &mut dyn Handler) -> Vec<u8> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            let error = ApiError::new(ErrorCode::BadRequest, format!("not JSON: {e}"));
            return answer("null", Err(error));
        }
    };
    let Value::Object(request) = value else {
        let error = ApiError::new(
            ErrorCode::BadRequest,
            "a request is a JSON object with id and op",
        );
        return answer("null", Err(error));
    };
    let raw: Option<RawId> = serde_json::from_slice(line).ok();
    let id = raw.and_then(|r| r.id).map_or("null", |id| id.get());
    let result = match request.get("op") {
        None => Err(ApiError::bad_field("op", "missing")),
        Some(Value::String(op)) => handler.handle(op, &request),
        Some(other) => Err(ApiError::bad_field(
            "op",
            format!("{other} is not a string"),
        )),
    };
    answer(id, result)
}

/// The answer line: `id` (raw JSON, as the request sent it) first, then
/// the result or the error.
fn answer(id: &str, result: Result<Value, ApiError>) -> Vec<u8> {
    let reply = match result {
        Ok(result) => json!({ "result": result }),
        Err(e) => json!({ "error": { "code": e.code.name(), "message": e.message } }),
    };
    let body = serde_json::to_vec(&reply).expect("JSON values serialize");
    let mut line = Vec::with_capacity(body.len() + id.len() + 8);
    line.extend_from_slice(b"{\"id\":");
    line.extend_from_slice(id.as_bytes());
    line.push(b',');
    line.extend_from_slice(body.get(1..).unwrap_or_default());
    line.push(b'\n');
    line
}

/// Root, or the user the daemon runs as.
fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(format!("peer credentials: {}", io::Error::last_os_error()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid == 0 || cred.uid == me {
        Ok(())
    } else {
        Err(format!(
            "uid {} may not control xvrd (root or uid {me} only)",
            cred.uid
        ))
    }
}
