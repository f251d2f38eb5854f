//! The local default transport: each letter written as an `.eml` file by lettre's file
//! transport, into `<data-dir>/outbox/<org>/<id>.eml`.
//!
//! One folder per organization, named by its id (letters, digits, `-`, `_`: never `..`), so
//! an organization's listing reads only its own folder. File names are lettre's random UUIDs
//! (v4), not guessable from outside; an id asked for is read only when it has that shape, so
//! no path leaves the folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Semaphore;

use super::{Letter, MailError, MailFrom, Mailer, SENDS_AT_ONCE, Sent};
use crate::identity::OrgId;

/// Largest message file read back.
pub const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;

/// Letters written into a folder instead of sent.
pub struct Outbox {
    root: PathBuf,
    from: MailFrom,
    slots: Arc<Semaphore>,
}

impl Outbox {
    /// An outbox under `root` (the data folder's `outbox`), created on first send.
    pub fn new(root: impl Into<PathBuf>, from: MailFrom) -> Self {
        Self {
            root: root.into(),
            from,
            slots: Arc::new(Semaphore::new(SENDS_AT_ONCE)),
        }
    }

    /// Where an organization's letters are.
    pub fn folder(&self, org: &OrgId) -> PathBuf {
        self.root.join(org.as_str())
    }

    /// The ids of an organization's letters, newest first.
    pub async fn ids(&self, org: &OrgId) -> std::io::Result<Vec<String>> {
        let mut entries = match tokio::fs::read_dir(self.folder(org)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".eml")) else {
                continue;
            };
            if is_id(id) {
                let modified = entry.metadata().await?.modified()?;
                found.push((modified, id.to_owned()));
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    /// One letter's message as written, if the organization has one by that id.
    pub async fn message(&self, org: &OrgId, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_id(id) {
            return Ok(None);
        }
        read_bounded(&self.folder(org).join(format!("{id}.eml"))).await
    }
}

async fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt as _;
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MESSAGE_BYTES).read_to_end(&mut bytes).await?;
    Ok(Some(bytes))
}

/// Whether `id` has the shape of the ids lettre writes (a hyphenated UUID).
fn is_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, letter: &Letter) -> Result<Sent, MailError> {
        let (message, message_id) = letter.to_message(&self.from)?;
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| MailError::Transient("the outbox is closed".into()))?;
        let folder = self.folder(&letter.org);
        tokio::fs::create_dir_all(&folder)
            .await
            .map_err(|e| MailError::Transient(format!("the outbox folder: {e}")))?;
        let transport = AsyncFileTransport::<Tokio1Executor>::new(&folder);
        let id = transport
            .send(message)
            .await
            .map_err(|e| MailError::Transient(format!("the outbox: {e}")))?;
        tracing::info!(org = %letter.org, reference = %letter.reference, outbox_id = %id, "letter written to the outbox");
        Ok(Sent { message_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_under_the_org_and_reads_back_only_by_id() {
        let dir = std::env::temp_dir().join(format!("keypool-outbox-{}", uuid::Uuid::now_v7()));
        let outbox = Outbox::new(&dir, MailFrom::default());
        let org = OrgId::parse("org-1").unwrap();
        let other = OrgId::parse("org-2").unwrap();
        let letter = Letter {
            org: org.clone(),
            to_email: "ann@example.org".into(),
            to_name: None,
            subject: "Your key".into(),
            body: "KEY-1".into(),
            reference: "r1".into(),
        };
        let sent = outbox.send(&letter).await.unwrap();
        let ids = outbox.ids(&org).await.unwrap();
        assert_eq!(ids.len(), 1);
        let text =
            String::from_utf8(outbox.message(&org, &ids[0]).await.unwrap().unwrap()).unwrap();
        assert!(
            text.contains(&sent.message_id) && text.contains("KEY-1"),
            "{text}"
        );
        assert!(outbox.ids(&other).await.unwrap().is_empty());
        assert_eq!(outbox.message(&other, &ids[0]).await.unwrap(), None);
        assert_eq!(outbox.message(&org, "../org-1/x").await.unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
