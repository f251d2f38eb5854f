//! Signed launches: a short-lived JWT (ES256) that tells a course's platform who is launching
//! which assignment, checkable with our public keys alone (`GET /.well-known/jwks.json`).
//!
//! The token is a JWS put together here (header, claims, signature: RFC 7515's compact form),
//! so that the signature can come from a key in this process (the local server: a P-256 key
//! in the data folder) or from AWS KMS, whose private keys never leave it (its Sign API, with
//! ECDSA_SHA_256 over the signing input). Both publish their public keys as a JWK set with the
//! key ids (RFC 7638 thumbprints) that tokens name; during a rotation two keys are published
//! and the newer one signs.

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::OnceCell;

use crate::error::Result;

/// How long a launch token is good for: enough to follow a link, never more than 5 minutes.
pub const TOKEN_SECONDS: i64 = 300;

/// What a launch token says. Registered claims (RFC 7519) and KeyPool's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchClaims {
    /// Who issued it: this service's public URL.
    pub iss: String,
    /// The launch URL's origin: only that platform accepts it.
    pub aud: String,
    /// The learner.
    pub sub: String,
    /// The organization whose course it is.
    pub org: String,
    pub course_id: String,
    pub assignment_id: String,
    /// When the learner's access to the course ends (RFC 3339).
    pub assignment_expires_at: String,
    /// Issued at and expiry, seconds since the epoch.
    pub iat: i64,
    pub exp: i64,
    /// A unique id, so that a platform can accept each token once.
    pub jti: String,
}

/// Signs launch tokens and publishes the keys that check them.
#[async_trait]
pub trait LaunchSigner: Send + Sync {
    /// The `iss` of the tokens it signs.
    fn issuer(&self) -> &str;
    /// The compact JWS of `claims`, signed by the current key.
    async fn sign(&self, claims: &LaunchClaims) -> Result<String>;
    /// The public keys that check its tokens, current first.
    async fn keys(&self) -> Result<JwkSet>;
}

/// A public P-256 key (the uncompressed point, 0x04 || x || y) as a JWK for ES256, with its
/// RFC 7638 thumbprint as key id.
pub fn es256_jwk(point: &[u8]) -> anyhow::Result<Jwk> {
    anyhow::ensure!(
        point.len() == 65 && point[0] == 4,
        "not an uncompressed P-256 point"
    );
    let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&point[33..]);
    // The thumbprint hashes the required members in lexicographic order, no spaces.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()));
    Ok(Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::ES256),
            key_id: Some(kid),
            ..CommonParameters::default()
        },
        algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x,
            y,
        }),
    })
}

/// The signing input of a token: base64url(header) "." base64url(claims).
fn signing_input(kid: &str, claims: &LaunchClaims) -> anyhow::Result<String> {
    let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": kid });
    let header = serde_json::to_vec(&header).context("encoding a launch token's header")?;
    let claims = serde_json::to_vec(claims).context("encoding a launch token's claims")?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    ))
}

/// Keys held by this process: the local server's, from its data folder.
pub struct LocalSigner {
    issuer: String,
    /// The current key first; an earlier one is still published while tokens it signed live.
    keys: Vec<(EcdsaKeyPair, Jwk)>,
}

impl LocalSigner {
    /// A signer over PKCS#8 P-256 keys, the current one first.
    pub fn new(issuer: impl Into<String>, pkcs8: &[&[u8]]) -> anyhow::Result<Self> {
        anyhow::ensure!(!pkcs8.is_empty(), "a launch signer needs a key");
        let keys = pkcs8
            .iter()
            .map(|der| {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| anyhow::anyhow!("a launch key is not a PKCS#8 P-256 key"))?;
                let jwk = es256_jwk(pair.public_key().as_ref())?;
                Ok((pair, jwk))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            issuer: issuer.into(),
            keys,
        })
    }

    /// A new P-256 key, as PKCS#8 DER, from the operating system's random source.
    pub fn generate_key() -> anyhow::Result<Vec<u8>> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow::anyhow!("could not generate a launch key"))?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| anyhow::anyhow!("could not encode a launch key"))?;
        Ok(der.as_ref().to_vec())
    }
}

#[async_trait]
impl LaunchSigner for LocalSigner {
    fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn sign(&self, claims: &LaunchClaims) -> Result<String> {
        let (pair, jwk) = &self.keys[0];
        let kid = jwk.common.key_id.as_deref().unwrap_or_default();
        let input = signing_input(kid, claims)?;
        let signature = pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| anyhow::anyhow!("could not sign a launch token"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    async fn keys(&self) -> Result<JwkSet> {
        Ok(JwkSet {
            keys: self.keys.iter().map(|(_, jwk)| jwk.clone()).collect(),
        })
    }
}

/// Keys in AWS KMS (`ECC_NIST_P256`, `SIGN_VERIFY`): the private keys never leave it.
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    issuer: String,
    /// Key ids or ARNs, the current one first.
    key_ids: Vec<String>,
    /// The public keys, read once per process (they never change for a key id).
    jwks: OnceCell<Arc<Vec<Jwk>>>,
}

impl KmsSigner {
    pub fn new(
        client: aws_sdk_kms::Client,
        issuer: impl Into<String>,
        key_ids: Vec<String>,
    ) -> Self {
        Self {
            client,
            issuer: issuer.into(),
            key_ids,
            jwks: OnceCell::new(),
        }
    }

