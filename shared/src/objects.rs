//! Object storage for export files: S3 in AWS, a folder of the data directory locally. Files
//! are written as a stream of chunks and appear whole or not at all.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::error::Result;

/// S3's smallest part, except the last one.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The part size uploads use unless told otherwise.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Where export files go, and how they are handed out.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Starts writing the object `key`; nothing is visible until `finish`.
    async fn upload(&self, key: &str, content_type: &str) -> Result<Box<dyn Upload>>;
    /// A URL that downloads the object as `file_name` until `valid_for` has passed.
    async fn download_url(&self, key: &str, file_name: &str, valid_for: Duration)
    -> Result<String>;
}

/// An object being written.
#[async_trait]
pub trait Upload: Send {
    /// Appends bytes.
    async fn write(&mut self, bytes: &[u8]) -> Result<()>;
    /// Makes the object visible, whole.
    async fn finish(self: Box<Self>) -> Result<()>;
    /// Drops everything written; no partial object or open upload remains.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// For functions that write no files: refuses, so a misconfiguration shows at once.
pub struct NoObjects;

#[async_trait]
impl ObjectStore for NoObjects {
    async fn upload(&self, key: &str, _content_type: &str) -> Result<Box<dyn Upload>> {
        Err(anyhow::anyhow!("this function has no object storage; cannot write {key}").into())
    }

    async fn download_url(&self, key: &str, _: &str, _: Duration) -> Result<String> {
        Err(anyhow::anyhow!("this function has no object storage; cannot link {key}").into())
    }
}

/// Export files in an S3 bucket, uploaded in parts, handed out as presigned URLs.
#[derive(Clone)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
    part_size: usize,
}

impl S3Objects {
    /// Files in `bucket`, uploaded in parts of `DEFAULT_PART_SIZE`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// Uploads in parts of `bytes`. S3 refuses parts under `MIN_PART_SIZE` (but the last), so
    /// smaller sizes are only for tests against a server configured to accept them.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The client, for tests and tools that inspect the bucket.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn upload(&self, key: &str, content_type: &str) -> Result<Box<dyn Upload>> {
        Ok(Box::new(S3Upload {
            objects: self.clone(),
            key: key.to_string(),
            content_type: content_type.to_string(),
            buffer: Vec::with_capacity(self.part_size.min(DEFAULT_PART_SIZE)),
            upload_id: None,
            parts: Vec::new(),
        }))
    }

    async fn download_url(
        &self,
        key: &str,
        file_name: &str,
        valid_for: Duration,
    ) -> Result<String> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid_for)
            .context("presigning settings")?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(attachment(file_name))
            .presigned(config)
            .await
            .context("presigning a download")?;
        Ok(request.uri().to_string())
    }
}

/// `attachment; filename="…"` with a name safe to quote.
pub(crate) fn attachment(file_name: &str) -> String {
    let safe: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{safe}\"")
}

struct S3Upload {
    objects: S3Objects,
    key: String,
    content_type: String,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
}

