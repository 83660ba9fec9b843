//! Host, Origin, Authorization and Sec-WebSocket-Protocol values from the network never panic.
#![no_main]

use authbridge::transport::guard::HostOriginPolicy;
use authbridge::transport::ws_auth::{WsAuthenticator, presented_credential, protocol_entries};
use libfuzzer_sys::fuzz_target;

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
