#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vserv_core::fuzzing::transit_token(data));
