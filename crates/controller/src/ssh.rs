//! The per-target ed25519 SSH key pair, in OpenSSH encoding.

use azure_core::credentials::Secret;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, rand_core::OsRng};

use crate::{Error, Result};

/// Secret keys, as in `kubernetes.io/ssh-auth` Secrets (plus the public half for convenience).
pub const PRIVATE_KEY: &str = "ssh-privatekey";
pub const PUBLIC_KEY: &str = "ssh-publickey";

/// A key pair. The private half only leaves this type as a [`Secret`], whose `Debug` hides it.
#[derive(Clone)]
pub struct KeyPair {
    private_openssh: Secret,
    /// `ssh-ed25519 AAAA... comment`.
    pub public_openssh: String,
    /// `SHA256:...` fingerprint (public information).
    pub fingerprint: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_openssh", &"***")
            .field("public_openssh", &self.public_openssh)
            .finish()
    }
}

impl KeyPair {
    /// A fresh ed25519 key pair from the OS RNG.
    pub fn generate(comment: &str) -> Result<Self> {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|e| Error::SshKey(format!("generating ed25519 key: {e}")))?;
        key.set_comment(comment);
        Self::from_private(&key)
    }

    /// Parse the private key stored in the Secret (OpenSSH PEM).
    pub fn from_openssh(private_openssh: &str) -> Result<Self> {
        let key = PrivateKey::from_openssh(private_openssh)
            .map_err(|e| Error::SshKey(format!("stored private key does not parse: {e}")))?;
        Self::from_private(&key)
    }

    fn from_private(key: &PrivateKey) -> Result<Self> {
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| Error::SshKey(format!("encoding private key: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::SshKey(format!("encoding public key: {e}")))?;
        Ok(Self {
            private_openssh: Secret::new(private.to_string()),
            public_openssh: public,
            fingerprint: key.public_key().fingerprint(HashAlg::Sha256).to_string(),
        })
    }

    pub fn private_openssh(&self) -> &Secret {
        &self.private_openssh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_and_hides_private_half() {
        let k = KeyPair::generate("edgetrain").unwrap();
        assert!(k.public_openssh.starts_with("ssh-ed25519 "));
        assert!(k.fingerprint.starts_with("SHA256:"));
        let again = KeyPair::from_openssh(k.private_openssh().secret()).unwrap();
        assert_eq!(again.public_openssh, k.public_openssh);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("OPENSSH PRIVATE KEY"), "{dbg}");
        let other = KeyPair::generate("edgetrain").unwrap();
        assert_ne!(other.fingerprint, k.fingerprint);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(KeyPair::from_openssh("not a key").is_err());
    }
}
