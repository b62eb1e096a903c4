#![no_main]
//! The whole pipeline on the example topology: the first byte picks the
//! port, the rest is the frame. Nothing may panic, every frame must end
//! with a verdict, and the output must fit the buffer.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::{Pipeline, Tables, Verdict};

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let state = include_str!("../../examples/two-tenants.json");
        xvr_control::State::from_json(state).unwrap().build().unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&port, frame)) = data.split_first() else { return };
    let tables = tables();
    let port = u16::from(port) % (tables.ports().len() as u16 + 1);
    let mut pipeline = Pipeline::new();
    MemoryIo::new().run(&mut pipeline, tables, [(port, frame)], |_, verdict, out| {
        assert_ne!(verdict, Verdict::Pending);
        assert!(out.len() <= xvr_dataplane::frame::FRAME_SIZE);
    });
});
