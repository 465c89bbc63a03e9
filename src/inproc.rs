//! The in-process `kube::Client`: requests from the scheduler, controllers
//! and the embedded agent go straight into the API `Router` as a tower
//! service — same handlers, validation and admission as a remote client, but
//! no socket and no TLS.
//!
//! Invariant: the identity is attached here as an `InProcess` request
//! extension; the TLS listener strips that extension from every remote
//! request, so only code in this process can claim it.

use std::convert::Infallible;

use axum::Router;
use tower::ServiceExt;

use crate::apiserver::authn::InProcess;
use crate::apiserver::registry::Identity;

/// A client acting as `user` (in `groups`) against `router`.
/// The user agent (and so the default field manager) is the user's last
/// `:`-separated part, as upstream components name themselves.
pub fn client(router: Router, user: &str, groups: &[&str]) -> kube::Client {
    let agent = http::HeaderValue::from_str(&format!(
        "{}/v1.33.0 (linux/amd64) skiff",
        user.rsplit(':').next().unwrap_or(user)
    ))
    .unwrap_or(http::HeaderValue::from_static("skiff"));
    let identity = Identity {
        user: user.to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let router = router.clone();
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(InProcess(identity.clone()));
        if !req.headers().contains_key(http::header::USER_AGENT) {
            req.headers_mut()
                .insert(http::header::USER_AGENT, agent.clone());
        }
        async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    kube::Client::new(svc, "default")
}

/// The identity each in-process component uses (upstream user names).
pub mod users {
    pub const SCHEDULER: &str = "system:kube-scheduler";
    pub const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
}
