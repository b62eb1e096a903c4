//! The xvr control plane. For now: the desired-state model (what a
//! controller or an operator's JSON file says should exist), its
//! validation, and building the data plane's immutable tables from it.
mod build;
mod mac;
mod model;
mod validate;

pub use mac::Mac;
pub use model::{
    AclRuleConfig, ConntrackConfig, Direction, FirewallRuleConfig, NatConfig, NeighborConfig,
    NetworkAclConfig, NextHopConfig, PortConfig, PortForwardConfig, Protocol, RemoteVmConfig,
    RouteConfig, RuleAction, RuleProtocol, SourceNatConfig, State, StaticNatConfig, TenantConfig,
    TimeoutsConfig, VtepConfig,
};
pub use validate::{ConfigError, ConfigErrors};
