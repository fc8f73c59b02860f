//! The root key and certificate as files in the keys dir: created once
//! (key encrypted under the operator's passphrase), loaded on every later
//! start, never overwritten.

use std::fs;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509Builder, X509Name, X509};

use super::{backdated_now, io_err, write_err, CaError, CaKeyType, RootOrigin, Serial};

/// File name of the encrypted root key inside the keys dir.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File name of the root certificate inside the keys dir.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// Shortest passphrase accepted when a new root key is created.
pub const MIN_PASSPHRASE_LEN: usize = 8;
/// Validity of the root certificate.
const ROOT_VALIDITY_DAYS: u32 = 3650;

/// The paths of the root files in a keys dir.
pub fn root_paths(keys_dir: &Path) -> (PathBuf, PathBuf) {
    (keys_dir.join(CA_KEY_FILE), keys_dir.join(CA_CERT_FILE))
}

/// Whether a keys dir already holds a root (both files).
pub fn root_exists(keys_dir: &Path) -> bool {
    let (k, c) = root_paths(keys_dir);
    k.exists() && c.exists()
}

/// Loads the root from `keys_dir`, or creates it there when neither file
/// exists. Never overwrites: a wrong passphrase or a half-present root is
/// an error that leaves every file as it was.
pub(super) fn open(
    keys_dir: &Path,
    passphrase: &[u8],
    kind: CaKeyType,
) -> Result<(PKey<Private>, X509, RootOrigin), CaError> {
    let (key_path, cert_path) = root_paths(keys_dir);
    match (key_path.exists(), cert_path.exists()) {
        (true, true) => {
            let (key, cert) = load(&key_path, &cert_path, passphrase)?;
            Ok((key, cert, RootOrigin::Loaded))
        }
        (false, false) => {
            check_passphrase_strength(passphrase)?;
            crate::fsutil::create_private_dir_all(keys_dir).map_err(io_err(keys_dir))?;
            let key = make_root_key(kind)?;
            let cert = make_root_cert(&key)?;
            let pem = key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), passphrase)?;
            write_new_file(&key_path, &pem, 0o600)?;
            write_new_file(&cert_path, &cert.to_pem()?, 0o644)?;
            Ok((key, cert, RootOrigin::Created))
        }
        (true, false) => Err(CaError::HalfRoot {
            present: key_path,
            missing: cert_path,
        }),
        (false, true) => Err(CaError::HalfRoot {
            present: cert_path,
            missing: key_path,
        }),
    }
}

/// Reads both files and checks that the certificate belongs to the key.
/// The key is read only from a file and a dir no one else may write: the
/// passphrase does not stop another user who can replace or remove the
/// files from tampering with the CA's key or swapping the pair, so the
/// operator is told to fix the permissions before the CA starts.
fn load(
    key_path: &Path,
    cert_path: &Path,
    passphrase: &[u8],
) -> Result<(PKey<Private>, X509), CaError> {
    crate::fsutil::check_private_file_perms(key_path).map_err(CaError::UnsafeKeys)?;
    let key_pem = fs::read(key_path).map_err(io_err(key_path))?;
    let key = PKey::private_key_from_pem_passphrase(&key_pem, passphrase)
        .map_err(|_| CaError::BadPassphrase(key_path.to_path_buf()))?;
    let cert_pem = fs::read(cert_path).map_err(io_err(cert_path))?;
    let cert =
        X509::from_pem(&cert_pem).map_err(|_| CaError::RootMismatch(cert_path.to_path_buf()))?;
    let matches = cert
        .public_key()
        .map(|pk| pk.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err(CaError::RootMismatch(cert_path.to_path_buf()));
    }
    Ok((key, cert))
}

/// Writes `data` to `path` atomically (temporary file, fsync, rename) with
/// the given mode, refusing to replace an existing file.
fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    if path.exists() {
        return Err(CaError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite"),
        });
    }
    crate::fsutil::write_private_atomic(path, data, mode).map_err(write_err(path))
}

fn make_root_key(kind: CaKeyType) -> Result<PKey<Private>, ErrorStack> {
    match kind {
        CaKeyType::Rsa2048 => PKey::from_rsa(Rsa::generate(2048)?),
        CaKeyType::P256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)
        }
    }
}

fn make_root_cert(key: &PKeyRef<Private>) -> Result<X509, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "CUHK")?;
    name.append_entry_by_nid(Nid::COMMONNAME, "CUHK certboard Root CA")?;
    let name = name.build();

    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = Serial::random()?.to_bn()?;
    b.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::from_unix(backdated_now())?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(ROOT_VALIDITY_DAYS)?.as_ref())?;
    b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

