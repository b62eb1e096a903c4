//! Test topologies in network namespaces. Every
//! namespace is named `xvr-<test>-<pid>-<n>` and deleted when the `Rig`
//! is dropped, also when the test panics. Nothing is created in the root
//! namespace.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

pub struct Rig {
    test: String,
    namespaces: Vec<String>,
}

/// Runs a command and returns its output; panics with the command and its
/// stderr when it fails.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Rigs made by this process: two rigs of one name (tests of one file
/// running at once) never share a namespace name.
static RIGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Rig {
    pub fn new(test: &str) -> Rig {
        let n = RIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Rig {
            test: format!("{test}-{n}"),
            namespaces: Vec::new(),
        }
    }

    /// Creates a namespace with its loopback up and returns its name.
    pub fn namespace(&mut self) -> String {
        let name = format!(
            "xvr-{}-{}-{}",
            self.test,
            std::process::id(),
            self.namespaces.len()
        );
        run(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        self.exec(&name, &["ip", "link", "set", "lo", "up"]);
        name
    }

    /// Runs a command inside namespace `ns`.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Like `exec`, but returns whether the command succeeded.
    pub fn try_exec(&self, ns: &str, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A veth pair from `a` (named `a_dev`) to `b` (named `b_dev`), both
    /// up, with IPv4 addresses in CIDR form (or none).
    pub fn veth(
        &self,
        a: &str,
        a_dev: &str,
        a_addr: Option<&str>,
        b: &str,
        b_dev: &str,
        b_addr: Option<&str>,
    ) {
        self.veth_queues(a, a_dev, a_addr, b, b_dev, b_addr, 1);
    }

    /// `veth` with `queues` receive and transmit queues on both ends.
    #[allow(clippy::too_many_arguments)]
    pub fn veth_queues(
        &self,
        a: &str,
        a_dev: &str,
        a_addr: Option<&str>,
        b: &str,
        b_dev: &str,
        b_addr: Option<&str>,
        queues: u32,
    ) {
        let q = queues.to_string();
        let q = q.as_str();
        self.exec(
            a,
            &[
                "ip",
                "link",
                "add",
                a_dev,
                "numtxqueues",
                q,
                "numrxqueues",
                q,
                "type",
                "veth",
                "peer",
                "name",
                b_dev,
                "numtxqueues",
                q,
                "numrxqueues",
                q,
                "netns",
                b,
            ],
        );
        for (ns, dev, addr) in [(a, a_dev, a_addr), (b, b_dev, b_addr)] {
            if let Some(addr) = addr {
                self.exec(ns, &["ip", "addr", "add", addr, "dev", dev]);
            }
            self.exec(ns, &["ip", "link", "set", dev, "up"]);
        }
    }

    /// A VM: a new namespace whose `eth0`, with address `addr` (CIDR) and
    /// MAC `mac`, is the peer of `host_dev` in namespace `host`.
    pub fn vm(&mut self, host: &str, host_dev: &str, addr: &str, mac: &str) -> String {
        self.vm_queues(host, host_dev, addr, mac, 1)
    }

    /// `vm` with `queues` queues on both ends of its veth.
    pub fn vm_queues(
        &mut self,
        host: &str,
        host_dev: &str,
        addr: &str,
        mac: &str,
        queues: u32,
    ) -> String {
        let vm = self.namespace();
        self.veth_queues(host, host_dev, None, &vm, "eth0", Some(addr), queues);
        self.exec(&vm, &["ip", "link", "set", "eth0", "address", mac]);
        vm
    }

    /// Whether `dev` in `ns` carries an XDP program.
    pub fn xdp_attached(&self, ns: &str, dev: &str) -> bool {
        let out = self.exec(ns, &["ip", "-d", "link", "show", "dev", dev]);
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }

    /// Runs `f` on a thread that has entered namespace `ns`, so sockets
    /// and netlink calls it makes (XDP attach, AF_XDP) act inside it.
    pub fn inside<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(format!("/run/netns/{ns}")).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns only changes this thread's network namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}

/// Fails the test unless it runs as root. Tests that need root are
/// `#[ignore]`d, so a plain `cargo test` reports them as ignored (skipped,
/// never passed); `scripts/test` runs them as root with
/// `--include-ignored`, and run that way without root they fail here.
pub fn require_root(what: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    assert!(
        root,
        "{what} needs root: run as root, or leave the test ignored"
    );
}
