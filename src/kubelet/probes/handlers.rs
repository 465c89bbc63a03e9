//! Probe handlers doing the I/O: exec (CRI `ExecSync`), httpGet (HTTP/1.1
//! over TCP or TLS without certificate verification, same-host redirects
//! followed), tcpSocket (a connect), grpc (`grpc.health.v1.Health/Check`).
//!
//! Invariants: every handler finishes within its timeout and returns an
//! [`Outcome`] whose text is what upstream's prober reports; nothing here
//! panics on a peer's answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::net::TcpStream;

use super::state::{Outcome, dial_error_text, go_duration, host_port};
use crate::kubelet::cri::{Cri, api};

/// `User-Agent` of HTTP probes, `kube-probe/<major.minor>` as upstream.
pub const USER_AGENT: &str = "kube-probe/1.33";

const MAX_REDIRECTS: usize = 10;
/// Upstream reads at most this much of a probe response body.
const MAX_BODY: usize = 10 * 1024;

/// Run `cmd` in the container; a non-zero exit is a failure whose text is
/// the command's output.
pub async fn exec(cri: &Cri, container_id: &str, cmd: &[String], timeout: Duration) -> Outcome {
    let req = api::ExecSyncRequest {
        container_id: container_id.to_string(),
        cmd: cmd.to_vec(),
        timeout: timeout.as_secs().max(1) as i64,
    };
    let timed_out = || Outcome::Failure(format!("command {:?} timed out", cmd.join(" ")));
    let mut rt = cri.runtime.clone();
    // the runtime enforces the timeout; ours only guards a stuck runtime
    let call = tokio::time::timeout(timeout + Duration::from_secs(5), rt.exec_sync(req));
    match call.await {
        Err(_) => timed_out(),
        Ok(Err(status)) => {
            let msg = status.message().to_ascii_lowercase();
            if status.code() == tonic::Code::DeadlineExceeded
                || (msg.contains("timeout") && msg.contains("exceeded"))
            {
                timed_out()
            } else {
                Outcome::Error(status.message().to_string())
            }
        }
        Ok(Ok(resp)) => {
            let r = resp.into_inner();
            if r.exit_code == 0 {
                Outcome::Success
            } else {
                let mut out = r.stdout;
                out.extend_from_slice(&r.stderr);
                Outcome::Failure(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }
}

/// Connect to `host:port` within `timeout`.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {}", dial_error_text(&e))),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// One httpGet probe.
#[derive(Clone, Debug)]
pub struct HttpProbe {
    /// `http://host:port/path`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// Status 200..=399 is success; a redirect to the same host is followed, to
/// another host ends the probe with a warning (still a success).
pub async fn http_get(p: &HttpProbe) -> Outcome {
    let first = p.url.clone();
    match tokio::time::timeout(p.timeout, http_follow(p)).await {
        Ok(o) => o,
        Err(_) => Outcome::Failure(format!(
            "Get {first:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

async fn http_follow(p: &HttpProbe) -> Outcome {
    let mut url: http::Uri = match p.url.parse() {
        Ok(u) => u,
        Err(e) => return Outcome::Error(format!("invalid probe URL {:?}: {e}", p.url)),
    };
    let first_host = url.host().unwrap_or_default().to_string();
    for _ in 0..=MAX_REDIRECTS {
        let shown = url.to_string();
        let (status, location, body) = match http_once(&url, &p.headers).await {
            Ok(r) => r,
            Err(e) => return Outcome::Failure(format!("Get {shown:?}: {e}")),
        };
        let code = status.as_u16();
        if (300..400).contains(&code)
            && let Some(loc) = location
        {
            let next = match resolve_location(&url, &loc) {
                Some(n) => n,
                None => return Outcome::Failure(format!("Get {shown:?}: bad redirect {loc:?}")),
            };
            if next.host().unwrap_or_default() != first_host {
                return Outcome::Warning(format!(
                    "Probe terminated redirects, Response body: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            url = next;
            continue;
        }
        return if (200..400).contains(&code) {
            Outcome::Success
        } else {
            Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    Outcome::Failure(format!(
        "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
        url.to_string()
    ))
}

/// A `Location` relative to `base` (absolute URL, absolute path, or path).
fn resolve_location(base: &http::Uri, loc: &str) -> Option<http::Uri> {
    if loc.contains("://") {
        return loc.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let path = if loc.starts_with('/') {
        loc.to_string()
    } else {
        let cur = base.path();
        let dir = &cur[..cur.rfind('/').map(|i| i + 1).unwrap_or(0)];
        format!("{dir}{loc}")
    };
    format!("{scheme}://{authority}{path}").parse().ok()
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn http_once(
    url: &http::Uri,
    headers: &[(String, String)],
) -> Result<(http::StatusCode, Option<String>, Vec<u8>), String> {
    let https = url.scheme_str() == Some("https");
    let host = url.host().ok_or("no host in URL")?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = host_port(bare_host, port);
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {}", dial_error_text(&e)))?;
    let stream: Box<dyn Io> = if https {
        let name = rustls::pki_types::ServerName::try_from(bare_host.to_string())
            .map_err(|e| format!("invalid server name {bare_host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(insecure_tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = http::Request::get(path);
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        req = req.header(
            http::header::HOST,
            url.authority().map(|a| a.as_str()).unwrap_or(host),
        );
    }
    if !has("user-agent") {
        req = req.header(http::header::USER_AGENT, USER_AGENT);
    }
    if !has("accept") {
        req = req.header(http::header::ACCEPT, "*/*");
    }
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req = req.header(http::header::CONNECTION, "close");
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut body = Vec::new();
    let mut b = resp.into_body();
    while body.len() < MAX_BODY {
        match b.frame().await {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    body.extend_from_slice(d);
                }
            }
            _ => break,
        }
    }
    body.truncate(MAX_BODY);
    Ok((status, location, body))
}

/// TLS like Go's `InsecureSkipVerify`: any certificate is accepted, but
/// the handshake signatures are still checked.
fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `grpc.health.v1` messages, written by hand (two fields).
pub mod health {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct HealthCheckRequest {
        #[prost(string, tag = "1")]
        pub service: ::prost::alloc::string::String,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct HealthCheckResponse {
        #[prost(int32, tag = "1")]
        pub status: i32,
    }

    /// `ServingStatus` names.
    pub fn status_name(s: i32) -> &'static str {
        match s {
            1 => "SERVING",
            2 => "NOT_SERVING",
            3 => "SERVICE_UNKNOWN",
            _ => "UNKNOWN",
        }
    }

    pub const SERVING: i32 = 1;
}

/// A prost codec (tonic 0.14 moved its own into another crate).
pub struct ProstCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        ProstCodec(std::marker::PhantomData)
    }
}

pub struct ProstEncoder<T>(std::marker::PhantomData<T>);
pub struct ProstDecoder<U>(std::marker::PhantomData<U>);

impl<T, U> tonic::codec::Codec for ProstCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(std::marker::PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(std::marker::PhantomData)
    }
}

impl<T: prost::Message> tonic::codec::Encoder for ProstEncoder<T> {
    type Item = T;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: T,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl<U: prost::Message + Default> tonic::codec::Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<U>, tonic::Status> {
        U::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// `grpc.health.v1.Health/Check` on `host:port` for `service`.
pub async fn grpc(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = host_port(host, port);
    let within = go_duration(timeout);
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return Outcome::Error(format!("invalid gRPC target {addr}: {e}")),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {within}: {e}"
            ));
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {within}: context deadline exceeded"
            ));
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    let call = async {
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
        client
            .unary(
                tonic::Request::new(health::HealthCheckRequest {
                    service: service.to_string(),
                }),
                path,
                ProstCodec::<health::HealthCheckRequest, health::HealthCheckResponse>::default(),
            )
            .await
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {within}"
        )),
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => Outcome::Failure(format!(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            s.message()
        )),
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {within}"
        )),
        Ok(Err(s)) => Outcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
            s.code(),
            s.message()
        )),
        Ok(Ok(resp)) => {
            let st = resp.into_inner().status;
            if st == health::SERVING {
                Outcome::Success
            } else {
                Outcome::Failure(format!(
                    "service unhealthy (responded with {:?})",
                    health::status_name(st)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
