//! Host, Origin, Authorization and Sec-WebSocket-Protocol values from the network never panic.
#![no_main]

use authbridge::fuzzing::{HostOriginPolicy, WsAuthenticator, presented_credential};
use libfuzzer_sys::fuzz_target;

/// Splits `Sec-WebSocket-Protocol` header values into entries, as the HTTP stack does.
fn protocol_entries<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<&'a str> {
    values
        .into_iter()
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // Split the input into four header values.
    let mut parts = data.splitn(4, |&b| b == 0);
    let host = parts.next().unwrap_or_default();
    let origin = parts.next().unwrap_or_default();
    let authorization = parts.next().unwrap_or_default();
    let protocols = parts.next().unwrap_or_default();

    let policy = HostOriginPolicy::new(
        "127.0.0.1:4500".parse().unwrap(),
        &["bridge.internal".to_owned()],
        &["app://myapp".to_owned()],
    );
    let _ = policy.admit(Some(host), Some(origin));
    let _ = policy.admit(Some(host), None);

    let entries = protocol_entries([protocols]);
    let _ = presented_credential(Some(authorization), entries.iter().copied());
    let _ = presented_credential(None, entries.iter().copied());
    let _ = WsAuthenticator::None.authenticate(Some(authorization), entries.iter().copied());
});
