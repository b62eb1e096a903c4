//! The control socket when descriptors run out: a client left waiting in
//! the backlog is served once descriptors are free again, without
//! another client having to connect first (a failed accept is retried).
//! Its own test binary: it lowers the process's descriptor limit.
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xvr_control::server::{ApiError, Handler, Server};

struct Echo;

impl Handler for Echo {
    fn handle(&mut self, _: &str, request: &Map<String, Value>) -> Result<Value, ApiError> {
        Ok(request.get("say").cloned().unwrap_or(Value::Null))
    }
}

#[test]
fn a_client_waiting_while_descriptors_ran_out_is_served_when_they_return() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xvrd.sock");
    let mut server = Server::bind(&path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || server.run(&mut Echo, &flag).unwrap());

    // A low limit, so that clients and the server (one process) run out
    // together after a few dozen connections.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on this process, with a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let old = limit;
    limit.rlim_cur = 96;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut clients = Vec::new();
    while let Ok(c) = UnixStream::connect(&path) {
        clients.push(c);
        if clients.len() > 1000 {
            break;
        }
    }
    // Let the server fail to accept the last ones.
    std::thread::sleep(Duration::from_millis(300));
    let mut last = clients.pop().expect("some clients connected");
    // Free descriptors on both sides; no one connects after this.
    drop(clients);
    // SAFETY: as above; the limit the process started with.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
    last.write_all(b"{\"id\": 1, \"op\": \"echo\", \"say\": \"back\"}\n")
        .unwrap();
    last.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut answer = String::new();
    BufReader::new(&last)
        .read_line(&mut answer)
        .expect("the waiting client was never served");
    assert!(answer.contains("\"result\":\"back\""), "{answer}");
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}
