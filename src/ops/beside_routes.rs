//! The commit of anything but routes: the state without its routes is
//! changed, validated and built, and each tenant's VRF carried over.
use super::route_commit::index_routes;
use super::{DaemonOps, Routes, Write};
use ipnet::Ipv4Net;
use serde_json::Value;
use std::collections::BTreeSet;
use xvr_control::change::{self, Change};
use xvr_control::server::{ApiError, ErrorCode};
use xvr_control::{NextHopConfig, State};
use xvr_dataplane::table::{Lpm, NextHop, TenantId};
use xvr_dataplane::Tables;

impl DaemonOps {
    /// A commit that changes no route: the state without its routes is
    /// changed, validated and built, and each tenant's VRF is carried over
    /// from the running tables (copy on write), with the connected subnets
    /// of VM ports added or removed applied to it. So adding a VM, a tier
    /// or a tenant next to a million routes costs what the rest of the
    /// state costs. None: the general path takes the commit (it changes
    /// routes, or makes some route invalid, which that path reports).
    pub(super) fn commit_beside_routes(
        &mut self,
        changes: &[Change],
        dry_run: bool,
        raw: &Value,
    ) -> Option<Result<Value, ApiError>> {
        if changes.iter().any(|c| c.table == "routes") {
            return None;
        }
        let routes = std::mem::take(&mut self.state.routes);
        let rest = self.state.clone();
        self.state.routes = routes;
        let new = match change::apply_changes(&rest, changes) {
            Ok(new) => new,
            Err(errors) => {
                return Some(Err(ApiError::new(ErrorCode::BadRequest, errors.join("; "))))
            }
        };
        if !self.routes_stay_valid(&rest, &new) {
            return None;
        }
        let changes = change::diff(&rest, &new);
        Some(self.build(&new).and_then(|(tables, ids)| {
            let vrfs = self.carried_vrfs(&rest, &new, &tables);
            let built = (tables.with_vrfs(vrfs), ids);
            self.make_current(
                new,
                built,
                changes,
                dry_run,
                Routes::Kept,
                Write::Changes(raw),
            )
        }))
    }

    /// Whether the running routes are still valid beside `new` (the state
    /// without routes that `old` becomes): their tenants are still there,
    /// and an uplink still reaches the internet if one needs it.
    fn routes_stay_valid(&self, old: &State, new: &State) -> bool {
        let names =
            |s: &State| -> BTreeSet<String> { s.tenants.iter().map(|t| t.name.clone()).collect() };
        let gone: BTreeSet<String> = names(old).difference(&names(new)).cloned().collect();
        let internet_lost = old.has_internet() && !new.has_internet();
        if gone.is_empty() && !internet_lost {
            return true;
        }
        !self.state.routes.iter().any(|r| {
            gone.contains(&r.tenant) || (internet_lost && r.next_hop == NextHopConfig::Internet)
        })
    }

    /// A VRF for each tenant of `tables` (built from `new`, without
    /// routes): the running one of the tenant of that name, with the
    /// connected subnets that came or went between `old` and `new`; a
    /// new tenant (no routes yet) keeps the one just built.
    fn carried_vrfs(&mut self, old: &State, new: &State, tables: &Tables) -> Vec<Lpm<NextHop>> {
        let running = self.tables.load();
        let (was, is) = (old.connected_subnets(), new.connected_subnets());
        let none = BTreeSet::new();
        let mut vrfs = Vec::new();
        for (id, tenant) in tables.tenants().iter().enumerate() {
            let Some(old_id) = running.tenant_id(&tenant.name) else {
                vrfs.push(tables.vrf(id as TenantId).cloned().unwrap_or_default());
                continue;
            };
            let mut vrf = running.vrf(old_id).cloned().unwrap_or_default();
            let name = tenant.name.as_str();
            let (before, after) = (
                was.get(name).unwrap_or(&none),
                is.get(name).unwrap_or(&none),
            );
            if before != after {
                // A route of the same prefix wins over a connected subnet.
                let routes = &self.state.routes;
                let index = self.routes.get_or_insert_with(|| index_routes(routes));
                let routed = |prefix: Ipv4Net| index.contains_key(&(tenant.name.clone(), prefix));
                for &prefix in before.difference(after).filter(|p| !routed(**p)) {
                    vrf.remove(prefix);
                }
                for &prefix in after.difference(before).filter(|p| !routed(**p)) {
                    vrf.insert(prefix, NextHop::Connected);
                }
            }
            vrfs.push(vrf);
        }
        vrfs
    }
}
