//! Sending webhooks: where they may go, how they are signed, and one attempt's bounds.
//!
//! - **Where**: https only, to a host whose every address is public: loopback, private,
//!   link-local (the metadata service at 169.254.169.254), unique-local, multicast, shared
//!   (100.64/10) and other special-purpose ranges are refused when the endpoint is saved and
//!   again at every send. The sending client resolves names itself and hands the connector
//!   only the addresses it checked, so a name that changes what it resolves to (DNS
//!   rebinding) cannot slip past: what is checked is what is connected to. Redirects are not
//!   followed and no proxy is used. The local server may allow http and private targets
//!   (`--allow-private-webhooks`) for a receiver on the same machine.
//! - **Signed** by the Standard Webhooks specification (the `standardwebhooks` crate):
//!   `webhook-id`, `webhook-timestamp`, and `webhook-signature` with one `v1,` signature per
//!   live secret (two during a rotation).
//! - **Bounded**: 5 s to connect, 10 s for the whole answer, at most `MAX_PAYLOAD_BYTES` sent
//!   and `MAX_ANSWER_BYTES` of the answer read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;

use crate::domain::{AttemptOutcome, Delivery, DeliveryId, Webhook, WebhookId};
use crate::time::Timestamp;

/// Longest endpoint URL, in characters.
pub const MAX_URL_CHARS: usize = 2000;
/// Largest payload sent.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Most bytes of an answer read (the rest is dropped with the connection).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Time to connect, and to get the whole answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests to one endpoint in flight at once from one sender (a process, or a function
/// instance): an endpoint is never sent more than this many deliveries side by side.
pub const SENDS_PER_ENDPOINT: usize = 4;
/// How long a host's name may take to resolve, at a save as at a send: a resolver that never
/// answers cannot hold a request (or a sender's slot) open.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where deliveries go to be sent once stored (new, or asked to be sent again): the local
/// server's sender, or in AWS the delivery queue. Whatever it does not take is found by the
/// deliveries' due markers.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn submit(&self, deliveries: &[(WebhookId, DeliveryId)]) -> crate::error::Result<()>;
}

/// A queue that sends nothing by itself: what a function that only stores deliveries hands
/// them to, when something else sends (tests drive attempts themselves).
pub struct Stored;

#[async_trait]
impl DeliveryQueue for Stored {
    async fn submit(&self, _: &[(WebhookId, DeliveryId)]) -> crate::error::Result<()> {
        Ok(())
    }
}

/// A delivery's place on the queue, as a message says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryRef {
    pub webhook_id: WebhookId,
    pub delivery_id: DeliveryId,
}

/// Deliveries sent to the webhooks function through SQS (AWS): a message per delivery, delayed
/// until it is due by up to SQS's 15 minutes; a later one is found by the function's sweep of
/// the due markers.
pub struct SqsDeliveries {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeliveries {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Queues one delivery to be attempted in `after` (at most 15 minutes).
    pub async fn submit_after(
        &self,
        delivery: DeliveryRef,
        after: Duration,
    ) -> crate::error::Result<()> {
        let body = serde_json::to_string(&delivery).map_err(anyhow::Error::from)?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(after.as_secs().min(900) as i32)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("queueing a webhook delivery: {e}"))?;
        Ok(())
    }
}

#[async_trait]
impl DeliveryQueue for SqsDeliveries {
    async fn submit(&self, deliveries: &[(WebhookId, DeliveryId)]) -> crate::error::Result<()> {
        for (webhook_id, delivery_id) in deliveries {
            let delivery = DeliveryRef {
                webhook_id: *webhook_id,
                delivery_id: *delivery_id,
            };
            self.submit_after(delivery, Duration::ZERO).await?;
        }
        Ok(())
    }
}

/// Whether targets on this machine's own network are allowed (the local server's
/// `--allow-private-webhooks`; never in AWS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reach {
    pub allow_private: bool,
}

