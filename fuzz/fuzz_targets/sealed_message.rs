#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vserv_core::fuzzing::sealed_message(data));