    async fn public_keys(&self) -> Result<Arc<Vec<Jwk>>> {
        let keys = self
            .jwks
            .get_or_try_init(|| async {
                let mut keys = Vec::with_capacity(self.key_ids.len());
                for id in &self.key_ids {
                    let out = self
                        .client
                        .get_public_key()
                        .key_id(id)
                        .send()
                        .await
                        .context("reading a launch key's public key from KMS")?;
                    let der = out.public_key().context("KMS gave no public key")?.as_ref();
                    keys.push(es256_jwk(point_of_p256_spki(der)?)?);
                }
                anyhow::Ok(Arc::new(keys))
            })
            .await?;
        Ok(keys.clone())
    }
}

#[async_trait]
impl LaunchSigner for KmsSigner {
    fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn sign(&self, claims: &LaunchClaims) -> Result<String> {
        let keys = self.public_keys().await?;
        let (Some(key_id), Some(jwk)) = (self.key_ids.first(), keys.first()) else {
            return Err(anyhow::anyhow!("no launch key is configured").into());
        };
        let kid = jwk.common.key_id.as_deref().unwrap_or_default();
        let input = signing_input(kid, claims)?;
        let out = self
            .client
            .sign()
            .key_id(key_id)
            .message(aws_sdk_kms::primitives::Blob::new(input.as_bytes()))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .context("signing a launch token with KMS")?;
        let der = out.signature().context("KMS gave no signature")?.as_ref();
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(raw_of_der_signature(der)?)
        ))
    }

    async fn keys(&self) -> Result<JwkSet> {
        Ok(JwkSet {
            keys: self.public_keys().await?.as_ref().clone(),
        })
    }
}

/// The fixed DER prefix of a P-256 SubjectPublicKeyInfo (RFC 5480): SEQUENCE, the algorithm
/// (id-ecPublicKey, prime256v1), and the BIT STRING header of the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The uncompressed point of a P-256 SubjectPublicKeyInfo, as KMS's GetPublicKey gives it.
pub fn point_of_p256_spki(der: &[u8]) -> anyhow::Result<&[u8]> {
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 4 => Ok(point),
        _ => Err(anyhow::anyhow!("the launch key is not a P-256 public key")),
    }
}

/// An ECDSA signature in DER (`SEQUENCE { r INTEGER, s INTEGER }`, as KMS gives it) in the
/// fixed 64-byte form JWS uses (RFC 7518 §3.4: r and s, 32 bytes each, big-endian).
pub fn raw_of_der_signature(der: &[u8]) -> anyhow::Result<[u8; 64]> {
    fn integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if tag != 0x02 || len > 33 || rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        // A leading zero only keeps the integer positive.
        let value = match value {
            [0, tail @ ..] if len == 33 => tail,
            _ if len == 33 => return None,
            _ => value,
        };
        Some((value, rest))
    }
    let parsed = (|| {
        let (&tag, rest) = der.split_first()?;
        let (&len, body) = rest.split_first()?;
        if tag != 0x30 || usize::from(len) != body.len() {
            return None;
        }
        let (r, rest) = integer(body)?;
        let (s, rest) = integer(rest)?;
        if !rest.is_empty() {
            return None;
        }
        let mut raw = [0u8; 64];
        raw[32 - r.len()..32].copy_from_slice(r);
        raw[64 - s.len()..].copy_from_slice(s);
        Some(raw)
    })();
    parsed.ok_or_else(|| anyhow::anyhow!("KMS gave a signature that is not DER ECDSA"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signatures_become_fixed_width() {
        // r with a leading zero (high bit set), s short.
        let mut der = vec![0x30, 0x00, 0x02, 33, 0x00];
        der.extend([0x80; 32]);
        der.extend([0x02, 2, 0x01, 0x02]);
        der[1] = (der.len() - 2) as u8;
        let raw = raw_of_der_signature(&der).unwrap();
        assert_eq!(&raw[..32], &[0x80; 32]);
        assert_eq!(&raw[32..62], &[0; 30]);
        assert_eq!(&raw[62..], &[1, 2]);
        for bad in [&[][..], &[0x30, 0x01, 0x00], &der[..der.len() - 1]] {
            assert!(raw_of_der_signature(bad).is_err());
        }
    }

    #[tokio::test]
    async fn local_tokens_verify_with_the_published_key_and_name_it() {
        let current = LocalSigner::generate_key().unwrap();
        let previous = LocalSigner::generate_key().unwrap();
        let signer = LocalSigner::new("https://keys.example", &[&current, &previous]).unwrap();
        let claims = LaunchClaims {
            iss: "https://keys.example".into(),
            aud: "https://lab.example".into(),
            sub: "lea".into(),
            org: "acme".into(),
            course_id: "c".into(),
            assignment_id: "a".into(),
            assignment_expires_at: "2027-01-01T00:00:00Z".into(),
            iat: chrono::Utc::now().timestamp(),
            exp: chrono::Utc::now().timestamp() + 60,
            jti: "j".into(),
        };
        let token = signer.sign(&claims).await.unwrap();
        let keys = signer.keys().await.unwrap();
        assert_eq!(keys.keys.len(), 2);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid, keys.keys[0].common.key_id);
        let key = jsonwebtoken::DecodingKey::from_jwk(&keys.keys[0]).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["https://lab.example"]);
        validation.set_issuer(&["https://keys.example"]);
        let decoded = jsonwebtoken::decode::<LaunchClaims>(&token, &key, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
        // The other key does not verify it.
        let other = jsonwebtoken::DecodingKey::from_jwk(&keys.keys[1]).unwrap();
        assert!(jsonwebtoken::decode::<LaunchClaims>(&token, &other, &validation).is_err());
    }
}
