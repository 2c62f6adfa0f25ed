//! An external MQTT 5 broker as the fleet's target (AWS IoT Core, or any
//! cluster that trusts the fleet's CA): its address, the CA that verifies
//! it, the issuer the simulator signs every cart's certificate with
//! (CN = cart id), and the backend emulator's identity, or none when the
//! broker's own backend answers. See docs/fleet.md, "Against a real
//! broker".

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use store_and_forward::uplink::{self, tls};

use crate::SimError;

/// Where the fleet's broker is.
#[derive(Debug, Clone, Default)]
pub enum Target {
    /// A mosquitto this process starts, with its own test CA and per-cart
    /// ACLs (the default).
    #[default]
    Local,
    /// A broker someone else runs.
    External(ExternalBroker),
}

impl Target {
    /// Whether it is the local mosquitto.
    pub fn is_local(&self) -> bool {
        matches!(self, Target::Local)
    }

    /// The external broker, if it is one.
    pub fn external(&self) -> Option<&ExternalBroker> {
        match self {
            Target::Local => None,
            Target::External(e) => Some(e),
        }
    }

    /// How reports name it: `local mosquitto` or `external HOST:PORT`.
    pub fn describe(&self) -> String {
        match self {
            Target::Local => "local mosquitto".into(),
            Target::External(e) => format!("external {}:{}", e.host, e.port),
        }
    }
}

/// An external MQTT 5 broker with mutual TLS.
#[derive(Debug, Clone)]
pub struct ExternalBroker {
    /// Its host name (or address). A name is also what the carts send as
    /// SNI, which AWS IoT Core routes by.
    pub host: String,
    /// Its MQTT-over-TLS port (8883 on AWS IoT Core).
    pub port: u16,
    /// The name its certificate must be valid for (`None`: `host`).
    pub server_name: Option<String>,
    /// The CA bundle (PEM) that verifies the broker's certificate.
    pub ca_file: PathBuf,
    /// The issuer's certificate (PEM; the first certificate of the file):
    /// the broker trusts client certificates it signed.
    pub issuer_cert: PathBuf,
    /// The issuer's private key (PKCS#8 PEM).
    pub issuer_key: PathBuf,
    /// The backend emulator's client certificate and key (PEM files); its
    /// MQTT client id is `backend`. `None`: no emulator runs (the broker's
    /// own backend answers the carts); what only the emulator can tell
    /// (exactly once at the backend, its ingest rate, job rollouts) is
    /// then not measured.
    pub backend: Option<(PathBuf, PathBuf)>,
}

impl ExternalBroker {
    /// The name the broker's certificate is checked against.
    pub fn server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.host)
    }

    /// Checks everything before a fleet starts: the address, the CA
    /// bundle and the server name, the issuer (a CA certificate and the
    /// key that belongs to it), the backend's certificate and key.
    pub fn check(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.host.trim().is_empty() || self.host.chars().any(char::is_whitespace) {
            return bad(format!("broker host {:?} is not a host name", self.host));
        }
        if self.port == 0 {
            return bad("broker port 0".into());
        }
        readable(&self.ca_file, "broker CA file")?;
        tls::client_config(&self.ca_file, self.server_name(), None).map_err(|e| {
            SimError::Config(format!(
                "broker CA {} / server name {:?}: {e}",
                self.ca_file.display(),
                self.server_name()
            ))
        })?;
        CartIssuer::load(&self.issuer_cert, &self.issuer_key)?;
        if let Some((cert, key)) = &self.backend {
            readable(cert, "backend certificate")?;
            readable(key, "backend key")?;
            uplink::certified_key_from_pem_files(cert, key)
                .map_err(|e| SimError::Config(format!("backend identity: {e}")))?;
        }
        Ok(())
    }
}

fn readable(path: &Path, what: &str) -> Result<Vec<u8>, SimError> {
    fs::read(path).map_err(|e| SimError::Config(format!("{what} {}: {e}", path.display())))
}

/// The text of every `CERTIFICATE` block of a PEM file, in order.
fn certificate_blocks(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(b) = rest.find(BEGIN) {
        let Some(e) = rest[b..].find(END) else { break };
        blocks.push(format!("{}\n", &rest[b..b + e + END.len()]));
        rest = &rest[b + e + END.len()..];
    }
    blocks
}

