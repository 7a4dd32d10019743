//! The bodies of Poczta's fuzz targets, as plain functions: the libFuzzer
//! binaries in `fuzz_targets/` call them, and the e2e test binary compiles
//! the same file (`bodies.rs`) to replay `corpus/` in an ordinary `cargo
//! test`.

pub mod bodies;
