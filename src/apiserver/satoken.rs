//! Service-account tokens: ES256 JWTs signed with the server's
//! service-account key. Issues bound tokens for the TokenRequest API
//! (`serviceaccounts/<name>/token`) and verifies bound and legacy
//! (Secret-based) tokens for the authenticator.
//!
//! Owns: the token format and the signature. Must not: decide whether the
//! bound objects still exist (the authenticator checks them against the
//! registry with the claims returned here).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The issuer and default audience, as kubeadm clusters use.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Issuer of legacy Secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KubeClaims {
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<Ref>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<Ref>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<Ref>,
    pub serviceaccount: Ref,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub warnafter: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub aud: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iat: Option<i64>,
    pub iss: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nbf: Option<i64>,
    pub sub: String,
    #[serde(
        rename = "kubernetes.io",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub kube: Option<KubeClaims>,
    /// Legacy token claims.
    #[serde(
        rename = "kubernetes.io/serviceaccount/namespace",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub legacy_namespace: Option<String>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/secret.name",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub legacy_secret: Option<String>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/service-account.name",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub legacy_sa_name: Option<String>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/service-account.uid",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub legacy_sa_uid: Option<String>,
}

/// Who a verified token speaks for, and what must still exist.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// (kind, name, uid) of the object the token is bound to (Pod, Secret, Node).
    pub bound: Option<(&'static str, String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("token is not a JWT")]
    Malformed,
    #[error("invalid signature")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("token audiences {0:?} are invalid for the target audiences")]
    Audience(Vec<String>),
    #[error("token does not name a service account")]
    Subject,
}

pub struct Signer {
    key: EcdsaKeyPair,
    public: Vec<u8>,
    kid: String,
    rng: SystemRandom,
}

impl Signer {
    /// From the PKCS#8 PEM of `service.key`.
    pub fn from_pem(pem: &str) -> Result<Signer, String> {
        let der = pem_body(pem).ok_or("service-account key is not PEM")?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| format!("service-account key: {e}"))?;
        let public = key.public_key().as_ref().to_vec();
        let kid = B64.encode(sha2::Sha256::digest(&public));
        Ok(Signer {
            key,
            public,
            kid,
            rng,
        })
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(claims).unwrap_or_default())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map(|s| s.as_ref().to_vec())
            .unwrap_or_default();
        format!("{input}.{}", B64.encode(sig))
    }

    /// Check signature, time window, issuer and audience; returns the claims.
    pub fn verify(&self, token: &str, audiences: &[&str], now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let key = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public);
        key.verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|_| TokenError::Signature)?;
        let payload = B64.decode(p).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        check_claims(&claims, audiences, now)?;
        Ok(claims)
    }
}

/// Time window, issuer and audience checks (pure).
pub fn check_claims(c: &Claims, audiences: &[&str], now: i64) -> Result<(), TokenError> {
    if c.iss == LEGACY_ISSUER {
        return Ok(());
    }
    if c.iss != ISSUER {
        return Err(TokenError::Issuer);
    }
    // upstream allows 60 s of clock skew
    if c.exp.is_some_and(|e| now > e + 60) {
        return Err(TokenError::Expired);
    }
    if c.nbf.is_some_and(|n| now + 60 < n) {
        return Err(TokenError::NotYetValid);
    }
    if !c.aud.iter().any(|a| audiences.contains(&a.as_str())) {
        return Err(TokenError::Audience(c.aud.clone()));
    }
    Ok(())
}

/// The service account (and bound object) a verified token names (pure).
pub fn subject(c: &Claims) -> Result<Subject, TokenError> {
    if let Some(k) = &c.kube {
        let bound = if let Some(p) = &k.pod {
            Some(("Pod", p.name.clone(), p.uid.clone()))
        } else if let Some(s) = &k.secret {
            Some(("Secret", s.name.clone(), s.uid.clone()))
        } else {
            k.node
                .as_ref()
                .map(|n| ("Node", n.name.clone(), n.uid.clone()))
        };
        return Ok(Subject {
            namespace: k.namespace.clone(),
            name: k.serviceaccount.name.clone(),
            uid: k.serviceaccount.uid.clone(),
            bound,
        });
    }
    match (
        &c.legacy_namespace,
        &c.legacy_sa_name,
        &c.legacy_sa_uid,
        &c.legacy_secret,
    ) {
        (Some(ns), Some(name), Some(uid), Some(secret)) => Ok(Subject {
            namespace: ns.clone(),
            name: name.clone(),
            uid: uid.clone(),
            bound: Some(("Secret", secret.clone(), String::new())),
        }),
        _ => Err(TokenError::Subject),
    }
}

