//! The control plane's PKI: one CA that signs the apiserver's serving certificate and every
//! client certificate, plus the service-account signing key pair. All keys are ECDSA P-256.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, both PEM.
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA. Client certificates it signs are trusted by the apiserver
/// (`--client-ca-file`), and it signs the apiserver's serving certificate.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_der: Vec<u8>,
}

impl Pki {
    /// The local control plane's CA.
    pub fn new() -> Result<Self, rcgen::Error> {
        Self::named("tenancy-devcluster-ca")
    }

    /// A CA with this common name.
    pub fn named(common_name: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Pki {
            ca_pem: cert.pem(),
            ca_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// A serving certificate for these DNS names and IP addresses.
    pub fn serving_cert(
        &self,
        common_name: &str,
        sans: &[&str],
    ) -> Result<CertAndKey, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name = dn(common_name, &[]);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A client certificate: the apiserver authenticates it as user `user` (CN) in `groups`
    /// (O). At most [`MAX_CERT_GROUPS`] groups fit (see [`dn`]).
    ///
    /// # Panics
    /// With more than [`MAX_CERT_GROUPS`] groups.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> Result<CertAndKey, rcgen::Error> {
        assert!(
            groups.len() <= MAX_CERT_GROUPS,
            "a client certificate here carries at most {MAX_CERT_GROUPS} groups"
        );
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(user, groups);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// How many groups a client certificate made here can carry.
pub const MAX_CERT_GROUPS: usize = 2;

/// A distinguished name with CN `cn` and one O per group. rcgen keeps one value per attribute
/// type, so the second group goes in as a custom attribute with the organizationName OID
/// (2.5.4.10), which X.509 readers (and the apiserver) see as a second O.
fn dn(cn: &str, groups: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(first) = groups.first() {
        dn.push(DnType::OrganizationName, *first);
    }
    if let Some(second) = groups.get(1) {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 10]), *second);
    }
    dn
}

/// The service-account token signing key pair: (private key PEM, public key PEM).
pub fn service_account_key_pair() -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// Standard base64 with padding (for kubeconfig `*-data` fields).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A kubeconfig with one cluster, one user and one context, everything embedded.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &str, client: &CertAndKey) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: tenancy-dev
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user:?}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: tenancy-dev
  context:
    cluster: tenancy-dev
    user: {user:?}
    namespace: default
current-context: tenancy-dev
",
        ca = base64(ca_pem.as_bytes()),
        cert = base64(client.cert_pem.as_bytes()),
        key = base64(client.key_pem.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn certificates_are_pem() {
        let pki = Pki::new().unwrap();
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let serving = pki
            .serving_cert("kube-apiserver", &["127.0.0.1", "localhost", "::1"])
            .unwrap();
        assert!(serving.key_pem.contains("PRIVATE KEY"));
        let client = pki
            .client_cert("admin", &["system:masters", "tenancy:staff"])
            .unwrap();
        assert!(client.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let (private, public) = service_account_key_pair().unwrap();
        assert!(private.contains("PRIVATE KEY") && public.contains("PUBLIC KEY"));
    }
}
