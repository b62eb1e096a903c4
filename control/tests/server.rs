//! The control socket server over a real Unix socket, with a small
//! handler: framing, ids, errors of form, the request size limit,
//! half-closed and stuck clients, and a thousand connections at once.
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvr_control::server::{ApiError, Handler, Server, MAX_REQUEST};

struct Echo;

impl Handler for Echo {
    fn handle(&mut self, op: &str, request: &Map<String, Value>) -> Result<Value, ApiError> {
        match op {
            "echo" => Ok(request.get("say").cloned().unwrap_or(Value::Null)),
            _ => Err(ApiError::bad_field("op", format!("unknown op {op:?}"))),
        }
    }
}

/// A server on a fresh socket, run on its own thread until dropped.
struct Running {
    path: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start() -> Running {
    start_with(|server| server)
}

/// `start` with the server's settings changed by `set`.
fn start_with(set: impl FnOnce(Server) -> Server) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/xvrd.sock");
    let mut server = set(Server::bind(&path).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || server.run(&mut Echo, &flag).unwrap());
    Running {
        path,
        stop,
        thread: Some(thread),
        _dir: dir,
    }
}

fn ask(stream: &mut UnixStream, line: &str) -> Value {
    let answer = ask_raw(stream, line);
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

/// The answer line as the server wrote it.
fn ask_raw(stream: &mut UnixStream, line: &str) -> String {
    stream.write_all(line.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut answer = String::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut answer)
        .unwrap();
    answer
}

#[test]
fn requests_are_answered_by_id_and_bad_ones_with_the_field_named() {
    let server = start();
    let mode = std::fs::metadata(&server.path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut c = UnixStream::connect(&server.path).unwrap();
    assert_eq!(
        ask(&mut c, r#"{"id": 7, "op": "echo", "say": "hi"}"#),
        json!({ "id": 7, "result": "hi" })
    );
    let cases = [
        ("{\"id\": 1, \"op\": ", "not JSON"),
        ("[1, 2]", "a request is a JSON object"),
        (r#"{"id": 2}"#, "op: missing"),
        (r#"{"id": 3, "op": 12}"#, "op: 12 is not a string"),
        (
            r#"{"id": 4, "op": "frobnicate"}"#,
            "op: unknown op \"frobnicate\"",
        ),
    ];
    for (line, want) in cases {
        let a = ask(&mut c, line);
        assert_eq!(a["error"]["code"], "bad_request", "{line}: {a}");
        let message = a["error"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{line}: {message}");
    }
    // An id beyond what f64 or u64 hold comes back as it was sent.
    for id in [
        "1e999",
        "123456789012345678901234567890",
        r#"{"k": [1, 2.50]}"#,
    ] {
        let line = format!(r#"{{"id": {id}, "op": "echo", "say": "big"}}"#);
        let answer = ask_raw(&mut c, &line);
        assert!(answer.starts_with(&format!(r#"{{"id":{id},"#)), "{answer}");
    }
    // The connection is still in sync after all that.
    assert_eq!(ask(&mut c, r#"{"id": "x", "op": "echo"}"#)["id"], "x");
}

#[test]
fn an_oversized_line_is_refused_and_the_server_stays_up() {
    let server = start();
    let mut c = UnixStream::connect(&server.path).unwrap();
    let writer = {
        let mut c = c.try_clone().unwrap();
        std::thread::spawn(move || {
            // 3 MiB without a newline; the server hangs up part way.
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..48 {
                if c.write_all(&chunk).is_err() {
                    break;
                }
            }
        })
    };
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    writer.join().unwrap();
    let a: Value = serde_json::from_str(answer.trim()).unwrap();
    assert_eq!(a["error"]["code"], "request_too_large", "{a}");
    assert!(a["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&MAX_REQUEST.to_string()));
    let mut again = UnixStream::connect(&server.path).unwrap();
    assert_eq!(ask(&mut again, r#"{"id": 1, "op": "echo"}"#)["id"], 1);
}

#[test]
fn half_closed_stuck_and_a_thousand_clients_do_not_stop_the_others() {
    let server = start_with(|s| s.with_limits(1100, Duration::from_secs(60)));
    // Half-closed: requests then EOF still get their answers.
    let mut c = UnixStream::connect(&server.path).unwrap();
    c.write_all(b"{\"id\":1,\"op\":\"echo\"}\n{\"id\":2,\"op\":\"echo\"}\n")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answers = String::new();
    c.read_to_string(&mut answers).unwrap();
    assert_eq!(answers.lines().count(), 2, "{answers}");

    // Stuck: a client that sends and never reads.
    let mut stuck = UnixStream::connect(&server.path).unwrap();
    stuck.set_nonblocking(true).unwrap();
    let request =
        b"{\"id\":0,\"op\":\"echo\",\"say\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n".repeat(1000);
    for _ in 0..50 {
        let _ = stuck.write(&request);
    }
    // A thousand at once, all answered meanwhile.
    let mut clients: Vec<UnixStream> = (0..1000)
        .map(|_| UnixStream::connect(&server.path).unwrap())
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("{{\"id\":{i},\"op\":\"echo\"}}\n").as_bytes())
            .unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut answer = String::new();
        BufReader::new(c).read_line(&mut answer).unwrap();
        let a: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(a["id"], i, "{a}");
    }
}

#[test]
fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
    let server = start();
    let err = Server::bind(&server.path)
        .err()
        .expect("second bind refused");
    assert!(err.to_string().contains("another xvrd"), "{err}");
    drop(err);
    let path = server.path.clone();
    let dir = path.parent().unwrap().to_path_buf();
    drop(server);
    // A stale file (nobody listening) is replaced.
    std::fs::create_dir_all(&dir).unwrap();
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());
    let _server = Server::bind(&path).unwrap();
}

#[test]
fn the_line_limit_is_exact_however_the_line_arrives() {
    let server = start();
    // A request of exactly `len` bytes, sent in one write.
    let line_of = |len: usize| {
        let head = r#"{"id": 1, "op": "echo", "say": ""#;
        let mut line = head.to_string();
        line.push_str(&"x".repeat(len - head.len() - 2));
        line.push_str(r#""}"#);
        assert_eq!(line.len(), len);
        line
    };
    let mut c = UnixStream::connect(&server.path).unwrap();
    let a = ask(&mut c, &line_of(MAX_REQUEST));
    assert!(a.get("error").is_none(), "the limit itself is served");
    let mut c = UnixStream::connect(&server.path).unwrap();
    let a = ask(&mut c, &line_of(MAX_REQUEST + 1));
    assert_eq!(a["error"]["code"], "request_too_large", "one byte over");
}

#[test]
fn past_the_connection_cap_one_is_told_and_the_next_served_once_one_leaves() {
    let server = start_with(|s| s.with_limits(2, Duration::from_secs(60)));
    let mut first = UnixStream::connect(&server.path).unwrap();
    let mut second = UnixStream::connect(&server.path).unwrap();
    assert_eq!(ask(&mut first, r#"{"id": 1, "op": "echo"}"#)["id"], 1);
    assert_eq!(ask(&mut second, r#"{"id": 2, "op": "echo"}"#)["id"], 2);
    let mut third = UnixStream::connect(&server.path).unwrap();
    let mut refusal = String::new();
    third.read_to_string(&mut refusal).unwrap();
    let a: Value = serde_json::from_str(refusal.trim()).unwrap();
    assert_eq!(a["error"]["code"], "unavailable", "{a}");
    drop(first);
    // The server sees the close on its next event; then a newcomer is
    // served without anyone else connecting.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut c = UnixStream::connect(&server.path).unwrap();
        let a = ask(&mut c, r#"{"id": 3, "op": "echo"}"#);
        if a["id"] == 3 && a.get("error").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "never served: {a}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    let server = start_with(|s| s.with_limits(16, Duration::from_millis(300)));
    let mut silent = UnixStream::connect(&server.path).unwrap();
    let mut talking = UnixStream::connect(&server.path).unwrap();
    let started = Instant::now();
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            ask(&mut talking, &format!(r#"{{"id": {i}, "op": "echo"}}"#))["id"],
            i
        );
    }
    silent
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty() && started.elapsed() < Duration::from_secs(2));
}
