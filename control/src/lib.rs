//! The xvr control plane: the desired-state model (what a controller or
//! an operator's JSON file says should exist), its validation, building
//! the data plane's immutable tables from it, and the control socket
//! server (`server`).
mod build;
pub mod change;
mod ids;
mod mac;
mod model;
pub mod schema;
pub mod server;
mod shape;
mod validate;

pub use ids::TenantIds;
pub use mac::Mac;
pub use model::{
    ConntrackConfig, Direction, DnsConfig, FilteringConfig, FirewallRuleConfig, LimitsConfig,
    MetadataConfig, NatConfig, NeighborConfig, NetworkAclConfig, NextHopConfig, PortConfig,
    PortForwardConfig, Protocol, RemoteVmConfig, RouteConfig, RuleAction, RuleConfig, RuleProtocol,
    SourceNatConfig, State, StaticNatConfig, TenantConfig, TimeoutsConfig, VtepConfig,
    MAX_UPLINK_MTU, MAX_USER_DATA, MIN_UPLINK_MTU,
};
pub use validate::{ConfigError, ConfigErrors};
