//! The workers' flow offers (`xvr_dataplane::FlowOffload`), written into
//! the steering program's flow map. Each worker holds its own handle on
//! the map; which interface each port is comes from `FlowPorts`, which
//! `FastPathSync` keeps in step with the tables.
use arc_swap::ArcSwap;
use std::sync::Arc;
use xvr_dataplane::{Around, ArrivingFlow, FlowOffload, Offer};
use xvr_ebpf::{monotonic_ns, FlowAction, FlowKey, FlowKind, FlowTable};

/// Each port's interface index, by port id (None: no interface).
pub type FlowPorts = Arc<ArcSwap<Vec<Option<u32>>>>;

/// One worker's writer of offloaded flows.
pub struct BpfFlows {
    table: FlowTable,
    ports: FlowPorts,
}

impl BpfFlows {
    pub fn new(table: FlowTable, ports: FlowPorts) -> BpfFlows {
        BpfFlows { table, ports }
    }

    fn key(&self, flow: &ArrivingFlow) -> Option<FlowKey> {
        let ifindex = self.ifindex(flow.port)?;
        Some(FlowKey {
            ifindex,
            overlay: flow.overlay,
            proto: flow.proto,
            src: flow.src,
            dst: flow.dst,
            sport: flow.sport,
            dport: flow.dport,
        })
    }

    fn ifindex(&self, port: u16) -> Option<u32> {
        self.ports.load().get(usize::from(port)).copied().flatten()
    }
}

impl FlowOffload for BpfFlows {
    fn install(&mut self, offer: &Offer) {
        let (Some(key), Some(out_ifindex)) = (self.key(&offer.flow), self.ifindex(offer.out_port))
        else {
            return;
        };
        let action = FlowAction {
            generation: offer.generation,
            out_ifindex,
            in_macs: offer.in_macs,
            out_macs: offer.out_macs,
            src: offer.src,
            dst: offer.dst,
            sport: offer.sport,
            dport: offer.dport,
            ttl_dec: true,
            kind: match offer.around {
                Around::Nothing => FlowKind::Plain,
                Around::Encap(outer) => FlowKind::Encap { outer },
                Around::Decap { vtep } => FlowKind::Decap {
                    vtep,
                    vni: offer.flow.overlay.unwrap_or(0),
                },
            },
            max_ip_len: offer.max_ip_len,
        };
        // A failed write leaves the flow with the workers, which is
        // always correct; the map is LRU, so it is never full.
        let _ = self.table.install(&key, &action);
    }

    fn withdraw(&mut self, flow: &ArrivingFlow) {
        if let Some(key) = self.key(flow) {
            let _ = self.table.remove(&key);
        }
    }

    fn idle_for(&mut self, flow: &ArrivingFlow) -> Option<u32> {
        let used = self.table.usage(&self.key(flow)?).ok()??;
        if used.last_seen_ns == 0 {
            return None;
        }
        let idle = monotonic_ns().saturating_sub(used.last_seen_ns) / 1_000_000_000;
        Some(u32::try_from(idle).unwrap_or(u32::MAX))
    }
}
