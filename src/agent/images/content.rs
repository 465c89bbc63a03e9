//! containerd's own gRPC API (not CRI) for image import: content store,
//! image store and leases, in the `k8s.io` namespace that CRI reads.
//!
//! Invariants: every request carries `containerd-namespace: k8s.io`; while
//! an import runs, everything it writes is held by a lease (expiring after
//! an hour, deleted at the end) so containerd's GC cannot collect blobs that
//! no image references yet; a blob already in the store is never rewritten.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateImageRequest, CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest,
    GetImageRequest, Image, Info, InfoRequest, UpdateImageRequest, UpdateRequest, WriteAction,
    WriteContentRequest, WriteContentResponse,
};
use containerd_client::types::Descriptor as PbDescriptor;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status};

use super::oci::Descriptor;

/// The containerd namespace CRI uses.
pub const NAMESPACE: &str = "k8s.io";

/// What `put_image` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// The name pointed at another target and was moved.
    Updated,
    Unchanged,
}

/// A connection to containerd's content, image and lease services.
#[derive(Clone)]
pub struct Store {
    content: ContentClient<Channel>,
    images: ImagesClient<Channel>,
    leases: LeasesClient<Channel>,
    lease: Option<String>,
}

impl Store {
    /// A lazily connecting client for the containerd socket.
    pub fn new(socket: &Path) -> Result<Store, tonic::transport::Error> {
        let path = socket.to_path_buf();
        let channel = Endpoint::try_from("http://[::]:50051")?
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
                }
            }));
        Ok(Store {
            content: ContentClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            images: ImagesClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            leases: LeasesClient::new(channel),
            lease: None,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        let md = req.metadata_mut();
        md.insert(
            "containerd-namespace",
            tonic::metadata::MetadataValue::from_static(NAMESPACE),
        );
        if let Some(lease) = &self.lease
            && let Ok(v) = lease.parse()
        {
            md.insert("containerd-lease", v);
        }
        req
    }

    /// Takes a lease that protects everything written through this `Store`
    /// until `end_lease` (or its one-hour expiry, if skiff dies meanwhile).
    pub async fn begin_lease(&mut self) -> Result<(), Status> {
        let id = format!("skiff-import-{}", uuid::Uuid::new_v4());
        let expire = chrono::Utc::now() + chrono::Duration::hours(1);
        let labels = HashMap::from([(
            "containerd.io/gc.expire".to_string(),
            expire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )]);
        let req = self.request(CreateLeaseRequest {
            id: id.clone(),
            labels,
        });
        self.leases.clone().create(req).await?;
        self.lease = Some(id);
        Ok(())
    }

    /// Drops the lease: from now on only image references keep blobs alive.
    pub async fn end_lease(&mut self) {
        if let Some(id) = self.lease.take() {
            let req = self.request(DeleteLeaseRequest {
                id: id.clone(),
                sync: false,
            });
            if let Err(e) = self.leases.clone().delete(req).await {
                tracing::warn!(lease = %id, "cannot delete import lease (it expires in an hour): {e}");
            }
        }
    }

    /// The stored blob's info, `None` if absent.
    pub async fn blob_info(&self, digest: &str) -> Result<Option<Info>, Status> {
        let req = self.request(InfoRequest {
            digest: digest.to_string(),
        });
        match self.content.clone().info(req).await {
            Ok(r) => Ok(r.into_inner().info),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// Adds labels to a stored blob (keeps the others).
    pub async fn add_labels(
        &self,
        digest: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), Status> {
        if labels.is_empty() {
            return Ok(());
        }
        let info = Info {
            digest: digest.to_string(),
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ..Default::default()
        };
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let req = self.request(UpdateRequest {
            info: Some(info),
            update_mask: Some(prost_types::FieldMask { paths }),
        });
        self.content.clone().update(req).await?;
        Ok(())
    }

    /// Opens a write of one blob. `None` when containerd already has it.
    pub async fn start_blob(
        &self,
        digest: &str,
        size: i64,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<BlobWriter>, Status> {
        let (tx, rx) = mpsc::channel(2);
        let reference = format!("skiff-{digest}");
        let first = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total: size,
            expected: digest.to_string(),
            ..Default::default()
        };
        tx.send(first)
            .await
            .map_err(|_| Status::cancelled("write stream closed"))?;
        let req = self.request(ReceiverStream::new(rx));
        let mut responses = match self.content.clone().write(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(None),
            Err(s) => return Err(s),
        };
        match responses.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(Status::unknown("containerd closed the write stream")),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(None),
            Err(s) => return Err(s),
        }
        Ok(Some(BlobWriter {
            tx,
            responses,
            reference,
            digest: digest.to_string(),
            size,
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            offset: 0,
        }))
    }

    /// Writes a whole in-memory blob unless present. True if written.
    pub async fn put_blob(
        &self,
        digest: &str,
        data: &[u8],
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, Status> {
        let Some(mut w) = self.start_blob(digest, data.len() as i64, labels).await? else {
            return Ok(false);
        };
        for chunk in data.chunks(super::tarball::CHUNK) {
            w.write(chunk.to_vec()).await?;
        }
        w.commit().await?;
        Ok(true)
    }

    /// An image's target and labels, `None` if there is no such image.
    pub async fn image(
        &self,
        name: &str,
    ) -> Result<Option<(Descriptor, HashMap<String, String>)>, Status> {
        let req = self.request(GetImageRequest {
            name: name.to_string(),
        });
        match self.images.clone().get(req).await {
            Ok(r) => Ok(r.into_inner().image.and_then(|i| {
                let t = i.target?;
                let desc = Descriptor {
                    media_type: t.media_type,
                    digest: t.digest,
                    size: t.size,
                    annotations: BTreeMap::new(),
                    platform: None,
                };
                Some((desc, i.labels))
            })),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// The target of an image, `None` if there is no such image.
    pub async fn image_target(&self, name: &str) -> Result<Option<Descriptor>, Status> {
        Ok(self.image(name).await?.map(|(d, _)| d))
    }

    /// Points `name` at `target` with (at least) `labels`, creating the
    /// image or moving it.
    pub async fn put_image(
        &self,
        name: &str,
        target: &Descriptor,
        labels: &BTreeMap<String, String>,
    ) -> Result<Outcome, Status> {
        let image = |labels: HashMap<String, String>| Image {
            name: name.to_string(),
            labels,
            target: Some(PbDescriptor {
                media_type: target.media_type.clone(),
                digest: target.digest.clone(),
                size: target.size,
                annotations: HashMap::new(),
            }),
            ..Default::default()
        };
        match self.image(name).await? {
            Some((t, old)) => {
                let same_target = t.digest == target.digest && t.media_type == target.media_type;
                if same_target && labels.iter().all(|(k, v)| old.get(k) == Some(v)) {
                    return Ok(Outcome::Unchanged);
                }
                let mut merged = old;
                merged.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                let req = self.request(UpdateImageRequest {
                    image: Some(image(merged)),
                    update_mask: None,
                    source_date_epoch: None,
                });
                self.images.clone().update(req).await?;
                Ok(if same_target {
                    Outcome::Unchanged
                } else {
                    Outcome::Updated
                })
            }
            None => {
                let initial = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let req = self.request(CreateImageRequest {
                    image: Some(image(initial)),
                    source_date_epoch: None,
                });
                match self.images.clone().create(req).await {
                    Ok(_) => Ok(Outcome::Created),
                    // Someone else created it meanwhile: retry as an update.
                    Err(s) if s.code() == Code::AlreadyExists => {
                        Box::pin(self.put_image(name, target, labels)).await
                    }
                    Err(s) => Err(s),
                }
            }
        }
    }
}

/// An open content write: data at increasing offsets, then `commit`, which
/// has containerd check the size and digest.
pub struct BlobWriter {
    tx: mpsc::Sender<WriteContentRequest>,
    responses: Streaming<WriteContentResponse>,
    reference: String,
    digest: String,
    size: i64,
    labels: HashMap<String, String>,
    offset: i64,
}

impl BlobWriter {
    async fn exchange(&mut self, req: WriteContentRequest) -> Result<WriteContentResponse, Status> {
        self.tx
            .send(req)
            .await
            .map_err(|_| Status::cancelled("containerd closed the write stream"))?;
        self.responses
            .message()
            .await?
            .ok_or_else(|| Status::unknown("containerd closed the write stream"))
    }

    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), Status> {
        let len = data.len() as i64;
        let req = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: self.reference.clone(),
            offset: self.offset,
            data,
            ..Default::default()
        };
        let resp = self.exchange(req).await?;
        self.offset += len;
        if resp.offset != self.offset {
            return Err(Status::data_loss(format!(
                "containerd is at offset {} of {}, expected {}",
                resp.offset, self.digest, self.offset
            )));
        }
        Ok(())
    }

    pub async fn commit(mut self) -> Result<(), Status> {
        let req = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            offset: self.offset,
            total: self.size,
            expected: self.digest.clone(),
            labels: std::mem::take(&mut self.labels),
            ..Default::default()
        };
        match self.exchange(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => Err(s),
        }
    }
}
