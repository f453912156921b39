#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vserv_core::replication::fuzzing::replication_message(data));
