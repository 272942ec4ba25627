#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kiln_distributor::fuzzing::multipart(data);
});
