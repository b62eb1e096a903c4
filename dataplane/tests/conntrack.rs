//! Connection tracking and NAT sessions: both directions found, mappings
//! endpoint-independent, expiry on time (and only then), the table limit,
//! and under random flows a public (address, protocol, port) never serves
//! two inside endpoints.
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use xvr_dataplane::conntrack::*;

const NAT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const PORTS: (u16, u16) = (1024, 65535);

fn key(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> FlowKey {
    FlowKey {
        zone: 0,
        proto,
        src: src.into(),
        dst: dst.into(),
        sport,
        dport,
    }
}

/// A table whose one tenant (zone 0) may use all of it: these tests are
/// about the table; tenants' shares have their own below.
fn small(max_sessions: u32) -> Conntrack {
    let mut ct = Conntrack::new(Config {
        max_sessions,
        timeouts: Timeouts::default(),
    });
    let all = ShareLimits {
        sessions: Some(max_sessions),
        new_per_second: Some(u32::MAX),
        fragments: None,
    };
    ct.set_share_limits(vec![all]);
    ct
}

#[test]
fn a_tenant_at_its_share_leaves_room_for_the_others() {
    let mut ct = Conntrack::new(Config {
        max_sessions: 1000,
        timeouts: Timeouts::default(),
    });
    // Zone 0 takes the default share (a quarter), zone 1 a rate of 10/s.
    let rated = ShareLimits {
        new_per_second: Some(10),
        ..ShareLimits::default()
    };
    ct.set_share_limits(vec![ShareLimits::default(), rated]);
    let flood = |i: u16, zone| FlowKey {
        zone,
        ..key(UDP, [10, 0, 0, 10], 1000 + i, [198, 19, 0, 1], 53)
    };
    let mut refused = 0;
    for i in 0..1000 {
        if let Err(e) = ct.setup_snat(flood(i, 0), NAT_IP, PORTS, State::UdpUnreplied, 0) {
            assert_eq!(e, SetupError::TenantFull);
            refused += 1;
        }
    }
    assert_eq!((ct.sessions_of(0), refused), (250, 750));
    // Zone 2 (defaults) still opens sessions; zone 1 ten a second.
    let other = ct.setup_snat(flood(0, 2), NAT_IP, PORTS, State::UdpUnreplied, 0);
    assert!(other.is_ok());
    let opened = (0..20)
        .filter(|&i| {
            ct.setup_snat(flood(i, 1), NAT_IP, PORTS, State::UdpUnreplied, 0)
                .is_ok()
        })
        .count();
    assert_eq!(opened, 10);
    let next_second = ct.setup_snat(flood(30, 1), NAT_IP, PORTS, State::UdpUnreplied, 1);
    assert!(next_second.is_ok());
    // A flushed tenant's share is free again.
    ct.flush_zones(&[0]);
    assert_eq!(ct.sessions_of(0), 0);
    assert!(ct
        .setup_snat(flood(0, 0), NAT_IP, PORTS, State::UdpUnreplied, 0)
        .is_ok());
}

#[test]
fn both_directions_find_the_session() {
    let mut ct = small(16);
    let k = key(TCP, [10, 0, 0, 10], 40000, [198, 19, 0, 10], 80);
    let id = ct.setup_snat(k, NAT_IP, PORTS, State::SynSent, 0).unwrap();
    let s = *ct.session(id).unwrap();
    assert_eq!((s.nat_ip, s.nat_port), (NAT_IP, 40000), "port preserved");
    assert_eq!(ct.lookup(&k), Some((id, Dir::Orig)));
    let reply = FlowKey {
        zone: PUBLIC,
        proto: TCP,
        src: [198, 19, 0, 10].into(),
        dst: NAT_IP,
        sport: 80,
        dport: 40000,
    };
    assert_eq!(s.reply_key(), reply);
    assert_eq!(ct.lookup(&reply), Some((id, Dir::Reply)));
    ct.update(id, Dir::Reply, SYN | ACK, 1);
    ct.update(id, Dir::Orig, ACK, 1);
    assert_eq!(ct.session(id).unwrap().state, State::Established);
}

#[test]
fn mappings_are_endpoint_independent() {
    let mut ct = small(16);
    let a = ct
        .setup_snat(
            key(UDP, [10, 0, 0, 10], 5000, [198, 19, 0, 1], 53),
            NAT_IP,
            PORTS,
            State::UdpUnreplied,
            0,
        )
        .unwrap();
    let b = ct
        .setup_snat(
            key(UDP, [10, 0, 0, 10], 5000, [198, 19, 0, 2], 53),
            NAT_IP,
            PORTS,
            State::UdpUnreplied,
            0,
        )
        .unwrap();
    // Another VM with the same source port gets another public port.
    let c = ct
        .setup_snat(
            key(UDP, [10, 0, 0, 11], 5000, [198, 19, 0, 1], 53),
            NAT_IP,
            PORTS,
            State::UdpUnreplied,
            0,
        )
        .unwrap();
    let port = |id| ct.session(id).unwrap().nat_port;
    assert_eq!(port(a), 5000);
    assert_eq!(port(b), 5000, "same inside endpoint, same public port");
    assert_ne!(port(c), 5000);
}

#[test]
fn sessions_expire_on_time_and_free_their_port() {
    let mut ct = small(16);
    let k = key(UDP, [10, 0, 0, 10], 5000, [198, 19, 0, 1], 4500);
    let id = ct
        .setup_snat(k, NAT_IP, PORTS, State::UdpUnreplied, 100)
        .unwrap();
    assert_eq!(ct.expire(399, 64), 0, "a UDP mapping lives 5 minutes");
    assert_eq!(ct.lookup(&k), Some((id, Dir::Orig)));
    // A reply at 300 makes it a replied flow: 300 s from then.
    ct.update(id, Dir::Reply, 0, 300);
    assert_eq!(ct.expire(599, 64), 0);
    assert_eq!(ct.expire(600, 64), 1);
    assert_eq!(ct.lookup(&k), None);
    assert!(ct.is_empty());
    // Port 5000 is free again: another endpoint can have it.
    let other = key(UDP, [10, 0, 0, 11], 5000, [198, 19, 0, 1], 4500);
    let id = ct
        .setup_snat(other, NAT_IP, PORTS, State::UdpUnreplied, 601)
        .unwrap();
    assert_eq!(ct.session(id).unwrap().nat_port, 5000);
}

#[test]
fn udp_to_a_well_known_port_expires_sooner() {
    let mut ct = small(16);
    let dns = key(UDP, [10, 0, 0, 10], 5000, [198, 19, 0, 1], 53);
    let id = ct
        .setup_snat(dns, NAT_IP, PORTS, State::UdpUnreplied, 0)
        .unwrap();
    ct.update(id, Dir::Reply, 0, 1);
    assert_eq!(ct.expire(30, 64), 0);
    assert_eq!(
        ct.expire(31, 64),
        1,
        "RFC 4787 REQ-5a: 30 s below port 1024"
    );
}

/// RFC 4787 REQ-5 (a UDP mapping: at least 2 minutes, 5 recommended),
/// RFC 5382 REQ-5 (TCP: established at least 2 h 4 min, transitory at
/// least 4 min) and RFC 5508 REQ-1 (ICMP query: at least 60 s).
#[test]
fn the_default_timeouts_meet_the_nat_rfcs() {
    let t = Timeouts::default();
    assert!(t.udp_unreplied >= 300 && t.udp_replied >= 300);
    assert!(t.established >= 2 * 3600 + 4 * 60);
    for transitory in [
        t.syn_sent,
        t.syn_recv,
        t.fin_wait,
        t.close_wait,
        t.time_wait,
    ] {
        assert!(transitory >= 240, "{t:?}");
    }
    assert!(t.icmp >= 60);
}

#[test]
fn a_fin_shortens_the_life_of_an_established_session() {
    let mut ct = small(16);
    let k = key(TCP, [10, 0, 0, 10], 40000, [198, 19, 0, 10], 80);
    let id = ct.setup_snat(k, NAT_IP, PORTS, State::SynSent, 0).unwrap();
    ct.update(id, Dir::Reply, SYN | ACK, 0);
    ct.update(id, Dir::Orig, ACK, 0);
    assert_eq!(ct.expire(10_000, 64), 0, "established lives 5 days");
    ct.update(id, Dir::Orig, FIN | ACK, 10_000);
    ct.update(id, Dir::Reply, FIN | ACK, 10_001);
    assert_eq!(ct.session(id).unwrap().state, State::TimeWait);
    assert_eq!(ct.expire(10_240, 64), 0);
    assert_eq!(ct.expire(10_241, 64), 1, "time-wait: 240 s");
}

#[test]
fn a_full_table_refuses_new_sessions_and_keeps_the_old() {
    let mut ct = small(4);
    let keys: Vec<FlowKey> = (0..5)
        .map(|i| key(UDP, [10, 0, 0, 10], 5000 + i, [198, 19, 0, 1], 53))
        .collect();
    for k in &keys[..4] {
        ct.setup_snat(*k, NAT_IP, PORTS, State::UdpUnreplied, 0)
            .unwrap();
    }
    assert_eq!(
        ct.setup_snat(keys[4], NAT_IP, PORTS, State::UdpUnreplied, 0),
        Err(SetupError::Full)
    );
    assert!(keys[..4].iter().all(|k| ct.lookup(k).is_some()));
}

#[test]
fn an_exhausted_port_range_is_refused() {
    let mut ct = small(16);
    for i in 0..3 {
        let k = key(UDP, [10, 0, 0, 10 + i], 5000, [198, 19, 0, 1], 53);
        let r = ct.setup_snat(k, NAT_IP, (2000, 2001), State::UdpUnreplied, 0);
        assert_eq!(r.is_ok(), i < 2, "{i}: {r:?}");
    }
}

#[test]
fn a_mass_expiry_is_spread_over_calls() {
    let mut ct = small(1000);
    for i in 0..1000u16 {
        let k = key(UDP, [10, 0, 0, 10], 1000 + i, [198, 19, 0, 1], 53);
        ct.setup_snat(k, NAT_IP, PORTS, State::UdpUnreplied, 0)
            .unwrap();
    }
    assert_eq!(ct.expire(30, 64), 64);
    let mut total = 64;
    while total < 1000 {
        total += ct.expire(30, 64);
    }
    assert!(ct.is_empty());
}

#[test]
fn memory_per_session_is_at_most_128_bytes() {
    let ct = small(1 << 20);
    let bytes = ct.bytes_per_session();
    eprintln!("{bytes} bytes per session at 1M sessions");
    assert!(bytes <= 128, "{bytes} bytes per session");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random flows from a few VMs and ports to a few servers, with time
    /// passing: every live session is found by both keys, and a public
    /// (protocol, port) serves one inside endpoint only.
    #[test]
    fn nat_mappings_stay_a_bijection(
        flows in prop::collection::vec((0u8..4, 0u16..6, 0u8..3, any::<bool>(), 0u32..40), 1..300)
    ) {
        let mut ct = small(10_000);
        let mut now = 0;
        for (vm, sport, server, tcp, dt) in flows {
            now += dt;
            ct.expire(now, usize::MAX);
            let proto = if tcp { TCP } else { UDP };
            let k = key(proto, [10, 0, 0, 10 + vm], 3000 + sport, [198, 19, 0, server], 80);
            match ct.lookup(&k) {
                Some((id, _)) => ct.update(id, Dir::Orig, ACK, now),
                None => {
                    let state = if tcp { State::SynSent } else { State::UdpUnreplied };
                    ct.setup_snat(k, NAT_IP, (3000, 3063), state, now).unwrap();
                }
            }
            let mut owner: HashMap<(u8, u16), (Ipv4Addr, u16)> = HashMap::new();
            for s in ct.iter() {
                let (id, dir) = ct.lookup(&s.inside).unwrap();
                prop_assert_eq!(dir, Dir::Orig);
                prop_assert_eq!(ct.lookup(&s.reply_key()), Some((id, Dir::Reply)));
                let inside = (s.inside.src, s.inside.sport);
                let prev = owner.insert((s.inside.proto, s.nat_port), inside);
                prop_assert!(prev.is_none() || prev == Some(inside), "port {} shared", s.nat_port);
            }
        }
    }
}

/// A table saving to a new session file at `path`, as worker 0 of 1;
/// with what the file there held before.
fn saving(path: &std::path::Path, max_sessions: u32) -> (Conntrack, Vec<Saved>, usize) {
    let mut ct = small(max_sessions);
    let writer = Writer {
        worker: 0,
        workers: 1,
    };
    let resumed = SessionFile::resume(path, max_sessions, writer).unwrap();
    ct.save_to(resumed.file);
    ct.session_file().unwrap().publish().unwrap();
    (ct, resumed.sessions, resumed.torn)
}

#[test]
fn sessions_saved_in_the_file_come_back_with_their_ports_and_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker-0.sessions");
    let (mut ct, none, _) = saving(&path, 64);
    assert!(none.is_empty());
    // A connection that got established, one that opened and closed, a
    // UDP flow whose port was taken already (so not preserved).
    let web = key(TCP, [10, 0, 0, 10], 40000, [198, 18, 0, 254], 80);
    let id = ct
        .setup_snat(web, NAT_IP, PORTS, State::SynSent, 0)
        .unwrap();
    ct.update(id, Dir::Reply, SYN | ACK, 1);
    ct.update(id, Dir::Orig, ACK, 1);
    let gone = key(TCP, [10, 0, 0, 11], 40001, [198, 18, 0, 254], 80);
    let gone_id = ct
        .setup_snat(gone, NAT_IP, PORTS, State::SynSent, 0)
        .unwrap();
    ct.update(gone_id, Dir::Reply, RST, 1);
    ct.expire(1_000, 64);
    let dns = key(UDP, [10, 0, 0, 12], 40000, [198, 18, 0, 53], 53);
    ct.setup_snat(dns, NAT_IP, PORTS, State::UdpUnreplied, 0)
        .unwrap();
    let before: Vec<Session> = ct.iter().copied().collect();
    assert_eq!(before.len(), 2);
    // The process dies: nothing is flushed, the file is all there is.
    drop(ct);

    let (mut ct, saved, torn) = saving(&path, 64);
    assert_eq!((saved.len(), torn), (2, 0));
    for s in &saved {
        ct.restore(s, s.allocated.then_some(PORTS), 5).unwrap();
    }
    for old in &before {
        let (id, _) = ct.lookup(&old.reply_key()).expect("reply key back");
        let s = ct.session(id).unwrap();
        assert_eq!(
            (s.inside, s.nat_port, s.state),
            (old.inside, old.nat_port, old.state)
        );
    }
    // The endpoint keeps its mapping; its port is not given to another.
    let web_again = FlowKey { dport: 443, ..web };
    let id = ct
        .setup_snat(web_again, NAT_IP, PORTS, State::SynSent, 5)
        .unwrap();
    assert_eq!(ct.session(id).unwrap().nat_port, 40000);
    let other = key(TCP, [10, 0, 0, 13], 40000, [198, 18, 0, 254], 80);
    let id = ct
        .setup_snat(other, NAT_IP, PORTS, State::SynSent, 5)
        .unwrap();
    assert_ne!(ct.session(id).unwrap().nat_port, 40000);
    // The same record twice is refused, not tracked twice.
    assert_eq!(
        ct.restore(&saved[0], Some(PORTS), 5),
        Err(RestoreError::Duplicate)
    );
    // And the new file holds what this table holds now.
    let live = ct.len();
    drop(ct);
    let (_, saved, _) = saving(&path, 64);
    assert_eq!(saved.len(), live);
}

