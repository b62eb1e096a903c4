//! I/O backends. `memory` runs frames held in memory (tests, replay,
//! benches); the AF_XDP backend joins it behind a common trait with the live
//! data path.
pub mod memory;
pub mod xsk;
