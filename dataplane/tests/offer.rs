//! What the workers offer the fast path (`pipeline::offer`), recorded by
//! a sink standing in for the steering program's map: a direction is
//! installed at its second packet, once; a closed session withdraws what
//! it installed; expiry keeps a session the fast path still forwards;
//! a flood of new flows installs at most `INSTALLS_PER_SECOND` a second.
mod common;

use common::*;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use xvr_dataplane::conntrack::{self, ShareLimits};
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::pipeline::INSTALLS_PER_SECOND;
use xvr_dataplane::table::{SourceNat, Tables, TenantLimits};
use xvr_dataplane::{ArrivingFlow, FlowOffload, Offer, Pipeline, Verdict};
use xvr_testkit::headers;

const PUBLIC_IP: [u8; 4] = [203, 0, 113, 10];
const SERVER: [u8; 4] = [198, 19, 0, 10];
const VM: [u8; 4] = [10, 0, 0, 10];

#[derive(Default)]
struct Record {
    installed: Vec<Offer>,
    withdrawn: Vec<ArrivingFlow>,
    /// What `idle_for` answers.
    idle: Option<u32>,
}

/// A sink whose record the test keeps a handle on.
struct Recorder(Arc<Mutex<Record>>);

impl FlowOffload for Recorder {
    fn install(&mut self, offer: &Offer) {
        self.0.lock().unwrap().installed.push(*offer);
    }
    fn withdraw(&mut self, flow: &ArrivingFlow) {
        self.0.lock().unwrap().withdrawn.push(*flow);
    }
    fn idle_for(&mut self, _: &ArrivingFlow) -> Option<u32> {
        self.0.lock().unwrap().idle
    }
}

/// Tenant A with source NAT, free to open sessions as fast as it can.
fn snat_tables() -> Tables {
    let mut b = builder();
    let snat = SourceNat {
        ip: PUBLIC_IP.into(),
        ports: (1024, 65535),
        filtering: Default::default(),
    };
    b.set_source_nat(TENANT_A, snat);
    let shares = ShareLimits {
        sessions: Some(SESSIONS),
        new_per_second: Some(u32::MAX),
        fragments: None,
    };
    let limits = TenantLimits {
        shares,
        ..TenantLimits::default()
    };
    b.set_tenant_limits(TENANT_A, limits);
    b.build()
}

const SESSIONS: u32 = 1 << 18;

fn recorded() -> (Pipeline, Arc<Mutex<Record>>) {
    let record = Arc::new(Mutex::new(Record::default()));
    let mut pipeline = Pipeline::with_conntrack(conntrack::Config {
        max_sessions: SESSIONS,
        ..conntrack::Config::default()
    });
    pipeline.offload = Some(Box::new(Recorder(record.clone())));
    (pipeline, record)
}

fn send(p: &mut Pipeline, t: &Tables, port: u16, frame: &[u8]) -> (Verdict, Vec<u8>) {
    MemoryIo::new().run_one(p, t, port, frame)
}

#[test]
fn a_direction_is_installed_at_its_second_packet_and_withdrawn_when_it_closes() {
    let t = snat_tables();
    let (mut p, record) = recorded();
    let out = headers(VM_A10_MAC, A1_MAC, VM, SERVER);
    send(&mut p, &t, A1, &out.tcp_syn(40000, 443));
    let back = headers(INTERNET_GW_MAC, UPLINK_MAC, SERVER, PUBLIC_IP);
    send(&mut p, &t, UP, &back.tcp_syn_ack(443, 40000));
    send(&mut p, &t, A1, &out.tcp_ack(40000, 443, b"first"));
    assert!(
        record.lock().unwrap().installed.is_empty(),
        "nothing before a direction's second established packet"
    );
    send(&mut p, &t, A1, &out.tcp_ack(40000, 443, b"second"));
    send(&mut p, &t, A1, &out.tcp_ack(40000, 443, b"third"));
    let installed = record.lock().unwrap().installed.clone();
    assert_eq!(installed.len(), 1, "once: {installed:?}");
    let offer = installed[0];
    assert_eq!(
        (
            offer.flow.port,
            offer.flow.src,
            offer.flow.sport,
            offer.out_port
        ),
        (A1, Ipv4Addr::from(VM), 40000, UP)
    );
    assert_eq!((offer.src, offer.sport), (Ipv4Addr::from(PUBLIC_IP), 40000));
    assert_eq!(offer.generation, t.generation());

    send(&mut p, &t, UP, &back.tcp_ack(443, 40000, b"a"));
    send(&mut p, &t, UP, &back.tcp_ack(443, 40000, b"b"));
    assert_eq!(record.lock().unwrap().installed.len(), 2, "the reply too");

    let (verdict, _) = send(&mut p, &t, A1, &out.tcp_fin(40000, 443));
    assert_eq!(verdict, Verdict::Tx(UP));
    let withdrawn = record.lock().unwrap().withdrawn.clone();
    assert_eq!(withdrawn.len(), 2, "both directions: {withdrawn:?}");
    assert!(withdrawn.iter().any(|f| f.port == A1 && f.sport == 40000));
    assert!(withdrawn.iter().any(|f| f.port == UP && f.dport == 40000));
}

