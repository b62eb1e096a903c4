//! Per-worker counters: one per drop reason and one per event, plain
//! integers with no sharing, summed by whoever reads them.

/// Declares an enum whose variants each have a stable snake_case name, and
/// the list of all of them (stats dumps iterate over it).
macro_rules! named_counters {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }
    };
}

named_counters! {
    /// Why a frame was dropped. Every drop has exactly one.
    DropReason {
        PortUnknown = "port_unknown",
        EthTruncated = "eth_truncated",
        VlanUnsupported = "vlan_unsupported",
        EthertypeUnsupported = "ethertype_unsupported",
        Ipv4Truncated = "ipv4_truncated",
        Ipv4BadVersion = "ipv4_bad_version",
        Ipv4BadIhl = "ipv4_bad_ihl",
        Ipv4BadLength = "ipv4_bad_length",
        Ipv4BadChecksum = "ipv4_bad_checksum",
        UdpBadLength = "udp_bad_length",
        /// Outer UDP of VXLAN with a checksum that is not 0 and wrong.
        UdpBadChecksum = "udp_bad_checksum",
        VxlanFragmented = "vxlan_fragmented",
        VxlanTruncated = "vxlan_truncated",
        VxlanBadFlags = "vxlan_bad_flags",
        VxlanUnknownVni = "vxlan_unknown_vni",
        VxlanUnknownVtep = "vxlan_unknown_vtep",
        ArpMalformed = "arp_malformed",
        ArpNotOurs = "arp_not_ours",
        L2Broadcast = "l2_broadcast_unsupported",
        L2UnknownUnicast = "l2_unknown_unicast",
        SplitHorizon = "overlay_split_horizon",
        IcmpMalformed = "icmp_malformed",
        GatewayProtoUnsupported = "gateway_proto_unsupported",
        TtlExceeded = "ttl_exceeded",
        NoRoute = "no_route",
        Blackhole = "blackhole",
        HostUnknown = "host_unknown",
        NoInternetGateway = "no_internet_gateway",
        NoUplink = "no_uplink",
        NoHeadroom = "no_headroom",
        MtuExceeded = "mtu_exceeded",
        L4Truncated = "l4_truncated",
        /// A later fragment whose first fragment was not seen (or too long ago).
        NatFragment = "nat_fragment_without_first",
        NatFragmentTableFull = "nat_fragment_table_full",
        NatUnsupported = "nat_unsupported_protocol",
        NatNoSession = "nat_no_session",
        /// To a source-NAT mapping, from an address (or address and port)
        /// its endpoint has not sent to, as its tenant's filtering asks.
        NatFiltered = "nat_filtered",
        NatNoPublicAddress = "nat_no_public_address",
        NatPortsExhausted = "nat_ports_exhausted",
        ConntrackFull = "conntrack_full",
        FirewallIngressDenied = "firewall_ingress_denied",
        FirewallEgressDenied = "firewall_egress_denied",
        AclIngressDenied = "acl_ingress_denied",
        AclEgressDenied = "acl_egress_denied",
        /// A later fragment of a flow between tiers whose first was not seen.
        AclFragment = "acl_fragment_without_first",
        /// Its flow's owner (the worker of its NAT session or tier-ACL
        /// pair) is another worker, whose mailbox had no empty parcel.
        HandoffFull = "handoff_full",
        /// From a VM port, with a source MAC that is no VM of that port.
        PortSecurityMac = "port_security_mac",
        /// From a VM port, IPv4 from an address that is not the VM's.
        PortSecurityIp = "port_security_ip",
        /// From a VM port, ARP whose sender is not the VM.
        PortSecurityArp = "port_security_arp",
        /// Bridged toward a VM of another tier (tiers are routed).
        L2CrossTier = "l2_cross_tier",
        /// VXLAN from a VTEP that hosts no VM of the VNI's tenant.
        VxlanNotMember = "vxlan_vtep_not_member",
        /// VXLAN whose inner source is no VM behind the sending VTEP.
        VxlanInnerSource = "vxlan_inner_source",
        /// From the overlay, routed anywhere but to a VM of this host.
        OverlayNotLocal = "overlay_dst_not_local",
        /// Its tenant holds its share of this worker's sessions.
        TenantSessionLimit = "tenant_session_limit",
        /// Its tenant opened its share of new sessions this second.
        TenantSessionRate = "tenant_session_rate",
        /// Its tenant has its share of packets in reassembly.
        TenantFragmentLimit = "tenant_fragment_limit",
        /// An ICMP error over its tenant's share of errors this second.
        IcmpErrorRateLimited = "icmp_error_rate_limited",
        /// An ARP reply over its tenant's share of replies this second.
        ArpReplyRateLimited = "arp_reply_rate_limited",
        /// A tenant's packet toward the host's own networks (the underlay)
        /// through the internet route, which no tenant route names.
        UnderlayGuard = "underlay_guard",
        /// Its batch panicked in the pipeline (`worker::contain`).
        WorkerPanic = "worker_panic",
        /// Too big for the overlay, without DF, and the worker's room for
        /// later fragments was full this batch.
        FragmentBacklog = "fragment_backlog",
        /// Names a tenant or VTEP that this worker's tables do not hold
        /// (handed over by a worker already on a newer commit).
        StaleTables = "stale_tables",
        /// For the router's services, over its port's share of requests
        /// this second.
        ServiceRateLimited = "service_rate_limited",
        /// For the router's services, whose mailbox was full.
        ServiceBusy = "service_busy",
        /// For the router's services, where none run (replay, a bare
        /// pipeline).
        NoService = "service_unavailable",
    }
}

