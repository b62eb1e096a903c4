//! `trace`: a described packet run through the pipeline of the current
//! tables without sending it, as `ovs-appctl ofproto/trace` does: what
//! each stage decided, the final action, the events and the packet as it
//! would leave. The pipeline is a fresh one (no sessions), so the answer
//! is what a new flow gets.
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use serde_json::{json, Map, Value};
use std::net::Ipv4Addr;
use xvr_control::server::{optional_str, optional_u64, ApiError, ErrorCode};
use xvr_dataplane::frame::FRAME_SIZE;
use xvr_dataplane::pipeline::Meta;
use xvr_dataplane::table::{Location, PortRole, Tables};
use xvr_dataplane::{Frame, Pipeline, Verdict};

/// Runs the packet `request` describes: `port` (where it arrives), `src`,
/// `dst`, `protocol` (tcp, udp or icmp; default icmp echo), `sport` and
/// `dport` (default 40000 and 80), `ttl` (default 64).
pub fn trace(tables: &Tables, request: &Map<String, Value>) -> Result<Value, ApiError> {
    let port_name =
        optional_str(request, "port")?.ok_or_else(|| ApiError::bad_field("port", "missing"))?;
    let port = tables
        .port_by_name(port_name)
        .ok_or_else(|| ApiError::bad_field("port", format!("no port named {port_name:?}")))?;
    let address = |field: &str| -> Result<Ipv4Addr, ApiError> {
        let text =
            optional_str(request, field)?.ok_or_else(|| ApiError::bad_field(field, "missing"))?;
        text.parse()
            .map_err(|_| ApiError::bad_field(field, format!("{text:?} is not an IPv4 address")))
    };
    let (src, dst) = (address("src")?, address("dst")?);
    let number = |field: &str, default: u64, max: u64| {
        optional_u64(request, field, max).map(|n| n.unwrap_or(default))
    };
    let (sport, dport) = (
        number("sport", 40000, 65535)? as u16,
        number("dport", 80, 65535)? as u16,
    );
    let ttl = number("ttl", 64, 255)? as u8;
    // From a VM to its gateway, with the MAC of the VM that has `src` on
    // that port (port security checks it); on the uplink, to the
    // uplink's MAC.
    let found = tables.port(port).expect("found by name");
    let port_mac = found.mac.0;
    let vm_mac = found
        .tenant()
        .and_then(|t| tables.host(t, src))
        .filter(|h| h.location == Location::Local(port))
        .map_or([0x02, 0, 0, 0, 0, 0x01], |h| h.mac.0);
    let builder = PacketBuilder::ethernet2(vm_mac, port_mac).ipv4(src.octets(), dst.octets(), ttl);
    let mut packet = Vec::new();
    let written = match optional_str(request, "protocol")?.unwrap_or("icmp") {
        "tcp" => builder
            .tcp(sport, dport, 1, 64240)
            .syn()
            .write(&mut packet, &[]),
        "udp" => builder.udp(sport, dport).write(&mut packet, b"xvr trace"),
        "icmp" => builder
            .icmpv4_echo_request(sport, 1)
            .write(&mut packet, b"xvr trace"),
        other => {
            return Err(ApiError::bad_field(
                "protocol",
                format!("{other:?} is not tcp, udp or icmp"),
            ))
        }
    };
    written.map_err(|e| ApiError::new(ErrorCode::Internal, format!("building the packet: {e}")))?;

    let mut pipeline = Pipeline::new();
    let mut buffer = vec![0u8; FRAME_SIZE];
    let mut frame = Frame::with_data(&mut buffer, &packet, port);
    let mut steps = Vec::new();
    let mut last = frame.meta;
    pipeline.run_observed(tables, std::slice::from_mut(&mut frame), |stage, frames| {
        let meta = frames[0].meta;
        if meta != last {
            steps.push(step(tables, stage, &meta));
            last = meta;
        }
    });
    let events: Map<String, Value> = pipeline
        .stats
        .nonzero_events()
        .map(|(name, n)| (name.to_string(), n.into()))
        .collect();
    Ok(json!({
        "packet": describe(&packet),
        "steps": steps,
        "action": action(tables, frame.meta.verdict),
        "events": events,
        "output": match frame.meta.verdict {
            Verdict::Tx(_) => describe(frame.data()),
            _ => Value::Null,
        },
    }))
}

fn step(tables: &Tables, stage: &str, meta: &Meta) -> Value {
    let tenant = tables
        .tenants()
        .get(usize::from(meta.tenant))
        .filter(|t| !t.is_vacant())
        .map(|t| t.name.clone());
    json!({
        "stage": stage,
        "next": format!("{:?}", meta.stage),
        "tenant": tenant,
        "action": action(tables, meta.verdict),
    })
}

fn action(tables: &Tables, verdict: Verdict) -> Value {
    let port_name = |id| tables.port(id).map_or("?".to_string(), |p| p.name.clone());
    match verdict {
        Verdict::Pending => Value::Null,
        Verdict::Tx(port) => {
            let role = match tables.port(port).map(|p| &p.role) {
                Some(PortRole::Uplink { .. }) => "uplink",
                _ => "vm",
            };
            json!({ "tx": port_name(port), "port_role": role })
        }
        Verdict::Drop(reason) => json!({ "drop": reason.name() }),
        Verdict::Kernel => json!("to the kernel (not ours)"),
        Verdict::Local => json!("to the router's services (DHCP)"),
        Verdict::Handoff { to, .. } => json!({ "handoff_to_worker": to }),
    }
}

/// The addresses, ports and TTL of an Ethernet/IPv4 frame (the inner
/// packet too when it is VXLAN).
fn describe(frame: &[u8]) -> Value {
    let Ok(packet) = SlicedPacket::from_ethernet(frame) else {
        return json!({ "bytes": frame.len() });
    };
    let Some(NetSlice::Ipv4(ip)) = &packet.net else {
        return json!({ "bytes": frame.len() });
    };
    let h = ip.header();
    let (proto, ports) = match &packet.transport {
        Some(TransportSlice::Tcp(t)) => ("tcp", Some((t.source_port(), t.destination_port()))),
        Some(TransportSlice::Udp(u)) => ("udp", Some((u.source_port(), u.destination_port()))),
        Some(TransportSlice::Icmpv4(_)) => ("icmp", None),
        _ => ("other", None),
    };
    let mut out = json!({
        "src": Ipv4Addr::from(h.source()).to_string(),
        "dst": Ipv4Addr::from(h.destination()).to_string(),
        "protocol": proto,
        "ttl": h.ttl(),
        "bytes": frame.len(),
    });
    if let Some((s, d)) = ports {
        out["sport"] = s.into();
        out["dport"] = d.into();
        if proto == "udp" && d == 4789 {
            if let Some(inner) = frame.get(14 + h.ihl() as usize * 4 + 8 + 8..) {
                out["vxlan_inner"] = describe(inner);
            }
        }
    }
    out
}
