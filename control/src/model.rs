//! The desired state, as a controller sends it and as `state.json` holds it.
use crate::Mac;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// VMs on local ports.
    #[serde(default)]
    pub neighbors: Vec<NeighborConfig>,
    /// Remote VTEPs on the underlay.
    #[serde(default)]
    pub vteps: Vec<VtepConfig>,
    /// VMs behind remote VTEPs.
    #[serde(default)]
    pub remote_vms: Vec<RemoteVmConfig>,
    /// Public addresses and how tenants' traffic is translated to them.
    #[serde(default, skip_serializing_if = "NatConfig::is_empty")]
    pub nat: NatConfig,
    /// Connection tracking limits and timeouts, per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ConntrackConfig>,
    /// Firewall rules, in order per tenant and direction: the first that
    /// matches a session's first packet decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall: Vec<FirewallRuleConfig>,
    /// Network ACLs of tiers (subnets) inside tenants, as CloudStack's VPC
    /// ACL lists: ordered rules for traffic into and out of the tier,
    /// default deny, applied to routed traffic (between tiers too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_acls: Vec<NetworkAclConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAclConfig {
    pub tenant: String,
    /// The tier's subnet.
    pub tier: Ipv4Net,
    /// In order: the first that matches a flow's first packet decides;
    /// nothing matches, denied. `ingress`: into the tier (from other
    /// tiers and the internet), `egress`: out of it.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// A rule: its direction, action and what it matches. A tier's ACL
/// rules are these; a firewall rule adds its tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub direction: Direction,
    pub action: RuleAction,
    #[serde(default = "any_protocol")]
    pub protocol: RuleProtocol,
    /// Default 0.0.0.0/0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Ipv4Net>,
    /// Default 0.0.0.0/0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Ipv4Net>,
    /// Destination ports (TCP and UDP only); default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<[u16; 2]>,
    /// ICMP only; default any type (and code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
}

