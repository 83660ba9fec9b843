//! The 401 layer: a buffered 401 kept whole, one refresh for concurrent 401s, the gate, refused
//! replies and failed refreshes.

use super::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A provider whose tokens are "t<generation>"; refresh bumps the generation after a delay.
struct Counting {
    generation: AtomicU64,
    refreshes: AtomicUsize,
    fail: bool,
}

impl CredentialProvider for Counting {
    fn current(&self) -> BoxFuture<'_, Result<Credential, AuthFailure>> {
        let generation = self.generation.load(Ordering::SeqCst);
        futures::future::ready(Ok(Credential {
            bearer: format!("t{generation}").into(),
            account_id: Some("acct".into()),
            generation,
            kind: CredentialKind::HostOwned,
        }))
        .boxed()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn refresh(
        self: Arc<Self>,
        _stale: Credential,
    ) -> BoxFuture<'static, Result<Refreshed, AuthFailure>> {
        async move {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.fail {
                return Err(AuthFailure::Grant("refresh failed".into()));
            }
            self.generation.fetch_add(1, Ordering::SeqCst);
            Ok(Refreshed::Renewed)
        }
        .boxed()
    }
}

/// A backend accepting only `Bearer t1`; counts calls.
#[derive(Clone)]
struct Backend {
    calls: Arc<AtomicUsize>,
}

impl Service<BackendRequest> for Backend {
    type Response = Response;
    type Error = BackendError;
    type Future = BoxFuture<'static, Result<Response, BackendError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BackendRequest) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let ok = request
            .http
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap() == "Bearer t1")
            == Some(true);
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let status = if ok { 200 } else { 401 };
            Ok(Response::from(
                http::Response::builder().status(status).body("").unwrap(),
            ))
        }
        .boxed()
    }
}

fn request() -> BackendRequest {
    BackendRequest::get("http://127.0.0.1:9/usage", Signing::Chatgpt).unwrap()
}

#[tokio::test]
async fn a_buffered_401_keeps_its_status_headers_and_body() {
    let original = http::Response::builder()
        .status(401)
        .header("content-type", "application/json")
        .body(r#"{"error":"expired"}"#)
        .unwrap();
    let buffered = buffer_body(Response::from(original)).await;
    assert_eq!(buffered.status(), 401);
    assert_eq!(buffered.headers()["content-type"], "application/json");
    assert_eq!(buffered.text().await.unwrap(), r#"{"error":"expired"}"#);
}

#[tokio::test]
async fn concurrent_401s_share_one_refresh() {
    let provider = Arc::new(Counting {
        generation: AtomicU64::new(0),
        refreshes: AtomicUsize::new(0),
        fail: false,
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let service = AuthRetryLayer::new(provider.clone()).layer(Backend {
        calls: calls.clone(),
    });
    let results =
        futures::future::join_all((0..100).map(|_| service.clone().oneshot(request()))).await;
    for result in results {
        assert_eq!(result.unwrap().status(), 200);
    }
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 200);
}

fn service_and_provider() -> (
    AuthRetry<Backend>,
    Arc<Counting>,
    tokio::sync::oneshot::Sender<()>,
    BackendRequest,
) {
    let provider = Arc::new(Counting {
        generation: AtomicU64::new(0),
        refreshes: AtomicUsize::new(0),
        fail: false,
    });
    let service = AuthRetryLayer::new(provider.clone()).layer(Backend {
        calls: Arc::new(AtomicUsize::new(0)),
    });
    let (open, gate) = tokio::sync::oneshot::channel();
    let mut ahead = request();
    ahead.recover_after = Some(futures::FutureExt::shared(gate));
    (service, provider, open, ahead)
}

#[tokio::test]
async fn a_401_sent_ahead_of_its_reply_is_recovered_once_the_gate_opens() {
    let (service, provider, open, ahead) = service_and_provider();
    let mut call = Box::pin(service.oneshot(ahead));
    // The stale token's 401 is in; the refresh waits for the gate.
    assert!(futures::poll!(&mut call).is_pending());
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 0);
    open.send(()).unwrap();
    assert_eq!(call.await.unwrap().status(), 200);
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_401_whose_reply_was_refused_stands_without_a_refresh() {
    let (service, provider, open, ahead) = service_and_provider();
    drop(open);
    assert_eq!(service.oneshot(ahead).await.unwrap().status(), 401);
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_refresh_fails_every_waiter_once() {
    let provider = Arc::new(Counting {
        generation: AtomicU64::new(0),
        refreshes: AtomicUsize::new(0),
        fail: true,
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let service = AuthRetryLayer::new(provider.clone()).layer(Backend {
        calls: calls.clone(),
    });
    let results =
        futures::future::join_all((0..20).map(|_| service.clone().oneshot(request()))).await;
    for result in results {
        assert!(
            matches!(result, Err(BackendError::Auth(AuthFailure::Grant(ref f))) if f == "refresh failed")
        );
    }
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        20,
        "no retry after a failed refresh"
    );
}
