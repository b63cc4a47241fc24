//! The `[maintenance_page]` table: while a listed service is backup-active, the coordinator
//! answers HTTP (and HTTPS, with the operator's certificate) for the service's names with a
//! "back soon" page — 503, `Retry-After`, the incident's start, no caching
//! (`crate::dashboard::maintenance_page`, `docs/dashboard.md`). Absent: no such listener.
//!
//! The certificate and key are read and matched here, before anything binds, so `check`
//! finds a wrong pair.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use shared::config::Diagnostics;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenancePage {
    /// Plain HTTP (`"0.0.0.0:80"`).
    #[serde(default)]
    pub listen: Option<String>,
    /// HTTPS (`"0.0.0.0:443"`), with `tls_cert_file` and `tls_key_file`.
    #[serde(default)]
    pub tls_listen: Option<String>,
    /// PEM certificate chain for the services' names (the site's own certificate).
    #[serde(default)]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of that certificate (mode 0600, like every secret).
    #[serde(default)]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// The services whose names get the page while they are backup-active.
    pub services: Vec<String>,
    /// An HTML file for the page; `{{service}}`, `{{since}}` and `{{retry_after}}` are
    /// replaced. Default: a built-in page.
    #[serde(default)]
    pub page_file: Option<std::path::PathBuf>,
    /// The `Retry-After` header ("5m" by default; 1s to 1d).
    #[serde(default)]
    pub retry_after: Option<String>,
}

/// One listed service: its name and the host names that get its page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageService {
    pub name: String,
    /// Lowercase, without the trailing dot (`www.example.com`).
    pub hosts: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct MaintenancePageConfig {
    pub listen: Option<SocketAddr>,
    /// Where HTTPS listens, and the server config with the operator's certificate.
    pub tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    pub services: Vec<PageService>,
    /// The page's HTML, placeholders still in.
    pub page: String,
    pub retry_after: Duration,
}

/// [`MaintenancePageConfig::retry_after`] when not set.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Largest page file: a page, not a site (images belong inline or elsewhere).
pub const MAX_PAGE: u64 = 256 * 1024;

/// The built-in page.
pub const DEFAULT_PAGE: &str = include_str!("../../templates/maintenance_page.html");

fn addr(key: &str, text: &Option<String>, e: &mut Diagnostics) -> Option<SocketAddr> {
    let text = text.as_ref()?;
    let a = text.parse::<SocketAddr>().ok();
    if a.is_none() {
        e.expected(
            format!("maintenance_page.{key}"),
            "an address and port like \"0.0.0.0:443\"",
            text,
        );
    }
    a
}

pub(super) fn validate(
    raw: &Option<RawMaintenancePage>,
    services: &[(String, Vec<String>)],
    base: &Path,
    e: &mut Diagnostics,
) -> Option<MaintenancePageConfig> {
    let raw = raw.as_ref()?;
    let listen = addr("listen", &raw.listen, e);
    let tls_listen = addr("tls_listen", &raw.tls_listen, e);
    if raw.listen.is_none() && raw.tls_listen.is_none() {
        e.push(
            "maintenance_page",
            "expected `listen` (HTTP), `tls_listen` (HTTPS) or both; set e.g. listen = \"0.0.0.0:80\", or remove the table",
        );
    }
    let tls = match (&raw.tls_listen, &raw.tls_cert_file, &raw.tls_key_file) {
        (Some(_), Some(cert), Some(key)) => {
            tls_listen.zip(server_config(&base.join(cert), &base.join(key), e))
        }
        (Some(_), _, _) => {
            e.push(
                "maintenance_page.tls_listen",
                "expected tls_cert_file and tls_key_file with it (the certificate of the services' names and its key)",
            );
            None
        }
        (None, None, None) => None,
        (None, _, _) => {
            e.push(
                "maintenance_page.tls_cert_file",
                "a certificate without tls_listen is never used; set tls_listen = \"0.0.0.0:443\" or remove the certificate",
            );
            None
        }
    };
    if raw.services.is_empty() {
        e.push(
            "maintenance_page.services",
            "expected the names of the services that get the page, got none",
        );
    }
    let mut listed = Vec::new();
    for name in &raw.services {
        match services.iter().find(|(n, _)| n == name) {
            Some((_, names)) => listed.push(PageService {
                name: name.clone(),
                hosts: names
                    .iter()
                    .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
            }),
            None => e.push(
                "maintenance_page.services",
                format!("no [[service]] is named {name:?}"),
            ),
        }
    }
    let page = match &raw.page_file {
        None => Some(DEFAULT_PAGE.to_string()),
        Some(p) => {
            let path = base.join(p);
            match std::fs::metadata(&path).and_then(|m| {
                if m.len() > MAX_PAGE {
                    Ok(Err(m.len()))
                } else {
                    std::fs::read_to_string(&path).map(Ok)
                }
            }) {
                Ok(Ok(text)) => Some(text),
                Ok(Err(len)) => {
                    e.push(
                        "maintenance_page.page_file",
                        format!(
                            "{}: expected at most {MAX_PAGE} bytes, got {len}; keep the page small (inline small images, link to larger ones)",
                            path.display()
                        ),
                    );
                    None
                }
                Err(err) => {
                    e.push(
                        "maintenance_page.page_file",
                        format!(
                            "{}: cannot read ({err}); expected a UTF-8 HTML file",
                            path.display()
                        ),
                    );
                    None
                }
            }
        }
    };
    let range = Duration::from_secs(1)..=Duration::from_secs(86_400);
    let retry_after = match &raw.retry_after {
        None => Some(DEFAULT_RETRY_AFTER),
        Some(t) => match e.duration("maintenance_page.retry_after", t) {
            Some(d) if range.contains(&d) && d.subsec_nanos() == 0 => Some(d),
            Some(_) => {
                e.push(
                    "maintenance_page.retry_after",
                    format!("expected whole seconds between 1s and 1d, got {t:?}"),
                );
                None
            }
            None => None,
        },
    };
    Some(MaintenancePageConfig {
        listen,
        tls,
        services: listed,
        page: page?,
        retry_after: retry_after?,
    })
}

