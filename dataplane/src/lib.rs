//! The xvr data plane: wire formats, tables, and the pipeline stages that
//! turn a batch of received frames into a batch of frames to transmit.
pub mod wire;
