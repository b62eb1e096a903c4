//! The end-to-end rig of `xvr-e2e`: traffic ends in XDP, and the AF_XDP
//! forwarding floor.
pub mod dns;
pub mod l2fwd;
pub mod ovs;
pub mod traffic;