/// Reads the certificate chain and key and builds the HTTPS server config (ring, h2 and
/// http/1.1); every problem names the key.
fn server_config(
    cert: &Path,
    key: &Path,
    e: &mut Diagnostics,
) -> Option<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let certs = match shared::tls::read_cert_bundle(cert) {
        Ok(c) => Some(c),
        Err(err) => {
            e.push(
                "maintenance_page.tls_cert_file",
                format!("{err}; expected a PEM certificate chain"),
            );
            None
        }
    };
    let key_der = match shared::keys::read_secret_file(key) {
        Ok(pem) => match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
            Ok(k) => Some(k),
            Err(err) => {
                e.push(
                    "maintenance_page.tls_key_file",
                    format!("{}: {err}; expected a PEM private key", key.display()),
                );
                None
            }
        },
        Err(err) => {
            e.push("maintenance_page.tls_key_file", err);
            None
        }
    };
    let (certs, key_der) = (certs?, key_der?);
    let built = rustls::ServerConfig::builder_with_provider(shared::tls::ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(certs, key_der)
                .map_err(|err| err.to_string())
        });
    match built {
        Ok(mut c) => {
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Some(Arc::new(c))
        }
        Err(err) => {
            e.push(
                "maintenance_page.tls_key_file",
                format!(
                    "the key does not fit the certificate of tls_cert_file ({err}); give the key of that certificate"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(raw: RawMaintenancePage, dir: &Path) -> (Option<MaintenancePageConfig>, Vec<String>) {
        let mut e = Diagnostics::new(Path::new("c.toml"));
        let services = [(
            "web".to_string(),
            vec!["www.Example.test.".to_string(), "example.test.".to_string()],
        )];
        let c = validate(&Some(raw), &services, dir, &mut e);
        (c, e.iter().map(|d| d.to_string()).collect())
    }

    fn raw() -> RawMaintenancePage {
        RawMaintenancePage {
            listen: Some("127.0.0.1:8080".into()),
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            services: vec!["web".into()],
            page_file: None,
            retry_after: None,
        }
    }

    #[test]
    fn defaults_and_the_services_names() {
        let dir = tempfile::tempdir().unwrap();
        let (c, errors) = check(raw(), dir.path());
        assert!(errors.is_empty(), "{errors:?}");
        let c = c.unwrap();
        assert_eq!(c.retry_after, DEFAULT_RETRY_AFTER);
        assert_eq!(c.page, DEFAULT_PAGE);
        assert!(c.tls.is_none());
        assert_eq!(
            c.services,
            [PageService {
                name: "web".into(),
                hosts: vec!["www.example.test".into(), "example.test".into()]
            }]
        );
        assert!(
            validate(
                &None,
                &[],
                dir.path(),
                &mut Diagnostics::new(Path::new("c"))
            )
            .is_none()
        );
    }

    #[test]
    fn every_mistake_names_its_key_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.html");
        std::fs::write(&big, vec![b'x'; MAX_PAGE as usize + 1]).unwrap();
        let cert = dir.path().join("site.crt");
        let (cert_pem, key_pem) = shared::tls::self_signed(&["www.example.test".into()]).unwrap();
        std::fs::write(&cert, &cert_pem).unwrap();
        let other_key = dir.path().join("other.key");
        let (_, other_pem) = shared::tls::self_signed(&["other.test".into()]).unwrap();
        shared::keys::write_private_file(&other_key, other_pem.as_bytes()).unwrap();
        let key = dir.path().join("site.key");
        shared::keys::write_private_file(&key, key_pem.as_bytes()).unwrap();

        let cases: Vec<(RawMaintenancePage, &str)> = vec![
            (
                RawMaintenancePage {
                    listen: None,
                    ..raw()
                },
                "c.toml: maintenance_page: expected `listen` (HTTP), `tls_listen` (HTTPS) or both",
            ),
            (
                RawMaintenancePage {
                    listen: Some("port 80".into()),
                    ..raw()
                },
                "c.toml: maintenance_page.listen: expected an address and port like \"0.0.0.0:443\", got \"port 80\"",
            ),
            (
                RawMaintenancePage {
                    tls_listen: Some("127.0.0.1:8443".into()),
                    ..raw()
                },
                "c.toml: maintenance_page.tls_listen: expected tls_cert_file and tls_key_file with it",
            ),
            (
                RawMaintenancePage {
                    tls_cert_file: Some(cert.clone()),
                    ..raw()
                },
                "c.toml: maintenance_page.tls_cert_file: a certificate without tls_listen is never used",
            ),
            (
                RawMaintenancePage {
                    tls_listen: Some("127.0.0.1:8443".into()),
                    tls_cert_file: Some(cert.clone()),
                    tls_key_file: Some(other_key.clone()),
                    ..raw()
                },
                "c.toml: maintenance_page.tls_key_file: the key does not fit the certificate",
            ),
            (
                RawMaintenancePage {
                    tls_listen: Some("127.0.0.1:8443".into()),
                    tls_cert_file: Some("missing.crt".into()),
                    tls_key_file: Some(key.clone()),
                    ..raw()
                },
                "c.toml: maintenance_page.tls_cert_file: ",
            ),
            (
                RawMaintenancePage {
                    services: vec!["mail".into()],
                    ..raw()
                },
                "c.toml: maintenance_page.services: no [[service]] is named \"mail\"",
            ),
            (
                RawMaintenancePage {
                    services: vec![],
                    ..raw()
                },
                "c.toml: maintenance_page.services: expected the names of the services",
            ),
            (
                RawMaintenancePage {
                    page_file: Some("missing.html".into()),
                    ..raw()
                },
                "c.toml: maintenance_page.page_file: ",
            ),
            (
                RawMaintenancePage {
                    page_file: Some(big.clone()),
                    ..raw()
                },
                "expected at most 262144 bytes, got 262145",
            ),
            (
                RawMaintenancePage {
                    retry_after: Some("2d".into()),
                    ..raw()
                },
                "c.toml: maintenance_page.retry_after: expected whole seconds between 1s and 1d, got \"2d\"",
            ),
            (
                RawMaintenancePage {
                    retry_after: Some("soon".into()),
                    ..raw()
                },
                "c.toml: maintenance_page.retry_after: ",
            ),
        ];
        for (raw, want) in cases {
            let shown = format!("{raw:?}");
            let (c, errors) = check(raw, dir.path());
            assert!(c.is_none() || errors.len() == 1, "{shown}: {errors:?}");
            assert_eq!(errors.len(), 1, "{shown}: {errors:?}");
            assert!(errors[0].contains(want), "{shown}: {errors:?}");
        }

        // The right pair builds an HTTPS config.
        let (c, errors) = check(
            RawMaintenancePage {
                tls_listen: Some("127.0.0.1:8443".into()),
                tls_cert_file: Some(cert),
                tls_key_file: Some(key),
                ..raw()
            },
            dir.path(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(c.unwrap().tls.is_some());
    }
}
