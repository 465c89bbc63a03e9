//! Handlers against real local servers: a raw HTTP/1.1 responder (plain
//! and TLS), TCP listeners, and a tonic gRPC health server.

use super::*;
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Responder = Arc<dyn Fn(&str) -> (u16, Vec<(String, String)>, String) + Send + Sync>;

/// Serve HTTP/1.1 on 127.0.0.1 (TLS when `tls` is given); returns the port
/// and the raw request heads received.
async fn http_server(
    respond: Responder,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let respond = respond.clone();
            let seen = seen2.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut s: Box<dyn Io> = match tls {
                    Some(a) => match a.accept(s).await {
                        Ok(t) => Box::new(t),
                        Err(_) => return,
                    },
                    None => Box::new(s),
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                seen.lock().unwrap().push(head);
                let (code, headers, body) = respond(&path);
                if code == 0 {
                    // never answer
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let mut out = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("Connection: close\r\n\r\n");
                out.push_str(&body);
                let _ = s.write_all(out.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, seen)
}

fn probe(url: String) -> HttpProbe {
    HttpProbe {
        url,
        headers: vec![],
        timeout: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn http_statuses_redirects_headers_timeouts() {
    let (port, seen) = http_server(
        Arc::new(|path: &str| match path {
            "/ok" => (200, vec![], "fine".into()),
            "/err" => (500, vec![], "boom".into()),
            "/moved" => (302, vec![("Location".into(), "/ok".into())], String::new()),
            "/loop" => (
                302,
                vec![("Location".into(), "/loop".into())],
                String::new(),
            ),
            "/away" => (
                301,
                vec![("Location".into(), "http://127.0.0.2:1/x".into())],
                "gone".into(),
            ),
            "/hang" => (0, vec![], String::new()),
            _ => (404, vec![], String::new()),
        }),
        None,
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        http_get(&probe(format!("{base}/ok"))).await,
        Outcome::Success
    );
    assert_eq!(
        http_get(&probe(format!("{base}/err"))).await,
        Outcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
    assert_eq!(
        http_get(&probe(format!("{base}/moved"))).await,
        Outcome::Success
    );
    assert_eq!(
        http_get(&probe(format!("{base}/away"))).await,
        Outcome::Warning("Probe terminated redirects, Response body: gone".into())
    );
    assert_eq!(
        http_get(&probe(format!("{base}/loop"))).await,
        Outcome::Failure(format!("Get \"{base}/loop\": stopped after 10 redirects"))
    );
    assert_eq!(
        http_get(&probe(format!("{base}/hang"))).await,
        Outcome::Failure(format!(
            "Get \"{base}/hang\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );
    let mut p = probe(format!("{base}/ok"));
    p.headers = vec![
        ("X-Custom".into(), "1".into()),
        ("Accept".into(), "text/plain".into()),
    ];
    assert_eq!(http_get(&p).await, Outcome::Success);
    let last = seen.lock().unwrap().last().cloned().unwrap();
    let lower = last.to_ascii_lowercase();
    assert!(lower.starts_with("get /ok http/1.1\r\n"), "{last}");
    assert!(lower.contains("user-agent: kube-probe/1.33\r\n"), "{last}");
    assert!(
        lower.contains(&format!("host: 127.0.0.1:{port}\r\n")),
        "{last}"
    );
    assert!(lower.contains("x-custom: 1\r\n"), "{last}");
    assert!(lower.contains("accept: text/plain\r\n"), "{last}");
    assert!(!lower.contains("accept: */*"), "{last}");

    // nothing listening
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cport = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(
        http_get(&probe(format!("http://127.0.0.1:{cport}/"))).await,
        Outcome::Failure(format!(
            "Get \"http://127.0.0.1:{cport}/\": dial tcp 127.0.0.1:{cport}: connect: connection refused"
        ))
    );
}

#[tokio::test]
async fn https_without_verification() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let (port, seen) = http_server(
        Arc::new(|_: &str| (204, vec![], String::new())),
        Some(acceptor),
    )
    .await;
    assert_eq!(
        http_get(&probe(format!("https://127.0.0.1:{port}/tls"))).await,
        Outcome::Success
    );
    assert!(seen.lock().unwrap()[0].starts_with("GET /tls HTTP/1.1"));
}

#[tokio::test]
async fn tcp_connects() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(
        tcp("127.0.0.1", port, Duration::from_secs(1)).await,
        Outcome::Success
    );
    drop(l);
    assert_eq!(
        tcp("127.0.0.1", port, Duration::from_secs(1)).await,
        Outcome::Failure(format!(
            "dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

async fn grpc_server(status: i32) -> u16 {
    #[derive(Clone)]
    struct HealthSvc(i32);
    impl tonic::server::NamedService for HealthSvc {
        const NAME: &'static str = "grpc.health.v1.Health";
    }
    impl tower::Service<http::Request<tonic::body::Body>> for HealthSvc {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            let status = self.0;
            Box::pin(async move {
                let unary =
                    tower::service_fn(move |r: tonic::Request<health::HealthCheckRequest>| {
                        let service = r.into_inner().service;
                        async move {
                            if service == "unknown" {
                                return Err(tonic::Status::not_found("unknown service"));
                            }
                            Ok(tonic::Response::new(health::HealthCheckResponse { status }))
                        }
                    });
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                    health::HealthCheckResponse,
                    health::HealthCheckRequest,
                >::default());
                Ok(grpc.unary(unary, req).await)
            })
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let incoming = futures::stream::unfold(l, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthSvc(status))
            .serve_with_incoming(incoming),
    );
    port
}

#[tokio::test]
async fn grpc_health() {
    let t = Duration::from_secs(1);
    let serving = grpc_server(health::SERVING).await;
    assert_eq!(grpc("127.0.0.1", serving, "", t).await, Outcome::Success);
    let down = grpc_server(2).await;
    assert_eq!(
        grpc("127.0.0.1", down, "db", t).await,
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    assert_eq!(
        grpc("127.0.0.1", serving, "unknown", t).await,
        Outcome::Failure(
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
                .into()
        )
    );
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cport = closed.local_addr().unwrap().port();
    drop(closed);
    match grpc("127.0.0.1", cport, "", t).await {
        Outcome::Failure(m) => assert!(
            m.starts_with(&format!(
                "timeout: failed to connect service \"127.0.0.1:{cport}\" within 1s"
            )),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}
