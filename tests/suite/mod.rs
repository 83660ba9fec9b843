mod account;
mod core;
mod refresh;
