//! The per-target SSH key pair: RSA 3072, the public half as an OpenSSH `ssh-rsa` line (what
//! Compute 2020-06-01 documents for `keyData`: ssh-rsa, at least 2048 bits) and the private half
//! as PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`, what Azure ML's VirtualMachine attach
//! documents for `privateKeyData`). OpenSSH clients read PKCS#1 PEM too.

use azure_core::credentials::Secret;
use rsa::{
    RsaPrivateKey,
    pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding},
    rand_core::OsRng,
};
use ssh_key::{HashAlg, PublicKey, private::KeypairData, public::KeyData};

use crate::{Error, Result};

/// Secret keys, as in `kubernetes.io/ssh-auth` Secrets (plus the public half for convenience).
pub const PRIVATE_KEY: &str = "ssh-privatekey";
pub const PUBLIC_KEY: &str = "ssh-publickey";

/// Modulus size of generated keys (Stack Hub and Azure ML need RSA of at least 2048 bits).
pub const KEY_BITS: usize = 3072;

/// A key pair. The private half only leaves this type as a [`Secret`], whose `Debug` hides it.
#[derive(Clone)]
pub struct KeyPair {
    private_pem: Secret,
    /// `ssh-rsa AAAA...` (no comment, so that it is the same however the key was read).
    pub public_openssh: String,
    /// `SHA256:...` fingerprint (public information).
    pub fingerprint: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_pem", &"***")
            .field("public_openssh", &self.public_openssh)
            .finish()
    }
}

impl KeyPair {
    /// A fresh RSA key pair of [`KEY_BITS`] from the OS RNG.
    pub fn generate() -> Result<Self> {
        let key = RsaPrivateKey::new(&mut OsRng, KEY_BITS)
            .map_err(|e| Error::SshKey(format!("generating RSA key: {e}")))?;
        Self::from_rsa(&key)
    }

    /// [`KeyPair::generate`] on the blocking pool: RSA key generation takes long enough to stall
    /// the async workers (Lease renewals, other reconciles) if run on them.
    pub async fn generate_blocking() -> Result<Self> {
        tokio::task::spawn_blocking(Self::generate)
            .await
            .map_err(|e| Error::SshKey(format!("key generation task failed: {e}")))?
    }

    /// Parses the private key stored in the Secret: PKCS#1 PEM (what [`KeyPair::generate`]
    /// stores) or an OpenSSH-encoded RSA key. Other algorithms are refused: Stack Hub and Azure
    /// ML accept RSA only.
    pub fn from_private(text: &str) -> Result<Self> {
        let key = if text.contains("BEGIN RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(text)
                .map_err(|e| Error::SshKey(format!("stored private key does not parse: {e}")))?
        } else {
            let key = ssh_key::PrivateKey::from_openssh(text)
                .map_err(|e| Error::SshKey(format!("stored private key does not parse: {e}")))?;
            match key.key_data() {
                KeypairData::Rsa(pair) => RsaPrivateKey::try_from(pair)
                    .map_err(|e| Error::SshKey(format!("stored RSA key is invalid: {e}")))?,
                other => {
                    return Err(Error::SshKey(format!(
                        "stored key is {:?}, not RSA; delete the Secret to have an RSA key generated",
                        other.algorithm().map(|a| a.to_string()).unwrap_or_default()
                    )));
                }
            }
        };
        Self::from_rsa(&key)
    }

    fn from_rsa(key: &RsaPrivateKey) -> Result<Self> {
        let pem = key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| Error::SshKey(format!("encoding private key: {e}")))?;
        let public = ssh_key::public::RsaPublicKey::try_from(key.to_public_key())
            .map_err(|e| Error::SshKey(format!("encoding public key: {e}")))?;
        let public = PublicKey::from(KeyData::Rsa(public));
        Ok(Self {
            private_pem: Secret::new(pem.to_string()),
            public_openssh: public
                .to_openssh()
                .map_err(|e| Error::SshKey(format!("encoding public key: {e}")))?,
            fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
        })
    }

    /// PKCS#1 PEM.
    pub fn private_pem(&self) -> &Secret {
        &self.private_pem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;

    #[test]
    fn generated_key_is_rsa_3072_in_the_formats_azure_documents() {
        let k = KeyPair::generate().unwrap();
        assert!(
            k.public_openssh.starts_with("ssh-rsa "),
            "{}",
            k.public_openssh
        );
        let public = PublicKey::from_openssh(&k.public_openssh).unwrap();
        let n = public
            .key_data()
            .rsa()
            .unwrap()
            .n
            .as_positive_bytes()
            .unwrap();
        assert_eq!(n.len() * 8, KEY_BITS);
        let pem = k.private_pem().secret();
        assert!(
            pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "PKCS#1 PEM"
        );
        assert_eq!(
            RsaPrivateKey::from_pkcs1_pem(pem).unwrap().size() * 8,
            KEY_BITS
        );
        assert!(k.fingerprint.starts_with("SHA256:"));

        let again = KeyPair::from_private(pem).unwrap();
        assert_eq!(again.public_openssh, k.public_openssh);
        assert_eq!(again.fingerprint, k.fingerprint);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
    }

    #[test]
    fn garbage_and_non_rsa_keys_are_rejected() {
        assert!(KeyPair::from_private("not a key").is_err());
        let ed = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let text = ed.to_openssh(ssh_key::LineEnding::LF).unwrap();
        let err = KeyPair::from_private(&text).unwrap_err().to_string();
        assert!(err.contains("not RSA"), "{err}");
    }
}
