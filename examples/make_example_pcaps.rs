//! Writes the demo's input captures for `examples/two-tenants.json` into
//! `examples/pcaps/` (or the directory given as the first argument).
//! `cargo run --example make_example_pcaps`; a test keeps the shipped
//! files equal to what this writes.
use std::path::Path;
use xvr_testkit::{arp_request as arp, headers, Mac};

const UPLINK: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const VTEP2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const ACME_WEB_PORT: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const GLOBEX_WEB_PORT: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x01];
const ACME_WEB: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x10];
const ACME_REMOTE: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x20];
const GLOBEX_WEB: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 0x10];
const GLOBEX_REMOTE: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 0x20];
const INTERNET_GW: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const ACME_PUBLIC: [u8; 4] = [203, 0, 113, 10];

fn udp(src_mac: Mac, dst_mac: Mac, src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    headers(src_mac, dst_mac, src, dst)
        .ttl(ttl)
        .udp(33434, 5001, payload)
}

fn tcp_syn(src_mac: Mac, dst_mac: Mac, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    headers(src_mac, dst_mac, src, dst).tcp_syn(41000, 443)
}

fn ping(src_mac: Mac, dst_mac: Mac, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    headers(src_mac, dst_mac, src, dst).ping(7, 1, b"xvr demo ping")
}

fn vxlan(vni: u32, flags: u8, inner: &[u8]) -> Vec<u8> {
    headers(VTEP2, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]).vxlan(50123, vni, flags, inner)
}

/// The frames of each input capture, by port name.
pub fn captures() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let acme_web = vec![
        arp(ACME_WEB, [10, 0, 0, 10], [10, 0, 0, 1]),
        ping(ACME_WEB, ACME_WEB_PORT, [10, 0, 0, 10], [10, 0, 0, 1]),
        arp(ACME_WEB, [10, 0, 0, 10], [10, 0, 0, 20]),
        udp(
            ACME_WEB,
            ACME_REMOTE,
            [10, 0, 0, 10],
            [10, 0, 0, 20],
            64,
            b"acme web -> remote acme vm",
        ),
        udp(
            ACME_WEB,
            ACME_WEB_PORT,
            [10, 0, 0, 10],
            [10, 0, 1, 10],
            64,
            b"acme web -> acme db",
        ),
        tcp_syn(ACME_WEB, ACME_WEB_PORT, [10, 0, 0, 10], [198, 19, 0, 80]),
        udp(
            ACME_WEB,
            ACME_WEB_PORT,
            [10, 0, 0, 10],
            [10, 0, 1, 10],
            1,
            b"traceroute probe",
        ),
        udp(
            ACME_WEB,
            ACME_WEB_PORT,
            [10, 0, 0, 10],
            [10, 9, 0, 1],
            64,
            b"to the blackhole",
        ),
        udp(
            ACME_WEB,
            ACME_WEB_PORT,
            [10, 0, 0, 10],
            [10, 0, 1, 99],
            64,
            b"to nobody",
        ),
    ];
    let globex_web = vec![
        arp(GLOBEX_WEB, [10, 0, 0, 10], [10, 0, 0, 20]),
        ping(GLOBEX_WEB, GLOBEX_REMOTE, [10, 0, 0, 10], [10, 0, 0, 20]),
        udp(
            GLOBEX_WEB,
            GLOBEX_WEB_PORT,
            [10, 0, 0, 10],
            [198, 19, 0, 80],
            64,
            b"globex has no internet route",
        ),
    ];
    let up0 = vec![
        vxlan(
            1001,
            0x08,
            &udp(
                ACME_REMOTE,
                ACME_WEB,
                [10, 0, 0, 20],
                [10, 0, 0, 10],
                64,
                b"remote acme -> acme web",
            ),
        ),
        vxlan(
            1002,
            0x08,
            &ping(GLOBEX_REMOTE, GLOBEX_WEB, [10, 0, 0, 20], [10, 0, 0, 10]),
        ),
        vxlan(
            4242,
            0x08,
            &udp(
                ACME_REMOTE,
                ACME_WEB,
                [10, 0, 0, 20],
                [10, 0, 0, 10],
                64,
                b"unknown VNI",
            ),
        ),
        vxlan(
            1001,
            0x00,
            &udp(
                ACME_REMOTE,
                ACME_WEB,
                [10, 0, 0, 20],
                [10, 0, 0, 10],
                64,
                b"I flag clear",
            ),
        ),
        ping(VTEP2, UPLINK, [198, 18, 0, 2], [198, 18, 0, 1]),
        // The internet answers acme's SYN (sent from its public address).
        headers(INTERNET_GW, UPLINK, [198, 19, 0, 80], ACME_PUBLIC).tcp_syn_ack(443, 41000),
        // Nobody asked for this one.
        headers(INTERNET_GW, UPLINK, [198, 19, 0, 66], ACME_PUBLIC).tcp_syn(40000, 22),
    ];
    vec![
        ("acme-web", acme_web),
        ("globex-web", globex_web),
        ("up0", up0),
    ]
}

/// Writes `<port>.pcap` files; frames are 1 ms apart, ports interleaved.
pub fn write_captures(dir: &Path) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    std::fs::create_dir_all(dir).unwrap();
    for (p, (name, frames)) in captures().into_iter().enumerate() {
        let file = std::fs::File::create(dir.join(format!("{name}.pcap"))).unwrap();
        let mut writer = PcapWriter::new(file).unwrap();
        for (i, frame) in frames.iter().enumerate() {
            let ts =
                std::time::Duration::from_micros(1_700_000_000_000_000 + (i * 3 + p) as u64 * 1000);
            writer
                .write_packet(&PcapPacket::new(ts, frame.len() as u32, frame))
                .unwrap();
        }
    }
}

#[allow(dead_code)]
fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/pcaps".into());
    write_captures(Path::new(&dir));
    println!("wrote captures to {dir}");
}