/// True for an address a webhook must never be sent to (unless private targets are allowed).
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, 192.0.0.0/24, and benchmarking, 198.18.0.0/15.
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        // Reserved, 240.0.0.0/4.
        || a >= 240
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local, fc00::/7; link-local, fe80::/10; site-local (deprecated), fec0::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // Documentation, 2001:db8::/32; NAT64 and 6to4 carry IPv4 addresses we cannot vet.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || first == 0x0064
        || first == 0x2002
}

/// Parses an endpoint URL: absolute, https (http only where private targets are allowed), a
/// host, no user name or password, at most `MAX_URL_CHARS`. The message is for people.
pub fn parse_url(text: &str, reach: Reach) -> Result<url::Url, String> {
    let text = text.trim();
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("url has at most {MAX_URL_CHARS} characters"));
    }
    let url = url::Url::parse(text).map_err(|_| {
        "url is an absolute URL such as https://hooks.example.com/keypool".to_string()
    })?;
    match url.scheme() {
        "https" => {}
        "http" if reach.allow_private => {}
        _ => return Err("url must be an https URL".into()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("url needs a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry a user name or password".into());
    }
    Ok(url)
}

/// Finds the addresses of a host name.
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver.
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// The addresses of `url`'s host that a webhook may go to; an error names why there is none.
pub async fn allowed_addresses(
    resolver: &dyn Resolver,
    url: &url::Url,
    reach: Reach,
) -> Result<Vec<SocketAddr>, String> {
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Domain(name)) => {
            match tokio::time::timeout(RESOLVE_TIMEOUT, resolver.resolve(name, port)).await {
                Ok(resolved) => {
                    resolved.map_err(|e| format!("the host {name} does not resolve: {e}"))?
                }
                Err(_) => {
                    return Err(format!(
                        "the host {name} did not resolve within {} seconds",
                        RESOLVE_TIMEOUT.as_secs()
                    ));
                }
            }
        }
        None => return Err("url needs a host".into()),
    };
    if addresses.is_empty() {
        return Err("the host has no address".into());
    }
    // Every address must be allowed: the connector could pick any of them.
    if !reach.allow_private
        && let Some(bad) = addresses.iter().find(|a| forbidden(a.ip()))
    {
        return Err(format!(
            "the host resolves to {}, an address on a private, loopback, link-local or other \
             reserved network; webhooks go to public addresses only",
            bad.ip()
        ));
    }
    Ok(addresses)
}

/// A resolver for reqwest that answers only with checked addresses.
struct Checked {
    resolver: Arc<dyn Resolver>,
    reach: Reach,
}