/// Claims of a bound token (pure; `now` and `jti` passed in).
pub fn bound_claims(
    sub: &Subject,
    audiences: Vec<String>,
    expiration_seconds: i64,
    now: i64,
    jti: String,
) -> Claims {
    let r = |n: &str, u: &str| {
        Some(Ref {
            name: n.to_string(),
            uid: u.to_string(),
        })
    };
    let (mut pod, mut secret, mut node) = (None, None, None);
    match &sub.bound {
        Some(("Pod", n, u)) => pod = r(n, u),
        Some(("Secret", n, u)) => secret = r(n, u),
        Some(("Node", n, u)) => node = r(n, u),
        _ => {}
    }
    // tokens bound to a pod and valid for longer than an hour get a warnafter (kubelet refresh)
    let warnafter = (pod.is_some() && expiration_seconds > 3607).then_some(now + 3607);
    Claims {
        aud: audiences,
        exp: Some(now + expiration_seconds),
        iat: Some(now),
        iss: ISSUER.to_string(),
        jti: Some(jti),
        nbf: Some(now),
        sub: format!("system:serviceaccount:{}:{}", sub.namespace, sub.name),
        kube: Some(KubeClaims {
            namespace: sub.namespace.clone(),
            pod,
            secret,
            node,
            serviceaccount: Ref {
                name: sub.name.clone(),
                uid: sub.uid.clone(),
            },
            warnafter,
        }),
        ..Default::default()
    }
}

/// Claims of a legacy token stored in a `kubernetes.io/service-account-token` Secret.
pub fn legacy_claims(ns: &str, sa: &str, sa_uid: &str, secret: &str) -> Claims {
    Claims {
        iss: LEGACY_ISSUER.to_string(),
        sub: format!("system:serviceaccount:{ns}:{sa}"),
        legacy_namespace: Some(ns.into()),
        legacy_secret: Some(secret.into()),
        legacy_sa_name: Some(sa.into()),
        legacy_sa_uid: Some(sa_uid.into()),
        ..Default::default()
    }
}

fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(doc.as_ref())
        );
        Signer::from_pem(&pem).unwrap()
    }

    fn sub() -> Subject {
        Subject {
            namespace: "ns".into(),
            name: "sa".into(),
            uid: "u1".into(),
            bound: Some(("Pod", "p".into(), "pu".into())),
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let s = signer();
        let c = bound_claims(&sub(), vec![ISSUER.into()], 3600, 1000, "j".into());
        let t = s.sign(&c);
        let got = s.verify(&t, &[ISSUER], 1100).unwrap();
        assert_eq!(subject(&got).unwrap(), sub());
        assert_eq!(
            s.verify(&t, &[ISSUER], 1000 + 3600 + 61),
            Err(TokenError::Expired)
        );
        assert!(matches!(
            s.verify(&t, &["other"], 1100),
            Err(TokenError::Audience(_))
        ));
        let mut tampered = t.clone();
        tampered.insert(t.find('.').unwrap() + 3, 'x');
        assert!(s.verify(&tampered, &[ISSUER], 1100).is_err());
        assert_eq!(s.verify("a.b", &[ISSUER], 0), Err(TokenError::Malformed));
        assert!(
            signer().verify(&t, &[ISSUER], 1100).is_err(),
            "another key must not verify"
        );
    }

    #[test]
    fn legacy_tokens_name_their_secret() {
        let s = signer();
        let t = s.sign(&legacy_claims("ns", "sa", "u1", "sa-token-x"));
        let c = s.verify(&t, &[ISSUER], 5).unwrap();
        let got = subject(&c).unwrap();
        assert_eq!(
            got.bound,
            Some(("Secret", "sa-token-x".to_string(), String::new()))
        );
    }

    #[test]
    fn long_pod_tokens_warn_after_an_hour() {
        let c = bound_claims(&sub(), vec![], 7200, 0, "j".into());
        assert_eq!(c.kube.unwrap().warnafter, Some(3607));
    }
}
