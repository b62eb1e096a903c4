//! Tier network ACLs live: tenant t's web tier (10.0.0.0/24 on a1) and db
//! tier (10.0.1.0/24 on a2), routed by xvrd. The db tier's ACL lets the
//! web tier ping it and reach TCP 5432, in rule order, and denies the
//! rest both ways. Checked at the receivers: the db's server sees the web
//! VM's connection, and listeners on denied ports never hear of any.
mod common;

use common::{ask, python, start_xvrd, stop_xvrd, tell_peer_server, tell_peer_server_within};
use xvr_testkit::netns::{require_root, Rig};

const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.1.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.1.10", "mac": "02:0a:00:00:01:10", "port": "a2" }
  ],
  "network_acls": [
    { "tenant": "t", "tier": "10.0.1.0/24", "rules": [
      { "direction": "ingress", "action": "deny", "protocol": "tcp", "source": "10.0.0.99/32", "ports": [5432, 5432] },
      { "direction": "ingress", "action": "allow", "protocol": "tcp", "source": "10.0.0.0/24", "ports": [5432, 5432] },
      { "direction": "ingress", "action": "allow", "protocol": "icmp", "icmp_type": 8, "source": "10.0.0.0/24" }
    ] }
  ]
}"#;

/// Whether a connection from `ns` to `addr`:`port` is established within
/// a second.
fn connects(ns: &str, addr: &str, port: u16) -> bool {
    let probe = format!(
        "import socket\n\
         s = socket.socket(); s.settimeout(1)\n\
         try: s.connect(('{addr}', {port})); print('connected')\n\
         except OSError: print('refused')\n"
    );
    python(ns, &probe).1.trim() == "connected"
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_tier_acl_lets_allowed_flows_and_their_replies_through_and_nothing_else() {
    require_root("running xvrd with tier ACLs over veth");
    let (_dir, config) = common::state_file(STATE);
    let mut r = Rig::new("acl");
    let (host, web, db) = common::two_tiers(&mut r);
    let daemon = start_xvrd(&r, &host, &config, &["a1", "a2"]);

    let ping = ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.10"];
    assert!(
        r.try_exec(&web, &ping),
        "web pings db (echo allowed, replies pass)"
    );
    let mut server = tell_peer_server(&db, "10.0.1.10", 5432);
    assert_eq!(ask(&web, "10.0.1.10", 5432), "10.0.0.10");
    server.wait().unwrap();

    // Denied both ways: web to db's port 22, and anything db opens to web
    // (no egress rule: default deny), pings included.
    let mut ssh = tell_peer_server_within(&db, "10.0.1.10", 22, 4);
    let mut web_listener = tell_peer_server_within(&web, "10.0.0.10", 8000, 4);
    assert!(!connects(&web, "10.0.1.10", 22), "web reached db:22");
    assert!(!connects(&db, "10.0.0.10", 8000), "db reached web:8000");
    let ping_back = ["ping", "-c", "1", "-W", "1", "10.0.0.10"];
    assert!(!r.try_exec(&db, &ping_back), "db's ping got through");
    let log = stop_xvrd(daemon);
    for listener in [&mut ssh, &mut web_listener] {
        let status = listener.wait().unwrap();
        assert!(!status.success(), "a denied connection reached a listener");
    }
    for reason in ["acl_ingress_denied", "acl_egress_denied", "session_new"] {
        assert!(log.contains(reason), "{reason} in {log}");
    }
}
