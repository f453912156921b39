#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vserv_core::fuzzing::server_auth(data));
