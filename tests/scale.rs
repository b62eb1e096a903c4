//! Many tenants on two hosts: 200 tenants, each with one VM port on host A
//! (VM 10.0.0.10) and one on host B (VM 10.0.0.20), all in 10.0.0.0/24,
//! joined by VXLAN. Every tenant pings across the hosts; then every VM on
//! A sends a frame tagged with its tenant to every VM MAC on B (40,000
//! frames), and each VM on B, sniffing with its own kernel socket, must
//! see only frames of its own tenant; forwarding still works after.
//! A worker's UMEM is sized for its ports (a host once stopped at about
//! 64 VM ports, when each idle port's fill ring held 128 chunks).
mod common;

use common::start_xvrd;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use xvr_testkit::netns::{require_root, Rig};

/// Tenants in the run: 200, or `XVR_SCALE_TENANTS` (1,000 was run by
/// hand; the ports' MACs and names hold up to 65,535).
fn tenant_count() -> usize {
    std::env::var("XVR_SCALE_TENANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

fn mac(prefix: u8, t: usize) -> String {
    format!("02:{prefix:02x}:00:00:{:02x}:{:02x}", t >> 8, t & 0xff)
}

/// Host `me` (1 or 2) of the pair: tenant t's VM port `v{t}`, its VM
/// (.10 on host 1, .20 on host 2) and the other host's as a remote VM.
fn state(me: u8) -> String {
    let peer = 3 - me;
    let (local, remote) = if me == 1 { (10, 20) } else { (20, 10) };
    let mut tenants = Vec::new();
    let mut ports = vec![format!(
        r#"{{ "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:0{me}", "ip": "198.18.0.{me}" }}"#
    )];
    let (mut neighbors, mut remotes) = (Vec::new(), Vec::new());
    for t in 0..tenant_count() {
        tenants.push(format!(r#"{{ "name": "t{t}", "vni": {} }}"#, 1000 + t));
        ports.push(format!(
            r#"{{ "role": "vm", "name": "v{t}", "mac": "{}", "tenant": "t{t}", "gateway": "10.0.0.1/24" }}"#,
            mac(0xa0 + me, t)
        ));
        let vm_mac = |host: u8| mac(if host == 1 { 0x0a } else { 0x0b }, t);
        neighbors.push(format!(
            r#"{{ "tenant": "t{t}", "ip": "10.0.0.{local}", "mac": "{}", "port": "v{t}" }}"#,
            vm_mac(me)
        ));
        remotes.push(format!(
            r#"{{ "tenant": "t{t}", "ip": "10.0.0.{remote}", "mac": "{}", "vtep": "198.18.0.{peer}" }}"#,
            vm_mac(peer)
        ));
    }
    format!(
        r#"{{ "tenants": [{}], "ports": [{}], "neighbors": [{}],
  "vteps": [{{ "ip": "198.18.0.{peer}", "mac": "02:00:00:00:00:0{peer}" }}],
  "remote_vms": [{}] }}"#,
        tenants.join(","),
        ports.join(","),
        neighbors.join(","),
        remotes.join(",")
    )
}

/// A Python program that enters each namespace in `namespaces` (setns),
/// opens a raw socket on its eth0 there, then runs `body` with `socks`,
/// the sockets in order.
fn in_namespaces(namespaces: &[String], body: &str) -> String {
    let list: Vec<String> = namespaces.iter().map(|n| format!("'{n}'")).collect();
    format!(
        "import ctypes, os, socket, select, sys, time\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         home = os.open('/proc/self/ns/net', os.O_RDONLY)\n\
         socks = []\n\
         for ns in [{}]:\n\
         \x20   fd = os.open('/run/netns/' + ns, os.O_RDONLY)\n\
         \x20   assert libc.setns(fd, 0x40000000) == 0, ctypes.get_errno()\n\
         \x20   s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))\n\
         \x20   s.bind(('eth0', 0)); socks.append(s); os.close(fd)\n\
         libc.setns(home, 0x40000000)\n\
         {body}\n",
        list.join(",")
    )
}

/// Each tenant's frame on A's VM to B's VM of tenant `dst`: UDP to port
/// 9 of 10.0.0.20 carrying `tag`, as hex for the Python side.
fn tagged(src: usize, dst: usize, tag: &str) -> String {
    let m = |prefix: u8, t: usize| [2, prefix, 0, 0, (t >> 8) as u8, t as u8];
    let frame = xvr_testkit::headers(m(0x0a, src), m(0x0b, dst), [10, 0, 0, 10], [10, 0, 0, 20])
        .udp(40000, 9, tag.as_bytes());
    frame.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Sends, from A's VMs, frames[i] = the (src tenant, hex) list, and has
/// B's VMs sniff meanwhile; returns what each B VM heard (tags of UDP to
/// port 9), by tenant.
fn sweep(a: &[String], b: &[String], frames: &[(usize, String)]) -> Vec<Vec<String>> {
    // poll, not select: a thousand sockets pass select's 1,024 limit.
    let sniff = in_namespaces(
        b,
        &format!(
            "p = select.poll(); at = {{}}\n\
             for i, s in enumerate(socks): p.register(s.fileno(), select.POLLIN); at[s.fileno()] = i\n\
             end = time.time() + {}\n\
             while time.time() < end:\n\
             \x20   for fd, _ in p.poll(500):\n\
             \x20       f = socks[at[fd]].recv(2048)\n\
             \x20       if len(f) > 42 and f[23] == 17 and f[36:38] == b'\\x00\\x09':\n\
             \x20           print(at[fd], f[42:].decode(errors='replace'), flush=True)\n",
            12 + b.len() / 50
        ),
    );
    let sniffer = python(&sniff, Stdio::piped());
    // The sniffer opens a socket in each namespace before it listens.
    let opening = 3 + b.len() as u64 / 100;
    std::thread::sleep(std::time::Duration::from_secs(opening));
    let mut by_src: Vec<Vec<&str>> = vec![Vec::new(); a.len()];
    for (src, hex) in frames {
        by_src[*src].push(hex);
    }
    let lists: Vec<String> = by_src
        .iter()
        .map(|l| {
            format!(
                "[{}]",
                l.iter()
                    .map(|h| format!("'{h}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    let send = in_namespaces(
        a,
        &format!(
            "frames = [{}]\n\
             for s, fs in zip(socks, frames):\n\
             \x20   for h in fs: s.send(bytes.fromhex(h))\n",
            lists.join(",")
        ),
    );
    let sent = python(&send, Stdio::null()).wait().unwrap();
    assert!(sent.success(), "the senders");
    let out = sniffer.wait_with_output().unwrap();
    let mut heard = vec![Vec::new(); b.len()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((at, tag)) = line.split_once(' ') {
            heard[at.parse::<usize>().unwrap()].push(tag.to_string());
        }
    }
    heard
}

/// Runs a Python program given on its standard input (40,000 frames are
/// too long for an argument).
fn python(program: &str, stdout: Stdio) -> Child {
    let mut child = Command::new("python3")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(stdout)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(program.as_bytes()).unwrap();
    drop(stdin);
    child
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn two_hundred_tenants_on_two_hosts_stay_apart_and_all_forward() {
    require_root("running xvrd with 200 VM ports over veth");
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::new("scale");
    let hosts = common::two_hosts(&mut rig);
    let mut vms: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (h, host) in hosts.iter().enumerate() {
        for t in 0..tenant_count() {
            let (addr, vm_mac) = match h {
                0 => ("10.0.0.10/24", mac(0x0a, t)),
                _ => ("10.0.0.20/24", mac(0x0b, t)),
            };
            vms[h].push(rig.vm(host, &format!("v{t}"), addr, &vm_mac));
        }
    }
    let mut daemons = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        let config = dir.path().join(format!("host{h}.json"));
        std::fs::write(&config, state(h as u8 + 1)).unwrap();
        let last = format!("v{}", tenant_count() - 1);
        daemons.push(start_xvrd(&rig, host, &config, &["up0", "v0", &last]));
    }
    // Every tenant pings across the hosts (a few tries: the first ping
    // of each also resolves the peer through the ARP responder).
    let pings = |t: usize| {
        (0..3).any(|_| rig.try_exec(&vms[0][t], &["ping", "-c", "1", "-W", "2", "10.0.0.20"]))
    };
    let failed: Vec<usize> = (0..tenant_count()).filter(|&t| !pings(t)).collect();
    if !failed.is_empty() {
        for h in 0..2 {
            let v = common::stats_of(&dir.path().join(format!("host{h}.json")));
            eprintln!(
                "host {h}: drops {} xdp {} workers {}",
                v["drops"], v["xdp"], v["workers"]
            );
        }
        panic!("tenants that could not ping: {failed:?}");
    }
    // The UMEM held by each host's quiet ports: 32 chunks each (1,024
    // for the uplink).
    for h in 0..2 {
        let stats = common::stats_of(&dir.path().join(format!("host{h}.json")));
        let umem = &stats["workers"][0]["umem"];
        eprintln!("host {h} UMEM after the pings: {umem}");
        // The busy ports' reserve is still free: quiet ports hold only
        // their idle rings.
        assert!(umem["free"].as_u64().unwrap() >= 8192, "{umem}");
    }

    // Every VM on A to every VM MAC on B, tagged with the sender.
    let mut frames = Vec::new();
    // All pairs up to 200 tenants; beyond, every (n / 200)th MAC and its own.
    let n = tenant_count();
    let step = n.div_ceil(200);
    for src in 0..n {
        for dst in (0..n).filter(|d| d % step == 0 || *d == src) {
            frames.push((src, tagged(src, dst, &format!("t{src}"))));
        }
    }
    let heard = sweep(&vms[0], &vms[1], &frames);
    for (t, tags) in heard.iter().enumerate() {
        assert!(
            tags.iter().all(|tag| *tag == format!("t{t}")),
            "B's VM of t{t} heard another tenant: {tags:?}"
        );
        assert!(!tags.is_empty(), "B's VM of t{t} heard nothing of its own");
    }
    // After the sweep, every tenant still forwards.
    let again: Vec<(usize, String)> = (0..tenant_count())
        .map(|t| (t, tagged(t, t, &format!("t{t}"))))
        .collect();
    let heard = sweep(&vms[0], &vms[1], &again);
    let silent: Vec<usize> = (0..tenant_count())
        .filter(|&t| heard[t].is_empty())
        .collect();
    if !silent.is_empty() {
        for h in 0..2 {
            let v = common::stats_of(&dir.path().join(format!("host{h}.json")));
            eprintln!(
                "host {h}: drops {} xdp {} workers {}",
                v["drops"], v["xdp"], v["workers"]
            );
        }
    }
    assert!(
        silent.is_empty(),
        "tenants that stopped forwarding: {silent:?}"
    );
    for daemon in daemons {
        common::stop_xvrd(daemon);
    }
}
