#![no_main]

use kiln_distributor::fuzzing;

// Measures each input's peak heap bytes for fuzzing::fuzz, which panics over the bound.
#[global_allocator]
static ALLOCATOR: fuzzing::memory::Counting = fuzzing::memory::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz("otlp", fuzzing::otlp, data);
});
