#![no_main]

libfuzzer_sys::fuzz_target!(|steps: Vec<tinyweb_fuzz::Step>| tinyweb_fuzz::replica(steps));