/// Signs the carts' client certificates with the fleet's issuer.
pub struct CartIssuer {
    issuer: Issuer<'static, KeyPair>,
    /// The issuer's certificates, PEM: they follow each cart's certificate
    /// in the chain it presents.
    chain_pem: String,
}

impl std::fmt::Debug for CartIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CartIssuer").finish_non_exhaustive()
    }
}

impl CartIssuer {
    /// Loads the issuer: its certificate (the first of `cert`, which must
    /// be a CA and currently valid) and its PKCS#8 key, which must belong
    /// to it.
    pub fn load(cert: &Path, key: &Path) -> Result<CartIssuer, SimError> {
        let cert_pem = String::from_utf8(readable(cert, "issuer certificate")?).map_err(|_| {
            SimError::Config(format!(
                "issuer certificate {}: not PEM text",
                cert.display()
            ))
        })?;
        let key_pem = String::from_utf8(readable(key, "issuer key")?)
            .map_err(|_| SimError::Config(format!("issuer key {}: not PEM text", key.display())))?;
        let blocks = certificate_blocks(&cert_pem);
        let Some(first) = blocks.first() else {
            return Err(SimError::Config(format!(
                "issuer certificate {}: no PEM certificate in it",
                cert.display()
            )));
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(first.as_bytes())
            .map_err(|e| SimError::Config(format!("issuer certificate {}: {e}", cert.display())))?;
        let x509 = pem
            .parse_x509()
            .map_err(|e| SimError::Config(format!("issuer certificate {}: {e}", cert.display())))?;
        if !x509.is_ca() {
            return Err(SimError::Config(format!(
                "issuer certificate {}: not a CA certificate (no basicConstraints CA:TRUE)",
                cert.display()
            )));
        }
        if !x509.validity().is_valid() {
            return Err(SimError::Config(format!(
                "issuer certificate {}: not valid now ({} to {})",
                cert.display(),
                x509.validity().not_before,
                x509.validity().not_after
            )));
        }
        let signing = KeyPair::from_pem(&key_pem).map_err(|e| {
            SimError::Config(format!(
                "issuer key {}: {e} (a PKCS#8 PEM key is needed: `openssl pkcs8 -topk8 -nocrypt` converts one)",
                key.display()
            ))
        })?;
        if signing.public_key_raw() != &*x509.public_key().subject_public_key.data {
            return Err(SimError::Config(format!(
                "issuer key {} does not belong to the issuer certificate {}",
                key.display(),
                cert.display()
            )));
        }
        let issuer = Issuer::from_ca_cert_pem(first, signing)
            .map_err(|e| SimError::Config(format!("issuer certificate {}: {e}", cert.display())))?;
        Ok(CartIssuer {
            issuer,
            chain_pem: blocks.concat(),
        })
    }

    /// Issues a client certificate with CN = `cart_id` for a fresh P-256
    /// key, valid from a day ago for a year, and writes it (followed by
    /// the issuer's certificates) and its key into `dir`: (certificate
    /// path, key path).
    pub fn issue(&self, cart_id: &str, dir: &Path) -> Result<(PathBuf, PathBuf), SimError> {
        let fail = |e: rcgen::Error| SimError::Config(format!("{cart_id}'s certificate: {e}"));
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.distinguished_name.push(DnType::CommonName, cart_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let day = Duration::from_secs(86_400);
        params.not_before = date_time_ymd(1970, 1, 1) + now.saturating_sub(day);
        params.not_after = date_time_ymd(1970, 1, 1) + now + 365 * day;
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        fs::create_dir_all(dir).map_err(|e| SimError::Io(dir.display().to_string(), e))?;
        let cert_path = dir.join("client.pem");
        let key_path = dir.join("client.key");
        fs::write(&cert_path, cert.pem() + &self.chain_pem)
            .map_err(|e| SimError::Io(cert_path.display().to_string(), e))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        Ok((cert_path, key_path))
    }
}

/// Writes a private key readable by this user only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SimError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| SimError::Io(path.display().to_string(), e);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)
}

/// The command line's broker options (`fleet-sim --broker-host ...`), each
/// as given. All or nothing: none selects the local mosquitto.
#[derive(Debug, Clone, Default)]
pub struct ExternalOptions {
    /// `--broker-host`.
    pub broker_host: Option<String>,
    /// `--broker-port` (default 8883).
    pub broker_port: Option<u16>,
    /// `--server-name` (default: the host).
    pub server_name: Option<String>,
    /// `--broker-ca`.
    pub broker_ca: Option<PathBuf>,
    /// `--issuer-cert`.
    pub issuer_cert: Option<PathBuf>,
    /// `--issuer-key`.
    pub issuer_key: Option<PathBuf>,
    /// `--backend-cert`.
    pub backend_cert: Option<PathBuf>,
    /// `--backend-key`.
    pub backend_key: Option<PathBuf>,
    /// `--no-backend`.
    pub no_backend: bool,
}

impl ExternalOptions {
    /// The flags given, by name.
    fn given(&self) -> Vec<&'static str> {
        [
            ("--broker-host", self.broker_host.is_some()),
            ("--broker-port", self.broker_port.is_some()),
            ("--server-name", self.server_name.is_some()),
            ("--broker-ca", self.broker_ca.is_some()),
            ("--issuer-cert", self.issuer_cert.is_some()),
            ("--issuer-key", self.issuer_key.is_some()),
            ("--backend-cert", self.backend_cert.is_some()),
            ("--backend-key", self.backend_key.is_some()),
            ("--no-backend", self.no_backend),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }

