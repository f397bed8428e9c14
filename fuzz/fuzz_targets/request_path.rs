//! Arbitrary bytes through the socket-free request path: the decoder fed in arbitrary reads, the
//! pipeline completed in arbitrary order. The input layout and every assertion are documented
//! in `fuzz/src/lib.rs` and `docs/FUZZING.md`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| evloop_fuzz::request_path(data));
