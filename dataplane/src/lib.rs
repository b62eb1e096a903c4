//! The xvr data plane: wire formats, tables, and the pipeline stages that
//! turn a batch of received frames into a batch of frames to transmit.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]
pub mod conntrack;
pub mod counters;
pub mod frame;
pub mod handoff;
pub mod io;
pub mod parcel;
pub mod pipeline;
pub mod service;
pub mod table;
pub mod tally;
pub mod wire;
pub mod worker;

pub use frame::Frame;
pub use pipeline::{Around, ArrivingFlow, FlowOffload, Offer};
pub use pipeline::{DropReason, Event, Pipeline, Stats, Verdict};
pub use table::{Tables, TablesBuilder};