impl reqwest::dns::Resolve for Checked {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (resolver, reach) = (self.resolver.clone(), self.reach);
        Box::pin(async move {
            let url = url::Url::parse(&format!("https://{}/", name.as_str()))
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addresses = allowed_addresses(resolver.as_ref(), &url, reach)
                .await
                .map_err(Box::<dyn std::error::Error + Send + Sync>::from)?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends deliveries: one shared client, bounded in time and size, that reaches only allowed
/// addresses, at most `SENDS_PER_ENDPOINT` requests to one endpoint at once.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    resolver: Arc<dyn Resolver>,
    reach: Reach,
    /// Each endpoint's gate: held only while its request is sent and answered, so the store
    /// work around an attempt does not count against the endpoint's concurrency.
    gates: Arc<std::sync::Mutex<std::collections::HashMap<WebhookId, Arc<tokio::sync::Semaphore>>>>,
}

impl Sender {
    /// A sender that resolves with `resolver`.
    pub fn new(resolver: Arc<dyn Resolver>, reach: Reach) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(Checked {
                resolver: resolver.clone(),
                reach,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(ANSWER_TIMEOUT)
            .user_agent("KeyPool-Webhooks/1")
            .https_only(!reach.allow_private)
            .build()?;
        Ok(Self {
            client,
            resolver,
            reach,
            gates: Arc::default(),
        })
    }

    /// The policy this sender follows.
    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// Checks an endpoint URL as a save does: its shape, and where its host resolves now.
    pub async fn check_target(&self, text: &str) -> Result<url::Url, String> {
        let url = parse_url(text, self.reach)?;
        allowed_addresses(self.resolver.as_ref(), &url, self.reach).await?;
        Ok(url)
    }

    /// One attempt of `delivery` to `webhook`, signed with its live secrets at `now`.
    pub async fn attempt(
        &self,
        webhook: &Webhook,
        delivery: &Delivery,
        now: Timestamp,
    ) -> AttemptOutcome {
        let failed = |error: String| AttemptOutcome::Failed {
            status: None,
            error,
        };
        if delivery.payload.len() > MAX_PAYLOAD_BYTES {
            return failed("the payload is larger than a webhook may carry".into());
        }
        let url = match parse_url(&webhook.url, self.reach) {
            Ok(url) => url,
            Err(e) => return failed(e),
        };
        // Literal addresses never reach the resolver: check them here.
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = url.host()
            && let Err(e) = allowed_addresses(self.resolver.as_ref(), &url, self.reach).await
        {
            return failed(e);
        }
        let headers = match sign(webhook, delivery, now) {
            Ok(headers) => headers,
            Err(e) => return failed(format!("could not sign: {e}")),
        };
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delivery.payload.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
            gates
                .entry(webhook.webhook_id)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(SENDS_PER_ENDPOINT)))
                .clone()
        };
        // The gate is never closed; held until the answer has been read.
        let _sending = gate.acquire_owned().await.ok();
        let mut answer = match request.send().await {
            Ok(answer) => answer,
            Err(e) => return failed(describe(&e)),
        };
        let status = answer.status().as_u16();
        // Read a little of the answer (so a kept connection stays usable), never all of it.
        let mut read = 0;
        while read < MAX_ANSWER_BYTES {
            match answer.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        if (200..300).contains(&status) {
            AttemptOutcome::Delivered { status }
        } else {
            AttemptOutcome::Failed {
                status: Some(status),
                error: format!("the endpoint answered {status}"),
            }
        }
    }
}

/// The Standard Webhooks headers of one attempt: the event's id, the time, and a signature
/// per live secret, space-separated.
pub fn sign(
    webhook: &Webhook,
    delivery: &Delivery,
    now: Timestamp,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let id = delivery.event_id.to_string();
    let timestamp = now.timestamp();
    let mut signatures = Vec::new();
    for secret in webhook.signing_secrets(now) {
        let signer = standardwebhooks::Webhook::new(secret)
            .map_err(|e| anyhow::anyhow!("a webhook secret is not valid: {e:?}"))?;
        signatures.push(
            signer
                .sign(&id, timestamp, delivery.payload.as_bytes())
                .map_err(|e| anyhow::anyhow!("signing failed: {e:?}"))?,
        );
    }
    anyhow::ensure!(!signatures.is_empty(), "the endpoint has no secret");
    Ok(vec![
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ])
}

/// A new secret: `whsec_` and base64 of 24 random bytes from the operating system.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// Why a send failed, in words that name no internals beyond the kind of failure.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within 10 seconds".into()
    } else if e.is_connect() {
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = source {
            if s.to_string()
                .contains("webhooks go to public addresses only")
            {
                return s.to_string();
            }
            source = s.source();
        }
        "could not connect".into()
    } else if e.is_redirect() {
        "the endpoint redirected; webhooks do not follow redirects".into()
    } else {
        "the request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
        ] {
            assert!(forbidden(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::6810:84e5",
            "1.1.1.1",
        ] {
            assert!(!forbidden(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn urls_are_https_with_a_host_and_no_credentials() {
        let strict = Reach::default();
        assert!(parse_url("https://hooks.example.com/x", strict).is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "hooks.example.com",
            "",
        ] {
            assert!(parse_url(bad, strict).is_err(), "{bad}");
        }
        let local = Reach {
            allow_private: true,
        };
        assert!(parse_url("http://127.0.0.1:9000/hook", local).is_ok());
    }
}