named_counters! {
    /// Things the pipeline did, beyond forwarding.
    Event {
        Decap = "vxlan_decap",
        Encap = "vxlan_encap",
        Bridged = "bridged",
        Routed = "routed",
        ArpReply = "arp_reply",
        IcmpEchoReply = "icmp_echo_reply",
        IcmpErrorSent = "icmp_error_sent",
        ToKernel = "to_kernel",
        ChecksumFinished = "checksum_finished",
        SessionNew = "session_new",
        SessionExpired = "session_expired",
        Snat = "nat_out",
        Unsnat = "nat_in",
        Dnat = "dnat_session_new",
        /// A VM's packet to its tenant's own public address, turned back in.
        Hairpin = "nat_hairpin",
        /// Sent by the NAT shortcut (`pipeline::nat::shortcut`).
        NatShortcut = "nat_shortcut",
        /// Handed to the worker that owns its flow (NAT session or
        /// tier-ACL pair).
        HandedOff = "handed_off",
        /// An inner packet too big for the overlay, cut into fragments
        /// before encapsulation.
        Fragmented = "fragmented_for_overlay",
        /// A request to the router's own services (DHCP).
        ToService = "to_service",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub drops: [u64; DropReason::COUNT],
    pub events: [u64; Event::COUNT],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            drops: [0; DropReason::COUNT],
            events: [0; Event::COUNT],
        }
    }
}

impl Stats {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        if let Some(count) = self.drops.get_mut(reason as usize) {
            *count += 1;
        }
    }

    #[inline]
    pub fn event(&mut self, event: Event) {
        if let Some(count) = self.events.get_mut(event as usize) {
            *count += 1;
        }
    }

    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }

    pub fn events_of(&self, event: Event) -> u64 {
        self.events.get(event as usize).copied().unwrap_or(0)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another worker's counters into these.
    pub fn add(&mut self, other: &Stats) {
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        for (a, b) in self.events.iter_mut().zip(other.events.iter()) {
            *a += b;
        }
    }

    /// Non-zero drop counters by name, in declaration order.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.drops_of(*r)))
            .filter(|(_, n)| *n > 0)
    }

    /// Non-zero event counters by name, in declaration order.
    pub fn nonzero_events(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Event::ALL
            .iter()
            .map(|e| (e.name(), self.events_of(*e)))
            .filter(|(_, n)| *n > 0)
    }
}
