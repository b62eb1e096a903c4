//! Stable tenant identities. A tenant keeps its id (`TenantId`) from the
//! commit that adds it to the one that deletes it, whatever is added,
//! deleted or reordered around it: sessions, NAT mappings, fragments and
//! handed-off frames hold ids, so an id must never silently point at
//! another tenant. A deleted tenant's id is given out again only after
//! every never-used id is gone (oldest first), and the workers flush its
//! sessions as soon as they see tables without it.
use crate::{ConfigErrors, State};
use std::collections::{HashMap, VecDeque};
use xvr_dataplane::table::{Tables, TenantId, MAX_TENANTS};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantIds {
    by_name: HashMap<String, TenantId>,
    /// Ids of deleted tenants, oldest first.
    retired: VecDeque<TenantId>,
    /// Ids below this have been given out.
    used: usize,
}

impl TenantIds {
    /// The ids of running `tables` (ids that no tenant holds are retired).
    pub fn of(tables: &Tables) -> TenantIds {
        let mut ids = TenantIds {
            used: tables.tenants().len(),
            ..TenantIds::default()
        };
        for (id, tenant) in tables.tenants().iter().enumerate() {
            match tenant.is_vacant() {
                true => ids.retired.push_back(id as TenantId),
                false => {
                    ids.by_name.insert(tenant.name.clone(), id as TenantId);
                }
            }
        }
        ids
    }

    pub fn get(&self, name: &str) -> Option<TenantId> {
        self.by_name.get(name).copied()
    }

    /// The ids for `state`'s tenants: those that stay keep theirs, new
    /// ones take never-used ids first, then the oldest retired. Refused,
    /// naming `tenants`, when a host would hold more than `MAX_TENANTS`.
    pub fn next(&self, state: &State) -> Result<TenantIds, ConfigErrors> {
        let mut next = TenantIds {
            by_name: HashMap::new(),
            retired: self.retired.clone(),
            used: self.used,
        };
        for t in &state.tenants {
            if let Some(&id) = self.by_name.get(&t.name) {
                next.by_name.insert(t.name.clone(), id);
            }
        }
        next.retired.extend(
            self.by_name
                .iter()
                .filter(|(name, _)| !next.by_name.contains_key(*name))
                .map(|(_, &id)| id),
        );
        for t in &state.tenants {
            if next.by_name.contains_key(&t.name) {
                continue;
            }
            let id = if next.used < MAX_TENANTS {
                next.used += 1;
                (next.used - 1) as TenantId
            } else if let Some(id) = next.retired.pop_front() {
                id
            } else {
                return Err(ConfigErrors::single(
                    "tenants",
                    format!("a host holds at most {MAX_TENANTS} tenants"),
                ));
            };
            next.by_name.insert(t.name.clone(), id);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantConfig;

    fn state(names: &[&str]) -> State {
        let tenants = names
            .iter()
            .enumerate()
            .map(|(i, name)| TenantConfig {
                name: name.to_string(),
                vni: 1000 + i as u32,
                router_mac: None,
                egress_default: None,
                limits: Default::default(),
                dns: Default::default(),
            })
            .collect();
        State {
            tenants,
            ..State::default()
        }
    }

    #[test]
    fn tenants_keep_their_ids_whatever_moves_around_them() {
        let first = TenantIds::default().next(&state(&["a", "b", "c"])).unwrap();
        let ids = |t: &TenantIds| ["a", "b", "c", "d"].map(|n| t.get(n));
        assert_eq!(ids(&first), [Some(0), Some(1), Some(2), None]);
        // a deleted, the rest reordered, d added: d takes a fresh id, not a's.
        let second = first.next(&state(&["c", "d", "b"])).unwrap();
        assert_eq!(ids(&second), [None, Some(1), Some(2), Some(3)]);
        // The tables built so hold each tenant at its id; a's is vacant.
        let built = state(&["c", "d", "b"]).build_with(&second).unwrap();
        assert!(built.tenants()[0].is_vacant());
        assert_eq!(built.tenant_id("b"), Some(1));
        assert_eq!(TenantIds::of(&built), second);
    }

    #[test]
    fn retired_ids_come_back_only_when_fresh_ones_run_out_and_the_limit_is_named() {
        let mut ids = TenantIds {
            used: MAX_TENANTS - 1,
            ..TenantIds::default()
        };
        ids = ids.next(&state(&["a"])).unwrap();
        assert_eq!(ids.get("a"), Some((MAX_TENANTS - 1) as TenantId));
        ids = ids.next(&state(&[])).unwrap();
        ids = ids.next(&state(&["b"])).unwrap();
        assert_eq!(
            ids.get("b"),
            Some((MAX_TENANTS - 1) as TenantId),
            "a's, reused"
        );
        let full = ids.next(&state(&["b", "c"])).unwrap_err();
        assert!(full.to_string().contains("tenants"), "{full}");
        // Never the id the public side's sessions use.
        assert!(MAX_TENANTS - 1 < usize::from(xvr_dataplane::conntrack::PUBLIC));
    }
}
