#![no_main]
use libfuzzer_sys::fuzz_target;
use xvr_dataplane::wire::vlan::{Packet, Repr};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::new_checked(data) {
        let repr = Repr::parse(&packet).unwrap();
        let mut out = [0u8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &data[..4]);
    }
});