    /// Whether any broker flag was given.
    pub fn any(&self) -> bool {
        !self.given().is_empty()
    }

    /// The target the flags select, checked ([`ExternalBroker::check`]):
    /// none given is the local mosquitto; otherwise the host, the CA, the
    /// issuer's certificate and key, and either the backend's certificate
    /// and key or `--no-backend` are all needed.
    pub fn target(self) -> Result<Target, SimError> {
        let given = self.given();
        if given.is_empty() {
            return Ok(Target::Local);
        }
        let mut missing = Vec::new();
        if self.broker_host.is_none() {
            missing.push("--broker-host");
        }
        if self.broker_ca.is_none() {
            missing.push("--broker-ca");
        }
        if self.issuer_cert.is_none() {
            missing.push("--issuer-cert");
        }
        if self.issuer_key.is_none() {
            missing.push("--issuer-key");
        }
        let backend = match (self.backend_cert, self.backend_key, self.no_backend) {
            (Some(c), Some(k), false) => Some((c, k)),
            (None, None, true) => None,
            (Some(_), _, true) | (_, Some(_), true) => {
                return Err(SimError::Config(
                    "--no-backend runs no emulator: drop --backend-cert and --backend-key, or --no-backend".into(),
                ));
            }
            (Some(_), None, false) => {
                missing.push("--backend-key");
                None
            }
            (None, Some(_), false) => {
                missing.push("--backend-cert");
                None
            }
            (None, None, false) => {
                missing.push("--backend-cert and --backend-key (or --no-backend)");
                None
            }
        };
        let (Some(host), Some(ca_file), Some(issuer_cert), Some(issuer_key), true) = (
            self.broker_host,
            self.broker_ca,
            self.issuer_cert,
            self.issuer_key,
            missing.is_empty(),
        ) else {
            return Err(SimError::Config(format!(
                "an external broker needs {} too (given: {})",
                missing.join(", "),
                given.join(", ")
            )));
        };
        let external = ExternalBroker {
            host,
            port: self.broker_port.unwrap_or(8883),
            server_name: self.server_name,
            ca_file,
            issuer_cert,
            issuer_key,
            backend,
        };
        external.check()?;
        Ok(Target::External(external))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertifiedIssuer, IsCa};