#[test]
fn a_port_outside_the_workers_block_is_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker-0.sessions");
    let (mut ct, _, _) = saving(&path, 8);
    let k = key(UDP, [10, 0, 0, 10], 5000, [198, 18, 0, 53], 53);
    ct.setup_snat(k, NAT_IP, PORTS, State::UdpUnreplied, 0)
        .unwrap();
    drop(ct);
    let (mut ct, saved, _) = saving(&path, 8);
    let block = Some((20000, 30000));
    assert_eq!(
        ct.restore(&saved[0], block, 0),
        Err(RestoreError::PortTaken)
    );
    assert_eq!(ct.restore(&saved[0], None, 0), Err(RestoreError::PortTaken));
    assert!(ct.is_empty());
}

/// A tenant's saved sessions come back within its share: lowering its
/// limit before a restart (or forging records) cannot make it hold more.
#[test]
fn restored_sessions_stay_within_the_tenants_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker-0.sessions");
    let (mut ct, _, _) = saving(&path, 64);
    for port in 0..20 {
        let k = key(UDP, [10, 0, 0, 10], 5000 + port, [198, 19, 0, 1], 4500);
        ct.setup_snat(k, NAT_IP, PORTS, State::UdpUnreplied, 0)
            .unwrap();
    }
    drop(ct);
    let (mut ct, saved, _) = saving(&path, 64);
    ct.set_share_limits(vec![ShareLimits {
        sessions: Some(5),
        new_per_second: Some(u32::MAX),
        fragments: None,
    }]);
    let results: Vec<_> = saved
        .iter()
        .map(|s| ct.restore(s, Some(PORTS), 0))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    assert!(results
        .iter()
        .skip(5)
        .all(|r| *r == Err(RestoreError::Full)));
    assert_eq!(ct.sessions_of(0), 5);
    // The refused ones gave their ports back: another endpoint gets 5010.
    let k = key(UDP, [10, 0, 0, 11], 5010, [198, 19, 0, 1], 4500);
    ct.set_share_limits(vec![ShareLimits::default()]);
    let id = ct
        .setup_snat(k, NAT_IP, PORTS, State::UdpUnreplied, 0)
        .unwrap();
    assert_eq!(ct.session(id).unwrap().nat_port, 5010);
}
