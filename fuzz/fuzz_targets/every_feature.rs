#![no_main]
//! Frames against a state with every feature on (`every-feature.json`:
//! two tiers with an ACL, firewall rules, source and static NAT, a port
//! forward, allowed addresses, a port without port security, tenant
//! limits, a remote VTEP), on two workers that hand flows to each
//! other's sessions. The first byte picks the worker and the port; the
//! rest is one or more frames, split at each 0xff byte, so sessions
//! opened by earlier frames meet later ones. No batch may panic (a caught
//! panic still fails: `panics` must stay 0).
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use xvr_dataplane::handoff::Handoff;
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::pipeline::owner::Workers;
use xvr_dataplane::worker::Worker;
use xvr_dataplane::{Pipeline, Tables};

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let state = include_str!("../every-feature.json");
        xvr_control::State::from_json(state).unwrap().build().unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let tables = tables();
    let mut handoffs = Handoff::all(2).unwrap();
    let mut workers: Vec<Worker<MemoryIo>> = Workers::all(2)
        .into_iter()
        .map(|view| {
            let mut p = Pipeline::new();
            p.workers = view;
            Worker::with_pipeline(MemoryIo::new(), p).with_handoff(handoffs.remove(0))
        })
        .collect();
    let at = usize::from(pick & 1);
    let port = u16::from(pick >> 1) % tables.ports().len() as u16;
    for frame in rest.split(|&b| b == 0xff).filter(|f| !f.is_empty()) {
        workers[at].io.push(port, frame);
        while workers.iter_mut().map(|w| w.poll(tables)).sum::<usize>() > 0 {}
    }
    for w in &workers {
        assert_eq!(w.counters.panics, 0, "a batch panicked");
    }
});
