//! Listen URLs, overrides, ranges and the documented example.

use super::file::{apply_override, parse_file_config};
use super::*;

#[test]
fn listen_urls() {
    assert_eq!(Listen::parse("stdio://").unwrap(), Listen::Stdio);
    assert_eq!(
        Listen::parse("ws://127.0.0.1:0").unwrap(),
        Listen::Ws("127.0.0.1:0".parse().unwrap())
    );
    assert_eq!(
        Listen::parse("ws://[::1]:4500/").unwrap(),
        Listen::Ws("[::1]:4500".parse().unwrap())
    );
    let err = Listen::parse("http://localhost:80").unwrap_err();
    assert_eq!(
        err.0,
        "unsupported --listen URL `http://localhost:80`; expected `stdio://` or `ws://IP:PORT`"
    );
    assert_eq!(
        Listen::parse("ws://localhost:4500/").unwrap(),
        Listen::Ws("127.0.0.1:4500".parse().unwrap())
    );
    assert!(Listen::parse("ws://localhost:x").is_err());
    assert!(Listen::parse("ws://example.com:80").is_err());
}

#[test]
fn overrides_parse_toml_else_string() {
    let mut table = toml::Table::new();
    apply_override(&mut table, "server.max_connections=3").unwrap();
    apply_override(&mut table, "chatgpt_base_url=http://127.0.0.1:9/x").unwrap();
    apply_override(&mut table, "forced_chatgpt_workspace_id=[\"a\",\"b\"]").unwrap();
    apply_override(&mut table, "forced_login_method=\"api\"").unwrap();
    let file = parse_file_config(table, Path::new("-c")).unwrap();
    assert_eq!(file.server.max_connections, Some(3));
    assert_eq!(
        file.chatgpt_base_url.as_deref(),
        Some("http://127.0.0.1:9/x")
    );
    assert_eq!(
        file.forced_chatgpt_workspace_id,
        Some(WorkspaceIds::Many(vec!["a".into(), "b".into()]))
    );
    assert_eq!(file.forced_login_method, Some(ForcedLoginMethod::Api));
}

#[test]
fn wrong_types_are_errors_and_unknown_keys_are_not() {
    let err = Config::from_overrides("/tmp/h", &["server.max_connections=\"many\""]).unwrap_err();
    assert!(err.0.contains("max_connections"), "{err}");
    Config::from_overrides(
        "/tmp/h",
        &["model=\"gpt-5\"", "mcp_servers.x.command=\"y\""],
    )
    .unwrap();
}

#[test]
fn ws_auth_flag_rules() {
    let flags = WsAuthFlags {
        token_file: Some("relative".into()),
        ..Default::default()
    };
    assert_eq!(
        ws_auth_settings(&flags).unwrap_err().0,
        "--ws-token-file must be an absolute path"
    );
    let flags = WsAuthFlags {
        mode: Some(WsAuthMode::SignedBearerToken),
        ..Default::default()
    };
    assert_eq!(
        ws_auth_settings(&flags).unwrap_err().0,
        "`--ws-shared-secret-file` is required when `--ws-auth signed-bearer-token` is set"
    );
    let flags = WsAuthFlags {
        mode: Some(WsAuthMode::None),
        token_file: Some("/abs".into()),
        ..Default::default()
    };
    assert_eq!(
        ws_auth_settings(&flags).unwrap_err().0,
        "websocket auth flags require `--ws-auth capability-token` or `--ws-auth signed-bearer-token`"
    );
}

#[test]
fn refresh_timeout_range() {
    assert!(Config::from_overrides("/h", &["auth.external_refresh_timeout_secs=0"]).is_err());
    assert!(Config::from_overrides("/h", &["auth.external_refresh_timeout_secs=301"]).is_err());
    let config = Config::from_overrides("/h", &["auth.external_refresh_timeout_secs=2"]).unwrap();
    assert_eq!(config.auth.external_refresh_timeout, Duration::from_secs(2));
}

#[test]
fn backend_idle_timeout_range() {
    assert!(Config::from_overrides("/h", &["backend.idle_timeout_secs=0"]).is_err());
    assert!(Config::from_overrides("/h", &["backend.idle_timeout_secs=3601"]).is_err());
    let defaults = Config::from_overrides("/h", &[]).unwrap();
    assert_eq!(defaults.backend.idle_timeout, Duration::from_secs(90));
    let config = Config::from_overrides("/h", &["backend.idle_timeout_secs=5"]).unwrap();
    assert_eq!(config.backend.idle_timeout, Duration::from_secs(5));
}

#[test]
fn the_documented_example_is_valid_and_matches_the_defaults() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/authbridge.toml");
    let options = LoadOptions {
        home: Some("/tmp/authbridge-example-home".into()),
        config_file: Some(example),
        ..Default::default()
    };
    let loaded = Config::load(&options).unwrap();
    let defaults = Config::with_home("/tmp/authbridge-example-home");
    assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"));
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let options = LoadOptions {
        home: Some("/tmp/h".into()),
        config_file: Some("/nonexistent/authbridge.toml".into()),
        ..Default::default()
    };
    assert!(
        Config::load(&options)
            .unwrap_err()
            .0
            .contains("cannot read config file")
    );
}
