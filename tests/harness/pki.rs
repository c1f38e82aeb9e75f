//! Test certificates made by rcgen: a CA and the certificates it signs, written as PEM files
//! (and each key also as DER) in a fresh temporary directory that is removed when dropped.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;

/// A CA: `ca.pem` in its directory, and the certificates it issued next to it.
pub struct Ca {
    pub dir: PathBuf,
    pub cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// A CA named "repcached test CA `name`" in `repcached-pki-<name>-<pid>`.
    pub fn new(name: &str) -> Ca {
        let dir = std::env::temp_dir().join(format!("repcached-pki-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("repcached test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Ca { dir, cert, key }
    }

    /// Writes `file`.pem, `file`.key and `file`.der: a certificate for `common_name` and
    /// `names` (IP or DNS subject alternative names; none: no SAN extension) with the extended
    /// key usages `eku`, signed by this CA.
    pub fn issue(
        &self,
        file: &str,
        common_name: &str,
        names: &[&str],
        eku: &[ExtendedKeyUsagePurpose],
    ) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = eku.to_vec();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        std::fs::write(self.path(&format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.der")), key.serialize_der()).unwrap();
    }

    /// A file in the CA's directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