#[test]
fn expiry_keeps_a_session_the_fast_path_still_forwards() {
    let t = snat_tables();
    let (mut p, record) = recorded();
    let out = headers(VM_A10_MAC, A1_MAC, VM, SERVER);
    for _ in 0..2 {
        send(&mut p, &t, A1, &out.udp(5000, 9999, b"x"));
    }
    assert_eq!(record.lock().unwrap().installed.len(), 1);
    let timeout = p.conntrack.config().timeouts.udp_unreplied;
    // The fast path forwarded it a second ago: it lives on.
    record.lock().unwrap().idle = Some(1);
    p.now = timeout + 5;
    send(
        &mut p,
        &t,
        A1,
        &headers(VM_A10_MAC, A1_MAC, VM, SERVER).udp(1, 2, b"tick"),
    );
    assert_eq!(p.conntrack.len(), 2, "kept, beside the tick's own session");
    assert!(record.lock().unwrap().withdrawn.is_empty());
    // Then nothing more: it expires, and its entry goes.
    record.lock().unwrap().idle = None;
    p.now = 3 * timeout;
    send(
        &mut p,
        &t,
        A2,
        &headers(VM_A110_MAC, A2_MAC, [10, 0, 1, 10], SERVER).udp(1, 2, b"t"),
    );
    let withdrawn = record.lock().unwrap().withdrawn.clone();
    assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
    assert_eq!((withdrawn[0].port, withdrawn[0].sport), (A1, 5000));
}

#[test]
fn a_flood_of_new_flows_installs_a_bounded_number_a_second() {
    let t = snat_tables();
    let (mut p, record) = recorded();
    let flows = INSTALLS_PER_SECOND as u16 / 1000 * 1000 + 2000;
    let out = headers(VM_A10_MAC, A1_MAC, VM, SERVER);
    let mut io = MemoryIo::new();
    for round in 0..2 {
        for port in 0..flows {
            io.run_one(
                &mut p,
                &t,
                A1,
                &out.udp(2000 + port % 60000, 9 + round, b"x"),
            );
            io.run_one(
                &mut p,
                &t,
                A1,
                &out.udp(2000 + port % 60000, 9 + round, b"x"),
            );
        }
    }
    let installed = record.lock().unwrap().installed.len();
    assert_eq!(installed as u32, INSTALLS_PER_SECOND, "within one second");
    p.now += 1;
    send(&mut p, &t, A1, &out.udp(1999, 9, b"x"));
    send(&mut p, &t, A1, &out.udp(1999, 9, b"x"));
    let installed = record.lock().unwrap().installed.len();
    assert_eq!(installed as u32, INSTALLS_PER_SECOND + 1, "the next second");
}

#[test]
fn new_tables_offer_offloaded_flows_again_and_closing_withdraws_every_entry() {
    let (t1, t2) = (snat_tables(), snat_tables());
    assert_ne!(t1.generation(), t2.generation());
    let (mut p, record) = recorded();
    let out = headers(VM_A10_MAC, A1_MAC, VM, SERVER);
    for _ in 0..3 {
        send(&mut p, &t1, A1, &out.udp(5000, 9999, b"x"));
    }
    assert_eq!(record.lock().unwrap().installed.len(), 1);
    // Under new tables the entry is inert: its second packet there
    // installs it again, with the new generation.
    send(&mut p, &t2, A1, &out.udp(5000, 9999, b"x"));
    assert_eq!(record.lock().unwrap().installed.len(), 1, "offered once");
    send(&mut p, &t2, A1, &out.udp(5000, 9999, b"x"));
    send(&mut p, &t2, A1, &out.udp(5000, 9999, b"x"));
    let installed = record.lock().unwrap().installed.clone();
    assert_eq!(installed.len(), 2, "{installed:?}");
    assert_eq!(installed[1].generation, t2.generation());
    // A tenant's flush (as a deletion does) withdraws it.
    p.conntrack.flush_zones(&[TENANT_A]);
    p.withdraw_closed(&t2);
    assert_eq!(record.lock().unwrap().withdrawn.len(), 1);
}
