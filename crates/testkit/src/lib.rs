//! unsprawl's test lab, kept out of the product: what its end-to-end tests and
//! benchmarks start as root on this machine, installing the Debian packages they need
//! with apt-get when missing (CI machines start bare).
//!
//! - [`local_registry`]: a CNCF distribution registry on a free loopback port;
//! - [`local_dockerd`]: a private Docker engine on a temp socket.

pub mod local_dockerd;
pub mod local_registry;
