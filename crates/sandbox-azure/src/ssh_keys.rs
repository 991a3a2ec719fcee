//! SSH key formats the services document, enforced so that a client sending another format
//! fails in tests as it would in Azure: Compute 2020-06-01 `SshPublicKey.keyData` is an
//! `ssh-rsa` key of at least 2048 bits; Azure ML's VirtualMachine attach takes the RSA private
//! key in PEM (`-----BEGIN RSA PRIVATE KEY-----`).

use rsa::{pkcs1::DecodeRsaPrivateKey, traits::PublicKeyParts};
use serde_json::Value;

use crate::arm_error::ArmError;

/// Smallest RSA modulus the services accept.
pub const MIN_RSA_BITS: usize = 2048;

/// A 2048-bit RSA key pair for tests that talk to the simulator: the public half as an
/// OpenSSH line, the private half as PKCS#1 PEM. Test material only, never a real credential.
pub const TEST_SSH_PUBLIC_KEY: &str = include_str!("../fixtures/test-rsa-2048.pub");
pub const TEST_SSH_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/test-rsa-2048.pem");

/// Bits of the RSA modulus of an `ssh-rsa` OpenSSH public key line, or why it is not one.
pub fn ssh_rsa_bits(line: &str) -> Result<usize, String> {
    let key = ssh_key::PublicKey::from_openssh(line.trim())
        .map_err(|e| format!("not an OpenSSH public key: {e}"))?;
    let rsa = key
        .key_data()
        .rsa()
        .ok_or_else(|| format!("the key type is {}, not ssh-rsa", key.algorithm()))?;
    let n = rsa
        .n
        .as_positive_bytes()
        .ok_or_else(|| "the RSA modulus is not positive".to_string())?;
    Ok(n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize))
}

/// `osProfile.linuxConfiguration.ssh.publicKeys[].keyData` of a VM body.
pub fn check_vm_public_keys(body: &Value) -> Result<(), ArmError> {
    let keys = body["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, key) in keys.iter().enumerate() {
        let data = key["keyData"].as_str().unwrap_or_default();
        let problem = match ssh_rsa_bits(data) {
            Ok(bits) if bits >= MIN_RSA_BITS => continue,
            Ok(bits) => {
                format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")
            }
            Err(e) => e,
        };
        return Err(ArmError::bad_request(
            "InvalidParameter",
            format!(
                "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid: {problem}. The key must be an ssh-rsa public key of at least {MIN_RSA_BITS} bits."
            ),
        )
        .with_target(format!("linuxConfiguration.ssh.publicKeys[{i}].keyData")));
    }
    Ok(())
}

/// `administratorAccount` of an Azure ML VirtualMachine compute: `privateKeyData` RSA PEM,
/// `publicKeyData` (when given) ssh-rsa.
pub fn check_ml_admin_account(account: &Value) -> Result<(), ArmError> {
    let bad = |field: &str, problem: String| {
        ArmError::bad_request(
            "UserError",
            format!("administratorAccount.{field} is invalid: {problem}"),
        )
        .with_target(format!(
            "properties.properties.administratorAccount.{field}"
        ))
    };
    if let Some(private) = account["privateKeyData"].as_str() {
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(private.trim()).map_err(|e| {
            bad(
                "privateKeyData",
                format!(
                    "expected an RSA private key in PEM (-----BEGIN RSA PRIVATE KEY-----): {e}"
                ),
            )
        })?;
        let bits = key.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(bad(
                "privateKeyData",
                format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"),
            ));
        }
    }
    if let Some(public) = account["publicKeyData"].as_str() {
        match ssh_rsa_bits(public) {
            Ok(bits) if bits >= MIN_RSA_BITS => {}
            Ok(bits) => {
                return Err(bad(
                    "publicKeyData",
                    format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"),
                ));
            }
            Err(e) => return Err(bad("publicKeyData", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_key_pair_passes_and_other_formats_fail() {
        assert_eq!(ssh_rsa_bits(TEST_SSH_PUBLIC_KEY).unwrap(), 2048);
        let vm = |k: &str| json!({"properties": {"osProfile": {"linuxConfiguration": {"ssh": {"publicKeys": [{"path": "/p", "keyData": k}]}}}}});
        check_vm_public_keys(&vm(TEST_SSH_PUBLIC_KEY)).unwrap();
        let ed =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvgw6cb3UX68NcmWHJm+fE0J1oxH4HBnepqMT2YSGUR x";
        let e = check_vm_public_keys(&vm(ed)).unwrap_err();
        assert_eq!(e.code(), "InvalidParameter");
        assert!(e.message().contains("ssh-ed25519"), "{}", e.message());
        assert!(check_vm_public_keys(&vm("ssh-rsa AAAA")).is_err());
        let short = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCr7uZ35d0esQzNXIbX5m4QGdk8evSuGfElGMarPhFr10Dmc62I+J19AYJb1G1zxLeEMfDzNnr1BxQB1zEb/Rw9blPjcK5cf/keny4uKXU+6bPCrDosrC1xkMAGbCcqmuPV1d6YcDZgPJU/HQyborhrZ3WG5K9eSU4IroHxcZaRHw== x";
        assert_eq!(ssh_rsa_bits(short).unwrap(), 1024);
        let e = check_vm_public_keys(&vm(short)).unwrap_err();
        assert!(e.message().contains("1024 bits"), "{}", e.message());

        let account = |private: &str| json!({"username": "u", "privateKeyData": private, "publicKeyData": TEST_SSH_PUBLIC_KEY});
        check_ml_admin_account(&account(TEST_SSH_PRIVATE_KEY_PEM)).unwrap();
        let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let e = check_ml_admin_account(&account(openssh)).unwrap_err();
        assert_eq!(e.code(), "UserError");
        assert!(check_ml_admin_account(&json!({"username": "u", "privateKeyData": TEST_SSH_PRIVATE_KEY_PEM, "publicKeyData": ed})).is_err());
    }
}
