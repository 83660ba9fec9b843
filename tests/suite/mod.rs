mod account;
mod core;
mod managed_login;
mod refresh;
mod security;
mod ecosystem;
mod browser;
mod bench_smoke;
