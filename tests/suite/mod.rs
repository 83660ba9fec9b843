mod account;
mod core;
