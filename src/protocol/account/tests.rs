//! The account types serialize to Codex's shapes and read both input shapes.

use serde_json::json;

use super::*;
#[test]
fn outputs_match_codex_shapes() {
    let read = GetAccountResponse {
        account: Some(Account::Chatgpt {
            email: "u@example.com".into(),
            plan_type: PlanType::Pro,
        }),
        requires_openai_auth: true,
    };
    assert_eq!(
        serde_json::to_value(read).unwrap(),
        json!({"account":{"type":"chatgpt","email":"u@example.com","planType":"pro"},"requiresOpenaiAuth":true})
    );
    assert_eq!(
        serde_json::to_value(GetAccountResponse {
            account: Some(Account::ApiKey),
            requires_openai_auth: true
        })
        .unwrap(),
        json!({"account":{"type":"apiKey"},"requiresOpenaiAuth":true})
    );
    assert_eq!(
        serde_json::to_value(GetAccountResponse {
            account: None,
            requires_openai_auth: false
        })
        .unwrap(),
        json!({"account":null,"requiresOpenaiAuth":false})
    );
    assert_eq!(
        serde_json::to_value(LoginAccountResponse::ChatgptAuthTokens).unwrap(),
        json!({"type":"chatgptAuthTokens"})
    );
    assert_eq!(
        serde_json::to_value(LogoutAccountResponse {}).unwrap(),
        json!({})
    );
    assert_eq!(
        serde_json::to_value(AccountUpdatedNotification {
            auth_mode: Some(AuthMode::ApiKey),
            plan_type: None
        })
        .unwrap(),
        json!({"authMode":"apikey","planType":null})
    );
    assert_eq!(
        serde_json::to_value(CancelLoginAccountResponse {
            status: CancelLoginAccountStatus::NotFound
        })
        .unwrap(),
        json!({"status":"notFound"})
    );
    assert_eq!(
        serde_json::to_value(RateLimitSnapshot::default()).unwrap(),
        json!({"primary":null,"secondary":null,"credits":null,"planType":null})
    );
}

#[test]
fn login_params_accept_both_token_shapes() {
    let seed: LoginAccountParams = serde_json::from_value(
        json!({"type":"chatgptAuthTokens","idToken":"a.b.c","accessToken":"t"}),
    )
    .unwrap();
    assert!(matches!(seed, LoginAccountParams::ChatgptAuthTokens(ref p) if p.id_token.is_some()));
    let later: LoginAccountParams = serde_json::from_value(
        json!({"type":"chatgptAuthTokens","accessToken":"t","chatgptAccountId":"org","extra":1}),
    )
    .unwrap();
    assert!(
        matches!(later, LoginAccountParams::ChatgptAuthTokens(ref p) if p.chatgpt_account_id.as_deref() == Some("org"))
    );
    let missing = serde_json::from_value::<LoginAccountParams>(
        json!({"type":"chatgptAuthTokens","accessToken":"t"}),
    )
    .unwrap_err();
    assert!(
        missing.to_string().contains("chatgptAccountId"),
        "{missing}"
    );
    assert!(
        serde_json::from_value::<LoginAccountParams>(json!({"type":"apiKey","apiKey":12345}))
            .is_err()
    );
    assert!(serde_json::from_value::<LoginAccountParams>(json!({"type":"bogus"})).is_err());
    assert!(matches!(
        serde_json::from_value::<LoginAccountParams>(json!({"type":"chatgpt","appBrand":"x"}))
            .unwrap(),
        LoginAccountParams::Chatgpt
    ));
}

#[test]
fn secrets_do_not_show_in_debug() {
    let params: LoginAccountParams =
        serde_json::from_value(json!({"type":"apiKey","apiKey":"sk-SENTINEL"})).unwrap();
    assert!(!format!("{params:?}").contains("SENTINEL"));
}

#[test]
fn plans_map_case_insensitively() {
    assert_eq!(PlanType::from_claim("PRO"), PlanType::Pro);
    assert_eq!(PlanType::from_claim("weird"), PlanType::Unknown);
    assert_eq!(PlanType::from_optional(None), PlanType::Unknown);
}
