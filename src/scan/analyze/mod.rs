//! Parsers for the few files of a layer that say what an image contains. Each takes the
//! bytes of one file and knows nothing of layers, caches or images.

pub mod os_release;
pub mod packages;
pub mod prefect;
pub mod python;
