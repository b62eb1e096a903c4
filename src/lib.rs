//! The `xvr` binaries' shared code: the live router that ties the
//! steering program, AF_XDP sockets and workers together.
pub mod router;
