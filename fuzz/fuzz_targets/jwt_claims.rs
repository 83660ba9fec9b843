//! Any token text: claim decoding never panics, and errors are fixed texts that never quote the
//! token (base64 errors name at most one offending symbol by its byte value).
#![no_main]

use authbridge::fuzzing::jwt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    if let Err(err) = jwt::parse(&token) {
        let message = err.to_string();
        let known = message == "invalid ID token format"
            || message.starts_with("invalid ID token payload encoding: ")
            || (message.starts_with("invalid ID token payload: ") && message.contains(" error at column "));
        assert!(known, "unexpected error text: {message}");
    }
});
