//! The metadata service live: VMs of two tenants with the same address
//! (10.0.0.10), and a second VM of the first tenant, read
//! http://169.254.169.254/ with `curl`. Each gets its own instance id,
//! user data, keys and addresses, whatever its request says; the second
//! VM's user data (30,000 bytes) is longer than a socket's buffer.
mod common;

use common::{start_xvrd, stats_of, stop_xvrd};
use xvr_testkit::netns::{require_root, Rig};

const STATE: &str = r#"{
  "tenants": [{ "name": "acme", "vni": 100 }, { "name": "globex", "vni": 200 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "acme", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "acme", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "b1", "mac": "02:bb:00:00:00:01", "tenant": "globex", "gateway": "10.0.0.1/24" }
  ],
  "neighbors": [
    { "tenant": "acme", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1", "hostname": "web-1",
      "metadata": { "instance_id": "i-acme-web-1", "user_data": "acme's user data\n",
                    "public_keys": ["ssh-ed25519 AAAAacme alice@acme"] } },
    { "tenant": "acme", "ip": "10.0.0.11", "mac": "02:0a:00:00:00:11", "port": "a2", "hostname": "web-2",
      "metadata": { "instance_id": "i-acme-web-2", "user_data": "LONG_USER_DATA" } },
    { "tenant": "globex", "ip": "10.0.0.10", "mac": "02:0b:00:00:00:10", "port": "b1", "hostname": "db-1",
      "metadata": { "instance_id": "i-globex-db-1", "user_data": "globex's user data\n" } }
  ],
  "nat": { "static": [{ "tenant": "acme", "public_ip": "203.0.113.20", "vm_ip": "10.0.0.10" }] }
}"#;

/// curl in `ns` for `path` of the metadata service: (HTTP code, body).
fn get(rig: &Rig, ns: &str, path: &str, header: &str) -> (String, String) {
    let url = format!("http://169.254.169.254{path}");
    let out = rig.exec(
        ns,
        &[
            "curl",
            "-s",
            "--max-time",
            "5",
            "-H",
            header,
            "-w",
            "\n%{http_code}",
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "none"));
    (code.to_string(), body.to_string())
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn each_vm_reads_its_own_metadata() {
    require_root("creating namespaces and running xvrd");
    let mut r = Rig::new("metadata");
    let host = r.namespace();
    let internet = r.namespace();
    r.veth(&host, "up0", Some("198.18.0.1/24"), &internet, "eth0", None);
    let vms = [
        ("a1", "10.0.0.10/24", "02:0a:00:00:00:10"),
        ("a2", "10.0.0.11/24", "02:0a:00:00:00:11"),
        ("b1", "10.0.0.10/24", "02:0b:00:00:00:10"),
    ]
    .map(|(port, addr, mac)| {
        let vm = r.vm(&host, port, addr, mac);
        r.exec(&vm, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
        vm
    });
    let [acme, acme2, globex] = &vms;
    // acme2 reaches the service on its link, as some images route
    // 169.254.0.0/16: it asks ARP for 169.254.169.254.
    r.exec(
        acme2,
        &["ip", "route", "add", "169.254.169.254/32", "dev", "eth0"],
    );
    let long_user_data = "0123456789abcdef\n".repeat(30_000 / 17);
    let state = STATE.replace("LONG_USER_DATA", &long_user_data.replace('\n', "\\n"));
    let (_dir, config) = common::state_file(&state);
    let daemon = start_xvrd(&r, &host, &config, &["up0", "a1", "a2", "b1"]);
    let log = || daemon.log();
    // The request claims to be someone else: it changes nothing.
    let lie = "X-Forwarded-For: 10.0.0.11";
    let expected = [
        (acme, "/latest/meta-data/instance-id", "i-acme-web-1\n"),
        (acme, "/latest/user-data", "acme's user data\n"),
        (acme, "/latest/meta-data/local-ipv4", "10.0.0.10\n"),
        (acme, "/latest/meta-data/public-ipv4", "203.0.113.20\n"),
        (acme, "/latest/meta-data/hostname", "web-1\n"),
        (
            acme,
            "/latest/meta-data/public-keys/0/openssh-key",
            "ssh-ed25519 AAAAacme alice@acme\n",
        ),
        (globex, "/latest/meta-data/instance-id", "i-globex-db-1\n"),
        (globex, "/latest/user-data", "globex's user data\n"),
        (globex, "/latest/meta-data/local-ipv4", "10.0.0.10\n"),
        (acme2, "/latest/meta-data/instance-id", "i-acme-web-2\n"),
        (acme2, "/latest/user-data", long_user_data.as_str()),
    ];
    for (vm, path, want) in expected {
        let (code, body) = get(&r, vm, path, lie);
        assert_eq!(
            (code.as_str(), body.as_str()),
            ("200", want),
            "{vm} {path}\n{}",
            log()
        );
    }
    // What a VM does not have is not found, not another's.
    for (vm, path) in [
        (globex, "/latest/meta-data/public-ipv4"),
        (acme2, "/latest/meta-data/public-ipv4"),
    ] {
        let (code, body) = get(&r, vm, path, lie);
        assert_eq!(code, "404", "{vm} {path}: {body}\n{}", log());
    }
    let stats = stats_of(&config);
    assert_eq!(
        stats["services"]["metadata"]["answered"].as_u64(),
        Some(11),
        "{stats}"
    );
    stop_xvrd(daemon);
}
