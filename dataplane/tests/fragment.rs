//! Inner IPv4 too big for the overlay: without DF it is cut into fragments
//! before encapsulation (each one a whole VXLAN packet that fits), with DF
//! the sender gets "fragmentation needed". Checked by parsing the output
//! with etherparse and reassembling it.
mod common;

use common::*;
use etherparse::{Ipv4HeaderSlice, SlicedPacket, TransportSlice};
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::{DropReason, Event, Pipeline, Verdict};
use xvr_testkit::{checksum_ok, fix_ipv4_checksum};

/// The overlay's IP MTU: the uplink's less the VXLAN overhead.
const OVERLAY_IP_MTU: usize = UPLINK_MTU as usize - 50;

/// UDP from VM 10.0.0.10 on A1 to the remote VM 10.0.0.20, DF as given.
fn to_remote_vm(payload: &[u8], df: bool) -> Vec<u8> {
    let mut frame = udp(
        VM_A10_MAC,
        VM_A20_MAC,
        "10.0.0.10",
        "10.0.0.20",
        64,
        payload,
    );
    let flags = u16::from_be_bytes([frame[20], frame[21]]) & !0x4000;
    frame[20..22].copy_from_slice(&(flags | if df { 0x4000 } else { 0 }).to_be_bytes());
    fix_ipv4_checksum(&mut frame);
    frame
}

/// Runs `frame` from port A1 and returns every output: verdict and bytes.
fn outputs(frame: &[u8]) -> (Vec<(Verdict, Vec<u8>)>, Pipeline) {
    let t = builder().build();
    let mut p = Pipeline::new();
    let mut out = Vec::new();
    MemoryIo::new().run(&mut p, &t, [(A1, frame)], |_, v, bytes| {
        out.push((v, bytes.to_vec()))
    });
    (out, p)
}

/// Checks one VXLAN frame to the remote VTEP and returns its inner frame.
fn decapsulated(frame: &[u8]) -> Vec<u8> {
    let outer = SlicedPacket::from_ethernet(frame).expect("outer parses");
    let Some(TransportSlice::Udp(udp)) = outer.transport else {
        panic!("outer UDP");
    };
    assert_eq!(udp.destination_port(), 4789);
    let ip = Ipv4HeaderSlice::from_slice(&frame[14..]).unwrap();
    assert_eq!(ip.destination_addr(), REMOTE_VTEP);
    assert!(
        usize::from(ip.total_len()) <= UPLINK_MTU as usize,
        "fits the uplink"
    );
    assert_eq!(usize::from(ip.total_len()), frame.len() - 14);
    assert!(checksum_ok(&frame[14..34]), "outer IPv4 checksum");
    assert_eq!(usize::from(udp.length()), frame.len() - 34);
    frame[50..].to_vec()
}

#[test]
fn a_packet_without_df_is_cut_before_encapsulation() {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let big = to_remote_vm(&payload[..1600], false);
    let (out, p) = outputs(&big);
    assert_eq!(
        out.len(),
        2,
        "{:?}",
        out.iter().map(|o| o.0).collect::<Vec<_>>()
    );
    assert!(out.iter().all(|(v, _)| *v == Verdict::Tx(UP)));
    let inner: Vec<Vec<u8>> = out.iter().map(|(_, f)| decapsulated(f)).collect();
    for (i, f) in inner.iter().enumerate() {
        let ip = Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
        assert!(usize::from(ip.total_len()) <= OVERLAY_IP_MTU);
        assert!(checksum_ok(&f[14..34]), "fragment {i} IPv4 checksum");
        assert_eq!(ip.more_fragments(), i == 0, "fragment {i} MF");
        assert_eq!(&f[..14], &big[..14], "inner Ethernet kept");
    }
    let first_payload = inner[0].len() - 34;
    assert_eq!(first_payload % 8, 0);
    let second = Ipv4HeaderSlice::from_slice(&inner[1][14..]).unwrap();
    assert_eq!(
        usize::from(second.fragments_offset().value()) * 8,
        first_payload
    );
    assert!(
        reassemble(&inner) == big,
        "the pieces make the packet again"
    );
    assert_eq!(p.stats.events_of(Event::Fragmented), 1);
    assert_eq!(p.stats.events_of(Event::Encap), 1);
}

#[test]
fn a_packet_with_df_gets_fragmentation_needed() {
    let big = to_remote_vm(&[7; 1600], true);
    let (out, p) = outputs(&big);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, Verdict::Tx(A1), "the error goes back to the VM");
    let icmp = &out[0].1[34..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(
        usize::from(u16::from_be_bytes([icmp[6], icmp[7]])),
        OVERLAY_IP_MTU
    );
    assert_eq!(p.stats.events_of(Event::IcmpErrorSent), 1);
    assert_eq!(
        p.stats.drops_of(DropReason::MtuExceeded),
        1,
        "the packet itself"
    );
    assert_eq!(p.stats.events_of(Event::Fragmented), 0);
}

/// A fragment that is itself too big is cut again: offsets count from its
/// own, and only the last piece of the last fragment clears MF.
#[test]
fn a_fragment_is_cut_at_its_own_offset() {
    let payload: Vec<u8> = (0..3200u32).map(|i| (i % 253) as u8).collect();
    let whole = to_remote_vm(&payload, false);
    let sent = fragments(&whole, 1600, 42);
    assert_eq!(sent.len(), 3, "1600, 1600 and 8 bytes");
    let mut pieces = Vec::new();
    for (i, f) in sent.iter().enumerate() {
        let (out, _) = outputs(f);
        let too_big = f.len() - 14 > OVERLAY_IP_MTU;
        assert_eq!(out.len() > 1, too_big, "fragment {i} is cut if too big");
        pieces.extend(out.iter().map(|(_, f)| decapsulated(f)));
    }
    let mf: Vec<bool> = pieces
        .iter()
        .map(|f| {
            Ipv4HeaderSlice::from_slice(&f[14..])
                .unwrap()
                .more_fragments()
        })
        .collect();
    assert_eq!(mf.iter().filter(|m| !**m).count(), 1, "{mf:?}");
    assert!(!mf.last().unwrap());
    assert!(
        reassemble(&pieces)[34..] == whole[34..],
        "the pieces make the packet again"
    );
}

#[test]
fn only_sound_ipv4_is_cut() {
    // A header whose checksum lies is dropped, not cut or sent whole.
    let mut big = to_remote_vm(&[1; 1600], false);
    big[24] ^= 0xff;
    let (out, p) = outputs(&big);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].0, Verdict::Drop(_)), "{:?}", out[0].0);
    assert_eq!(p.stats.events_of(Event::Fragmented), 0);
}