fn check_passphrase_strength(passphrase: &[u8]) -> Result<(), CaError> {
    if passphrase.len() < MIN_PASSPHRASE_LEN {
        return Err(CaError::WeakPassphrase);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{ext_text, test_ca, TestResult};
    use super::*;
    use crate::testing::CaParams;

    /// The default test CA's parameters with another passphrase.
    fn with_passphrase(passphrase: &[u8]) -> CaParams<'_> {
        CaParams {
            passphrase,
            ..CaParams::default()
        }
    }

    #[test]
    fn root_has_ca_extensions_and_reloads() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (ca, origin) = CaParams {
            kind: CaKeyType::Rsa2048,
            ..CaParams::default()
        }
        .open(dir.path())?;
        assert_eq!(origin, RootOrigin::Created);
        let text = ext_text(ca.cert());
        assert!(text.contains("CA:TRUE"), "{text}");
        assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
        let mode = fs::metadata(dir.path().join(CA_KEY_FILE))?.permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        let key_pem = fs::read_to_string(dir.path().join(CA_KEY_FILE))?;
        assert!(key_pem.contains("ENCRYPTED PRIVATE KEY"));

        let (again, origin) = CaParams::default().open(dir.path())?;
        assert_eq!(origin, RootOrigin::Loaded);
        assert_eq!(again.cert_der(), ca.cert_der());
        Ok(())
    }

    #[test]
    fn wrong_passphrase_is_refused_and_nothing_is_overwritten() -> TestResult {
        let dir = tempfile::tempdir()?;
        test_ca(dir.path(), CaKeyType::P256)?;
        let before = fs::read(dir.path().join(CA_KEY_FILE))?;
        let err = with_passphrase(b"wrong passphrase")
            .open(dir.path())
            .err()
            .ok_or("opened with a wrong passphrase")?;
        assert!(matches!(err, CaError::BadPassphrase(_)), "{err}");
        assert_eq!(fs::read(dir.path().join(CA_KEY_FILE))?, before);
        Ok(())
    }

    fn chmod(path: &Path, mode: u32) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    /// Opens the root in `dir`, which must be refused for the permissions
    /// of its files; returns the message the operator reads.
    fn refused_for_perms(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
        let err = CaParams::default()
            .open(dir)
            .err()
            .ok_or("loaded a CA key that others may write or replace")?;
        assert!(matches!(err, CaError::UnsafeKeys(_)), "{err}");
        Ok(err.to_string())
    }

    #[test]
    fn a_key_or_keys_dir_others_may_write_is_refused_on_load() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("keys");
        test_ca(&dir, CaKeyType::P256)?;
        let key = dir.join(CA_KEY_FILE);

        for mode in [0o620, 0o602, 0o666] {
            chmod(&key, mode)?;
            let msg = refused_for_perms(&dir)?;
            assert!(
                msg.contains(&format!("chmod go-w {}", key.display())),
                "{msg}"
            );
        }
        chmod(&key, 0o600)?;

        chmod(&dir, 0o770)?;
        let msg = refused_for_perms(&dir)?;
        assert!(
            msg.contains("is writable by group or others (mode 0770)"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("chmod go-w {}", dir.display())),
            "{msg}"
        );

        // Once fixed as told, the same files load.
        chmod(&dir, 0o700)?;
        let (_, origin) = CaParams::default().open(&dir)?;
        assert_eq!(origin, RootOrigin::Loaded);
        Ok(())
    }

    #[test]
    fn a_key_reached_through_a_symlink_is_refused_on_load() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("keys");
        test_ca(&dir, CaKeyType::P256)?;
        let elsewhere = tmp.path().join("elsewhere.pem");
        fs::rename(dir.join(CA_KEY_FILE), &elsewhere)?;
        std::os::unix::fs::symlink(&elsewhere, dir.join(CA_KEY_FILE))?;
        let msg = refused_for_perms(&dir)?;
        assert!(msg.contains("not a regular file"), "{msg}");
        Ok(())
    }

    #[test]
    fn a_new_keys_dir_is_private_and_an_open_one_gets_no_key() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let nested = tmp.path().join("ca").join("keys");
        test_ca(&nested, CaKeyType::P256)?;
        use std::os::unix::fs::PermissionsExt;
        for dir in [tmp.path().join("ca"), nested] {
            assert_eq!(fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        }

        let open = tmp.path().join("open");
        fs::create_dir(&open)?;
        chmod(&open, 0o775)?;
        let err = test_ca(&open, CaKeyType::P256)
            .err()
            .ok_or("wrote a CA key into a group-writable dir")?;
        assert!(matches!(err, CaError::UnsafeKeys(_)), "{err}");
        assert!(
            fs::read_dir(&open)?.next().is_none(),
            "something was written"
        );
        Ok(())
    }

    #[test]
    fn weak_passphrase_and_half_root_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let err = with_passphrase(b"short").open(dir.path()).err();
        assert!(matches!(err, Some(CaError::WeakPassphrase)));
        assert!(!dir.path().join(CA_KEY_FILE).exists());
        test_ca(dir.path(), CaKeyType::P256)?;
        fs::remove_file(dir.path().join(CA_CERT_FILE))?;
        let err = CaParams::default().open(dir.path()).err();
        assert!(matches!(err, Some(CaError::HalfRoot { .. })));
        Ok(())
    }
}