impl FirewallRuleConfig {
    /// The rule without its tenant (what validation and the classifier
    /// take, as for a tier's ACL rules).
    pub fn rule(&self) -> RuleConfig {
        RuleConfig {
            direction: self.direction,
            action: self.action,
            protocol: self.protocol,
            source: self.source,
            destination: self.destination,
            ports: self.ports,
            icmp_type: self.icmp_type,
            icmp_code: self.icmp_code,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the internet toward the tenant's public addresses (denied
    /// unless a rule allows).
    Ingress,
    /// From the tenant's VMs to the internet (allowed unless the tenant's
    /// `egress_default` is deny).
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleProtocol {
    Any,
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallRuleConfig {
    pub tenant: String,
    pub direction: Direction,
    pub action: RuleAction,
    #[serde(default = "any_protocol")]
    pub protocol: RuleProtocol,
    /// Default 0.0.0.0/0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Ipv4Net>,
    /// Default 0.0.0.0/0. For ingress, the public address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Ipv4Net>,
    /// Destination ports (TCP and UDP only); default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<[u16; 2]>,
    /// ICMP only; default any type (and code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
}

fn any_protocol() -> RuleProtocol {
    RuleProtocol::Any
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatConfig {
    /// Source NAT: a tenant's traffic to the internet leaves from its
    /// public address (CloudStack's source NAT IP).
    #[serde(default)]
    pub source: Vec<SourceNatConfig>,
    /// 1:1 NAT: a public address that is one VM's, every port, both ways.
    #[serde(default, rename = "static", skip_serializing_if = "Vec::is_empty")]
    pub static_nat: Vec<StaticNatConfig>,
    /// A public address's port (or range) leads to a VM's port (or range).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_forwards: Vec<PortForwardConfig>,
}

impl NatConfig {
    pub fn is_empty(&self) -> bool {
        self.source.is_empty() && self.static_nat.is_empty() && self.port_forwards.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNatConfig {
    pub tenant: String,
    pub public_ip: Ipv4Addr,
    pub vm_ip: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForwardConfig {
    pub tenant: String,
    pub public_ip: Ipv4Addr,
    pub protocol: Protocol,
    /// First and last public port.
    pub public_ports: [u16; 2],
    pub vm_ip: Ipv4Addr,
    /// First and last VM port; a range as long as `public_ports`.
    pub vm_ports: [u16; 2],
}

/// Public ports allocated when none is given.
pub const DEFAULT_NAT_PORTS: [u16; 2] = [1024, 65535];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceNatConfig {
    pub tenant: String,
    pub public_ip: Ipv4Addr,
    /// First and last public port, default [1024, 65535].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<[u16; 2]>,
    /// Which packets from the internet reach an inside endpoint through
    /// its mapping (RFC 4787 section 5); default
    /// `address_and_port_dependent` (replies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtering: Option<FilteringConfig>,
}

/// `xvr_dataplane::table::Filtering`, as the state spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilteringConfig {
    EndpointIndependent,
    AddressDependent,
    #[default]
    AddressAndPortDependent,
}

impl From<FilteringConfig> for xvr_dataplane::table::Filtering {
    fn from(f: FilteringConfig) -> Self {
        use xvr_dataplane::table::Filtering;
        match f {
            FilteringConfig::EndpointIndependent => Filtering::EndpointIndependent,
            FilteringConfig::AddressDependent => Filtering::AddressDependent,
            FilteringConfig::AddressAndPortDependent => Filtering::AddressAndPortDependent,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackConfig {
    /// Sessions per worker (default 65536); beyond it new flows are
    /// dropped and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    /// Seconds without traffic before a session in each state dies;
    /// unset states keep the defaults (`Timeouts::default`: the NAT RFCs'
    /// minimums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    pub tcp_syn_sent: Option<u32>,
    pub tcp_syn_recv: Option<u32>,
    pub tcp_established: Option<u32>,
    pub tcp_fin_wait: Option<u32>,
    pub tcp_close_wait: Option<u32>,
    pub tcp_time_wait: Option<u32>,
    pub tcp_closed: Option<u32>,
    pub udp_unreplied: Option<u32>,
    pub udp_replied: Option<u32>,
    pub udp_well_known: Option<u32>,
    pub icmp: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// VXLAN network identifier, 1..=16777215, unique.
    pub vni: u32,
    /// Router MAC toward the overlay; by default derived from the VNI, so
    /// every host agrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_mac: Option<Mac>,
    /// What egress traffic no firewall rule matches gets (default allow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_default: Option<RuleAction>,
    /// The tenant's fair shares of each worker (unset: the defaults).
    #[serde(default, skip_serializing_if = "LimitsConfig::is_default")]
    pub limits: LimitsConfig,
    /// Its DNS service on its gateway addresses.
    #[serde(default, skip_serializing_if = "DnsConfig::is_default")]
    pub dns: DnsConfig,
}

/// A tenant's DNS service: authoritative for its VMs' names, a caching
/// forwarder for the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// The domain of its VMs' `hostname`s (default `TENANT.internal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Resolvers asked for other names, from the tenant's public side
    /// (through its source NAT); none: such names get REFUSED.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Ipv4Addr>,
}

impl DnsConfig {
    pub fn is_default(&self) -> bool {
        *self == DnsConfig::default()
    }
}

/// A tenant's fair shares, per worker; each unset one has its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Live sessions (default: a quarter of the worker's `max_sessions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u32>,
    /// New sessions a second (default 20,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_sessions_per_second: Option<u32>,
    /// Packets in reassembly, whose later fragments are awaited (default
    /// 1,024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragments: Option<u32>,
    /// ICMP errors sent for the tenant a second (default 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_errors_per_second: Option<u32>,
    /// ARP replies sent for the tenant a second (default 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_replies_per_second: Option<u32>,
    /// Requests to the router's services (DHCP, DNS, metadata) the
    /// tenant's VMs may have answered a second, together (default 5,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_requests_per_second: Option<u32>,
    /// The same for each of its ports (default 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_requests_per_port_second: Option<u32>,
}

impl LimitsConfig {
    pub fn is_default(&self) -> bool {
        *self == LimitsConfig::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case", deny_unknown_fields)]
pub enum PortConfig {
    /// The underlay port; `ip` is the local VTEP address.
    Uplink {
        name: String,
        mac: Mac,
        ip: Ipv4Addr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        internet_gateway_mac: Option<Mac>,
        /// The underlay's IPv4 MTU (default: the interface's when xvrd
        /// runs, else 1500). Encapsulation adds 50 bytes, so VMs get
        /// `mtu - 50`; bigger packets get "fragmentation needed".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u16>,
    },
    /// The router's side of a VM's interface; `gateway` is the router's
    /// address and the subnet on it, e.g. `10.0.0.1/24`.
    Vm {
        name: String,
        mac: Mac,
        tenant: String,
        gateway: Ipv4Net,
        /// Port security (default on): the port takes frames only from
        /// its VMs (`neighbors` on it): their MAC, their address or an
        /// allowed one, ARP naming them. `false` takes any source.
        #[serde(default = "on", skip_serializing_if = "is_on")]
        port_security: bool,
    },
}

fn on() -> bool {
    true
}

fn is_on(value: &bool) -> bool {
    *value
}

/// Linux's default MTU, used when a port gives none.
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest uplink MTU: VMs must still get the IPv4 minimum of 576 bytes
/// once 50 bytes of VXLAN are taken off.
pub const MIN_UPLINK_MTU: u16 = 626;
/// Largest uplink MTU (jumbo frames).
pub const MAX_UPLINK_MTU: u16 = 9216;

impl PortConfig {
    pub fn name(&self) -> &str {
        match self {
            PortConfig::Uplink { name, .. } | PortConfig::Vm { name, .. } => name,
        }
    }

    pub fn mac(&self) -> Mac {
        match self {
            PortConfig::Uplink { mac, .. } | PortConfig::Vm { mac, .. } => *mac,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub tenant: String,
    pub prefix: Ipv4Net,
    pub next_hop: NextHopConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextHopConfig {
    /// Hosts of the tenant (local or remote VMs).
    Connected,
    /// A VM of the tenant that routes further.
    Via(Ipv4Addr),
    /// The internet gateway on the uplink.
    Internet,
    Blackhole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    pub tenant: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub port: String,
    /// Other source addresses the VM may send from, as prefixes (allowed
    /// address pairs: `10.0.0.50/32` for a VRRP address that moves
    /// between VMs, `10.5.0.0/16` for the networks a router VM forwards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_addresses: Vec<Ipv4Net>,
    /// The VM's host name, as DHCP gives it (a DNS label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// What the metadata service tells the VM about itself.
    #[serde(default, skip_serializing_if = "MetadataConfig::is_default")]
    pub metadata: MetadataConfig,
}

/// A VM's metadata, served to it alone at 169.254.169.254.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// Its id in the cloud (`i-0001`, a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// User data for cloud-init, as text (32 KiB at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// SSH public keys, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
}

impl MetadataConfig {
    pub fn is_default(&self) -> bool {
        *self == MetadataConfig::default()
    }
}

pub use xvr_dataplane::service::metadata::MAX_USER_DATA;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtepConfig {
    pub ip: Ipv4Addr,
    /// Underlay next-hop MAC toward this VTEP.
    pub mac: Mac,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteVmConfig {
    pub tenant: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub vtep: Ipv4Addr,
    /// Its host name, which this host's DNS answers too (a DNS label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl State {
    /// Parses the JSON file format. Unknown fields are errors, so a typo
    /// never silently drops a setting.
    pub fn from_json(text: &str) -> Result<State, crate::ConfigErrors> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| crate::ConfigErrors::single("", e.to_string()))?;
        State::from_value(&value)
    }

    /// The state `value` holds, in the shapes the documentation gives:
    /// an object wherever one belongs, prefixes as they read back.
    pub fn from_value(value: &serde_json::Value) -> Result<State, crate::ConfigErrors> {
        if !value.is_object() {
            return Err(crate::ConfigErrors::single("", "a state is a JSON object"));
        }
        let state = State::deserialize(value)
            .map_err(|e| crate::ConfigErrors::single("", e.to_string()))?;
        let read_back = serde_json::to_value(&state).expect("state serializes");
        let mismatches = crate::shape::mismatches(value, &read_back);
        match mismatches.is_empty() {
            true => Ok(state),
            false => Err(crate::ConfigErrors(mismatches)),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("state serializes")
    }
}