    fn ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        fs::write(&c, ca.pem()).unwrap();
        fs::write(&k, ca.key().serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn issues_cart_certificates_with_the_cart_id_as_cn() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ca(dir.path(), "fleet-ca");
        let issuer = CartIssuer::load(&c, &k).unwrap();
        let (cert, key) = issuer
            .issue("cart-00007", &dir.path().join("cart-00007"))
            .unwrap();
        // The link loads it (the key matches), and the chain is the cart's
        // certificate then the issuer's.
        uplink::certified_key_from_pem_files(&cert, &key).unwrap();
        let text = fs::read_to_string(&cert).unwrap();
        let blocks = certificate_blocks(&text);
        assert_eq!(blocks.len(), 2);
        let (_, pem) = x509_parser::pem::parse_x509_pem(blocks[0].as_bytes()).unwrap();
        let x509 = pem.parse_x509().unwrap();
        let cn: Vec<_> = x509.subject().iter_common_name().collect();
        assert_eq!(cn[0].as_str().unwrap(), "cart-00007");
        assert!(x509.validity().is_valid());
        assert!(!x509.is_ca());
        assert_eq!(
            x509.issuer().to_string(),
            x509_parser::pem::parse_x509_pem(blocks[1].as_bytes())
                .unwrap()
                .1
                .parse_x509()
                .unwrap()
                .subject()
                .to_string()
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn refuses_a_key_of_another_ca_a_leaf_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = ca(dir.path(), "one");
        let (_, k2) = ca(dir.path(), "two");
        let e = CartIssuer::load(&c, &k2).unwrap_err().to_string();
        assert!(e.contains("does not belong"), "{e}");
        let e = CartIssuer::load(&dir.path().join("absent.pem"), &k2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("issuer certificate") && e.contains("absent.pem"),
            "{e}"
        );
        // A cart certificate is no issuer.
        let (c1, k1) = ca(dir.path(), "three");
        let issuer = CartIssuer::load(&c1, &k1).unwrap();
        let (leaf, leaf_key) = issuer.issue("cart-1", &dir.path().join("c")).unwrap();
        let e = CartIssuer::load(&leaf, &leaf_key).unwrap_err().to_string();
        assert!(e.contains("not a CA"), "{e}");
        let e = CartIssuer::load(&k1, &k1).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    fn options(dir: &Path) -> ExternalOptions {
        let (c, k) = ca(dir, "fleet-ca");
        let issuer = CartIssuer::load(&c, &k).unwrap();
        let (bc, bk) = issuer.issue("backend", &dir.join("backend")).unwrap();
        ExternalOptions {
            broker_host: Some("broker.example".into()),
            broker_ca: Some(c.clone()),
            issuer_cert: Some(c),
            issuer_key: Some(k),
            backend_cert: Some(bc),
            backend_key: Some(bk),
            ..ExternalOptions::default()
        }
    }

    #[test]
    fn flags_are_all_or_nothing() {
        assert!(ExternalOptions::default().target().unwrap().is_local());
        let dir = tempfile::tempdir().unwrap();
        let full = options(dir.path());
        let t = full.clone().target().unwrap();
        let e = t.external().unwrap();
        assert_eq!((e.port, e.server_name()), (8883, "broker.example"));
        assert!(e.backend.is_some());
        assert_eq!(t.describe(), "external broker.example:8883");

        let no_backend = ExternalOptions {
            backend_cert: None,
            backend_key: None,
            no_backend: true,
            ..full.clone()
        };
        assert!(
            no_backend
                .target()
                .unwrap()
                .external()
                .unwrap()
                .backend
                .is_none()
        );

        let e = ExternalOptions {
            broker_port: Some(8883),
            ..ExternalOptions::default()
        }
        .target()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--broker-host")
                && e.contains("--issuer-key")
                && e.contains("--no-backend")
                && e.contains("given: --broker-port"),
            "{e}"
        );
        let e = ExternalOptions {
            no_backend: true,
            ..full.clone()
        }
        .target()
        .unwrap_err()
        .to_string();
        assert!(e.contains("drop --backend-cert"), "{e}");
        let e = ExternalOptions {
            backend_key: None,
            ..full.clone()
        }
        .target()
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs --backend-key too"), "{e}");
        let e = ExternalOptions {
            broker_ca: Some(dir.path().join("nope.pem")),
            ..full.clone()
        }
        .target()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("broker CA file") && e.contains("nope.pem"),
            "{e}"
        );
        let e = ExternalOptions {
            broker_port: Some(0),
            ..full.clone()
        }
        .target()
        .unwrap_err()
        .to_string();
        assert!(e.contains("port 0"), "{e}");
        let e = ExternalOptions {
            server_name: Some("not a name".into()),
            ..full.clone()
        }
        .target()
        .unwrap_err()
        .to_string();
        assert!(e.contains("server name"), "{e}");
        // The backend's key must be the one of its certificate.
        let e = ExternalOptions {
            backend_key: full.issuer_key.clone(),
            ..full
        }
        .target()
        .unwrap_err()
        .to_string();
        assert!(e.contains("backend identity"), "{e}");
    }
}
