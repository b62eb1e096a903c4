#![no_main]
use libfuzzer_sys::fuzz_target;
use xvr_dataplane::wire::vxlan::{Packet, Repr};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = (packet.flags(), packet.vni(), packet.payload().len());
        if let Ok(repr) = Repr::parse(&packet) {
            let mut out = [0u8; 8];
            repr.emit(&mut Packet::new_unchecked(&mut out[..]));
            assert_eq!(Repr::parse(&Packet::new_unchecked(&out[..])).unwrap(), repr);
        }
    }
});
