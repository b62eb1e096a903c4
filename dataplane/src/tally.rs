//! Per-tenant traffic counters of one worker. Frames are counted by
//! tenant id; at each new generation the counts so far are moved under
//! the tenants' names, which is how they are read, and an id that a
//! tenant left is known as vacated.
pub use crate::counters::TenantCounters;
use crate::frame::Frame;
use crate::pipeline::Verdict;
use crate::table::{Tables, TenantId};
use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct TenantTally {
    /// The tenants of the tables being counted against, by id.
    names: Vec<String>,
    /// By tenant id of those tables.
    current: Vec<TenantCounters>,
    /// Counted against earlier tables, by name.
    earlier: HashMap<String, TenantCounters>,
}

impl TenantTally {
    /// The ids that held a tenant in the tables followed so far and hold
    /// none, or another, in `tables`: deleted tenants.
    pub fn vacated(&self, tables: &Tables) -> Vec<TenantId> {
        let tenants = tables.tenants();
        self.names
            .iter()
            .enumerate()
            .filter(|(id, name)| {
                !name.is_empty() && tenants.get(*id).is_none_or(|t| t.name != **name)
            })
            .map(|(id, _)| id as TenantId)
            .collect()
    }

    /// Counts against `tables` from now on. Tenants that are gone are
    /// forgotten.
    pub fn follow(&mut self, tables: &Tables) {
        for (name, counted) in self.names.iter().zip(&self.current) {
            self.earlier.entry(name.clone()).or_default().add(counted);
        }
        self.names = tables.tenants().iter().map(|t| t.name.clone()).collect();
        self.earlier.retain(|name, _| self.names.contains(name));
        self.current = vec![TenantCounters::default(); self.names.len()];
    }

    /// Counts a processed batch. A frame handed to another worker is
    /// counted there.
    #[inline]
    pub fn count(&mut self, frames: &[Frame<'_>]) {
        for meta in frames.iter().map(|f| &f.meta).filter(|m| m.classified) {
            let Some(counters) = self.current.get_mut(usize::from(meta.tenant)) else {
                continue;
            };
            match meta.verdict {
                Verdict::Tx(_) => counters.tx += 1,
                Verdict::Drop(_) => counters.dropped += 1,
                Verdict::Handoff { .. } => continue,
                Verdict::Kernel | Verdict::Pending | Verdict::Local => {}
            }
            counters.rx += 1;
        }
    }

    /// Every current tenant's counts, by name.
    pub fn totals(&self) -> Vec<(String, TenantCounters)> {
        self.names
            .iter()
            .zip(&self.current)
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, now)| {
                let mut total = self.earlier.get(name).copied().unwrap_or_default();
                total.add(now);
                (name.clone(), total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{TablesBuilder, Tenant};

    fn tables(names: &[&str]) -> Tables {
        let mut b = TablesBuilder::new();
        for (i, name) in names.iter().enumerate() {
            let vni = 100 + i as u32;
            b.add_tenant(Tenant::new(*name, vni, Tenant::default_router_mac(vni)));
        }
        b.build()
    }

    /// Counts one frame of tenant id `tenant` with `verdict`.
    fn count(tally: &mut TenantTally, tenant: u16, verdict: Verdict, classified: bool) {
        let mut buf = [0u8; 64];
        let mut frame = Frame::new(&mut buf, 0, 64, 0);
        frame.meta.tenant = tenant;
        frame.meta.classified = classified;
        frame.meta.verdict = verdict;
        tally.count(&[frame]);
    }

    #[test]
    fn counts_follow_tenants_by_name_across_generations() {
        let mut tally = TenantTally::default();
        tally.follow(&tables(&["a", "b"]));
        count(&mut tally, 0, Verdict::Tx(1), true);
        count(
            &mut tally,
            1,
            Verdict::Drop(crate::DropReason::NoRoute),
            true,
        );
        count(&mut tally, 1, Verdict::Tx(1), true);
        // Not classified (dropped before a tenant was known), handed to
        // another worker (counted there), or past the tenants: not counted.
        count(
            &mut tally,
            0,
            Verdict::Drop(crate::DropReason::EthTruncated),
            false,
        );
        count(
            &mut tally,
            0,
            Verdict::Handoff {
                to: 1,
                resume: crate::pipeline::Stage::L3,
            },
            true,
        );
        count(&mut tally, 7, Verdict::Tx(1), true);
        // "a" goes: "b" becomes id 0, "c" comes as id 1.
        tally.follow(&tables(&["b", "c"]));
        count(&mut tally, 0, Verdict::Tx(1), true);
        count(&mut tally, 1, Verdict::Kernel, true);
        let totals: HashMap<String, TenantCounters> = tally.totals().into_iter().collect();
        let counters = |rx, tx, dropped| TenantCounters { rx, tx, dropped };
        assert_eq!(totals.len(), 2, "{totals:?}");
        assert_eq!(totals["b"], counters(3, 2, 1));
        assert_eq!(totals["c"], counters(1, 0, 0));
    }
}