impl S3Upload {
    /// Sends `body` as the next part, starting the multipart upload on the first.
    async fn send_part(&mut self, body: Vec<u8>) -> Result<()> {
        let s3 = &self.objects.client;
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let started = s3
                    .create_multipart_upload()
                    .bucket(&self.objects.bucket)
                    .key(&self.key)
                    .content_type(&self.content_type)
                    .send()
                    .await
                    .context("starting a multipart upload")?;
                let id = started
                    .upload_id
                    .context("S3 gave no upload id for a multipart upload")?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = i32::try_from(self.parts.len() + 1).context("too many parts")?;
        let sent = s3
            .upload_part()
            .bucket(&self.objects.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .with_context(|| format!("uploading part {number}"))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(sent.e_tag)
                .build(),
        );
        Ok(())
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(bytes);
        // Parts of exactly the part size; the rest waits for more bytes or the end.
        while self.buffer.len() >= self.objects.part_size {
            let rest = self.buffer.split_off(self.objects.part_size);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        let s3 = self.objects.client.clone();
        if self.upload_id.is_none() {
            // Small enough for one request.
            let body = std::mem::take(&mut self.buffer);
            s3.put_object()
                .bucket(&self.objects.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .context("uploading a file")?;
            return Ok(());
        }
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            if let Err(e) = self.send_part(last).await {
                self.abort().await?;
                return Err(e);
            }
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        let completed = s3
            .complete_multipart_upload()
            .bucket(&self.objects.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(self.parts.clone()))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = completed {
            self.abort().await?;
            return Err(anyhow::Error::from(e)
                .context("completing a multipart upload")
                .into());
        }
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        if let Some(upload_id) = &self.upload_id {
            self.objects
                .client
                .abort_multipart_upload()
                .bucket(&self.objects.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .send()
                .await
                .context("aborting a multipart upload")?;
        }
        Ok(())
    }
}

/// Export files in a folder, handed out as links to the local server that expire.
/// The folder, under the data folder, that every local object (export file) lives in.
pub const EXPORTS_PREFIX: &str = "exports/";

pub struct LocalObjects {
    root: PathBuf,
    base_url: String,
    signer: crate::identity::TokenAuthority,
}

impl LocalObjects {
    /// Files under `root`, downloaded from the server at `base_url` (`/v1/files/…`) with links
    /// signed by `signer`.
    pub fn new(
        root: impl Into<PathBuf>,
        base_url: impl Into<String>,
        signer: crate::identity::TokenAuthority,
    ) -> Self {
        Self {
            root: root.into(),
            base_url: base_url.into(),
            signer,
        }
    }

    /// Where an object lives on disk; `None` for keys outside the exports folder (the data
    /// folder also holds the database and the token secret) or that would leave it.
    pub fn path_of(&self, key: &str) -> Option<PathBuf> {
        let safe = key.starts_with(EXPORTS_PREFIX)
            && key.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        safe.then(|| self.root.join(key))
    }

    /// The object key and file name a download link was signed for, if it is valid now.
    pub fn verify_link(&self, token: &str) -> Option<(String, String)> {
        self.signer.verify_download(token)
    }
}

#[async_trait]
impl ObjectStore for LocalObjects {
    async fn upload(&self, key: &str, _content_type: &str) -> Result<Box<dyn Upload>> {
        let path = self
            .path_of(key)
            .with_context(|| format!("{key:?} is not a safe object key"))?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let partial = path.with_extension("partial");
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // Export files hold keys: readable by their owner only.
        #[cfg(unix)]
        options.mode(0o600);
        let file = options
            .open(&partial)
            .await
            .with_context(|| format!("creating {}", partial.display()))?;
        Ok(Box::new(LocalUpload {
            file: tokio::io::BufWriter::new(file),
            partial,
            path,
        }))
    }

    async fn download_url(
        &self,
        key: &str,
        file_name: &str,
        valid_for: Duration,
    ) -> Result<String> {
        let valid_for = chrono::Duration::from_std(valid_for).context("link lifetime")?;
        let token = self.signer.mint_download(key, file_name, valid_for)?;
        Ok(format!("{}/v1/files?link={token}", self.base_url))
    }
}

struct LocalUpload {
    file: tokio::io::BufWriter<tokio::fs::File>,
    partial: PathBuf,
    path: PathBuf,
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt as _;
        self.file
            .write_all(bytes)
            .await
            .with_context(|| format!("writing {}", self.partial.display()))?;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        use tokio::io::AsyncWriteExt as _;
        self.file.flush().await.context("flushing an export file")?;
        self.file
            .get_ref()
            .sync_all()
            .await
            .context("syncing an export file")?;
        // The rename is atomic: the file appears whole or not at all.
        tokio::fs::rename(&self.partial, &self.path)
            .await
            .with_context(|| format!("moving {} into place", self.path.display()))?;
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        drop(self.file);
        match tokio::fs::remove_file(&self.partial).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow::Error::from(e)
                .context("removing a partial export file")
                .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_keys_never_leave_the_folder() {
        let objects = LocalObjects::new(
            "/data",
            "http://x",
            crate::identity::TokenAuthority::new(b"0123456789abcdef0123456789abcdef"),
        );
        assert_eq!(
            objects.path_of("exports/acme/p/2026.csv"),
            Some(PathBuf::from("/data/exports/acme/p/2026.csv"))
        );
        for bad in [
            "",
            "../etc/passwd",
            "a/../../b",
            "/abs",
            "a//b",
            "a/./b",
            "a b",
            "a\\b",
            // The rest of the data folder is not the exports folder.
            "token-secret",
            "keypool.db",
            "exports",
            "exportsx/a.csv",
            "exports/../token-secret",
        ] {
            assert_eq!(objects.path_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn attachment_names_are_quoted_safely() {
        assert_eq!(
            attachment("Spring \"cohort\".csv"),
            "attachment; filename=\"Spring__cohort_.csv\""
        );
    }
}
