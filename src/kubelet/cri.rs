//! CRI runtime.v1 client over containerd's unix socket (bindings from the
//! `k8s-cri` crate, tonic transport).
//!
//! Invariant: one `Cri` (one HTTP/2 connection) is shared by every kubelet
//! task; it is cheap to clone and reconnects lazily if containerd restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1 as api;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot connect to the container runtime at {path}: {source}")]
    Connect {
        path: String,
        source: tonic::transport::Error,
    },
    #[error("container runtime: {0}")]
    Status(#[from] tonic::Status),
}

/// Both CRI services over one channel.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    pub socket: PathBuf,
}

impl Cri {
    /// A lazily connecting client: nothing is dialled until the first call,
    /// and a dead connection is re-dialled on the next one.
    pub fn new(socket: &Path) -> Result<Cri, CriError> {
        let path = socket.to_path_buf();
        let connector_path = path.clone();
        let channel = Endpoint::try_from("http://[::]:50051")
            .map_err(|source| CriError::Connect {
                path: path.display().to_string(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let p = connector_path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
                }
            }));
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            image: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
            socket: path,
        })
    }

    /// Wait until the runtime answers `Version` (containerd just started).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<api::VersionResponse, CriError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut rt = self.runtime.clone();
            match rt.version(api::VersionRequest::default()).await {
                Ok(v) => return Ok(v.into_inner()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
