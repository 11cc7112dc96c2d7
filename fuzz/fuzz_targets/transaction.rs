#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tinyweb_fuzz::transaction(data));
