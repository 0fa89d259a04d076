#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kvsync_fuzz_targets::engine_request::run(data));
