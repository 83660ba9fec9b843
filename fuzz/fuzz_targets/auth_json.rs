//! Any auth.json content: classification never panics.
#![no_main]

use authbridge::fuzzing::parse_auth_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_auth_file(data);
});
