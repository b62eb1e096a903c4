//! Network ACLs per tier (CloudStack's VPC network ACL lists): a tier is
//! a subnet of a tenant; its ACL holds ordered rules for traffic entering
//! the tier (ingress) and leaving it (egress), and denies what no rule
//! allows. They apply where the router stands between tiers: routed
//! traffic, between tiers and to or from the internet.
use super::firewall::{Action, RuleSet};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

#[derive(Debug, Clone)]
pub struct TierAcl {
    pub tier: Ipv4Net,
    /// Into the tier, default deny.
    pub ingress: RuleSet,
    /// Out of the tier, default deny.
    pub egress: RuleSet,
}

impl TierAcl {
    pub fn new(tier: Ipv4Net, ingress: Vec<super::Rule>, egress: Vec<super::Rule>) -> TierAcl {
        TierAcl {
            tier,
            ingress: RuleSet::new(ingress, Action::Deny),
            egress: RuleSet::new(egress, Action::Deny),
        }
    }
}

/// A tenant's tiers with ACLs. Few per tenant, so a scan, most specific
/// first.
#[derive(Debug, Clone, Default)]
pub struct TenantAcls {
    tiers: Vec<TierAcl>,
}

impl TenantAcls {
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    pub fn insert(&mut self, acl: TierAcl) {
        self.tiers.retain(|t| t.tier != acl.tier);
        self.tiers.push(acl);
        self.tiers
            .sort_by_key(|t| std::cmp::Reverse(t.tier.prefix_len()));
    }

    /// The ACL of the tier that holds `ip`, if it has one.
    #[inline]
    pub fn of(&self, ip: Ipv4Addr) -> Option<&TierAcl> {
        self.tiers.iter().find(|t| t.tier.contains(&ip))
    }
}
