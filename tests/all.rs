//! authbridge's black-box test suite: real loopback sockets, a fake backend and a fake OAuth issuer.
//! One test binary keeps linking fast; each file under `suite/` covers one area.

mod suite;
mod support;
