//! The firewall classifier decides exactly as a first-match linear scan
//! of the same ordered rules, for random rule sets and packets.
use ipnet::Ipv4Net;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use xvr_dataplane::table::{Action, Rule, RuleSet};

fn net() -> impl Strategy<Value = Ipv4Net> {
    // Few distinct prefixes, so rules overlap and nest.
    (
        0u8..4,
        0u8..4,
        prop::sample::select(vec![0u8, 8, 16, 24, 32]),
    )
        .prop_map(|(a, b, len)| {
            Ipv4Net::new(Ipv4Addr::new(10, a, b, 1), len)
                .unwrap()
                .trunc()
        })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        net(),
        net(),
        prop::option::of(prop::sample::select(vec![1u8, 6, 17])),
        0u16..100,
        0u16..100,
        any::<bool>(),
    )
        .prop_map(|(src, dst, proto, a, b, allow)| Rule {
            src,
            dst,
            proto,
            ports: (a.min(b), a.max(b)),
            action: if allow { Action::Allow } else { Action::Deny },
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_classifier_agrees_with_a_linear_scan(
        rules in prop::collection::vec(rule(), 0..150),
        packets in prop::collection::vec((0u8..4, 0u8..4, 0u8..4, 0u8..4, prop::sample::select(vec![1u8, 6, 17, 47]), 0u16..110), 50),
        default_allow in any::<bool>(),
    ) {
        let default = if default_allow { Action::Allow } else { Action::Deny };
        let set = RuleSet::new(rules, default);
        for (a, b, c, d, proto, port) in packets {
            let src = Ipv4Addr::new(10, a, b, 1);
            let dst = Ipv4Addr::new(10, c, d, 1);
            prop_assert_eq!(set.decide(src, dst, proto, port), set.decide_linear(src, dst, proto, port));
        }
    }
}
