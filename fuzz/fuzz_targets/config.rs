#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| poczta_fuzz::bodies::config(data));
