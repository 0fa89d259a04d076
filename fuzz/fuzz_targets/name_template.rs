#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kvsync_fuzz_targets::name_template::run(data));
