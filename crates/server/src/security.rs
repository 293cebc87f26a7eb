//! How the scheduler's comms are secured, decided from the command line and
//! Dask's `distributed.comm.*` config the way `dask scheduler` and
//! distributed's `Security` decide it:
//!
//! - `--tls-ca-file`/`--tls-cert`/`--tls-key` win over
//!   `distributed.comm.tls.ca-file` and `distributed.comm.tls.scheduler.*`;
//! - giving any TLS flag makes the listener `tls://` and requires
//!   encryption, unless `distributed.comm.require-encryption` says otherwise;
//! - otherwise the scheme comes from `--host`/`--protocol`, then from
//!   `require-encryption` (tls), then `distributed.comm.default-scheme`.

use crate::cli::Cli;
use crate::net::tls::{https_acceptor, PemSource, Tls, TlsSettings, TlsVersion};
use crate::net::{CommSecurity, Scheme};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::sync::Arc;

/// The `distributed.comm.*` settings that concern security, as Dask's
/// config resolves them (YAML files, `DASK_*` variables).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommConfig {
    /// `distributed.comm.tls.ca-file` (a path or inline PEM)
    pub ca_file: Option<String>,
    /// `distributed.comm.tls.scheduler.cert`
    pub cert: Option<String>,
    /// `distributed.comm.tls.scheduler.key`
    pub key: Option<String>,
    /// `distributed.comm.tls.min-version`
    pub min_version: Option<f64>,
    /// `distributed.comm.tls.max-version`
    pub max_version: Option<f64>,
    /// `distributed.comm.tls.ciphers` (an OpenSSL cipher string)
    pub ciphers: Option<String>,
    /// `distributed.comm.require-encryption`
    pub require_encryption: Option<bool>,
    /// `distributed.comm.default-scheme`
    pub default_scheme: Option<String>,
}

impl CommConfig {
    /// The same settings from `DASK_DISTRIBUTED__COMM__*` variables, for a
    /// scheduler running without its Python environment.
    pub fn from_env() -> CommConfig {
        let var = |name: &str| dask_env(&format!("DASK_DISTRIBUTED__COMM__{name}"));
        let flag = |v: String| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes");
        CommConfig {
            ca_file: var("TLS__CA_FILE"),
            cert: var("TLS__SCHEDULER__CERT"),
            key: var("TLS__SCHEDULER__KEY"),
            min_version: var("TLS__MIN_VERSION").and_then(|v| v.parse().ok()),
            max_version: var("TLS__MAX_VERSION").and_then(|v| v.parse().ok()),
            ciphers: var("TLS__CIPHERS"),
            require_encryption: var("REQUIRE_ENCRYPTION").map(flag),
            default_scheme: var("DEFAULT_SCHEME"),
        }
    }
}

/// `distributed.scheduler.dashboard.tls.*`: HTTPS on the dashboard port.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DashboardTlsConfig {
    /// `.cert` (HTTPS is on when this is set)
    pub cert: Option<String>,
    /// `.key` (else the key is read from the certificate file)
    pub key: Option<String>,
}

impl DashboardTlsConfig {
    /// The same settings from `DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__*`.
    pub fn from_env() -> DashboardTlsConfig {
        let var = |name: &str| {
            dask_env(&format!(
                "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__{name}"
            ))
        };
        DashboardTlsConfig {
            cert: var("CERT"),
            key: var("KEY"),
        }
    }

    /// The HTTPS acceptor when a certificate is configured (Python asks
    /// clients for no certificate here: encryption only).
    pub fn acceptor(&self) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
        let Some(cert) = &self.cert else {
            return Ok(None);
        };
        let key = self.key.as_deref().map(PemSource::from_config);
        https_acceptor(&PemSource::from_config(cert), key.as_ref())
            .map(Some)
            .context("setting up HTTPS for the dashboard (distributed.scheduler.dashboard.tls)")
    }
}

/// A `DASK_*` variable's value, unquoted; `None` when unset, empty or
/// `null` (Dask's YAML spelling of "not set").
fn dask_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("null"))
}

/// What the listeners speak and with which TLS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CommPlan {
    /// Each listener's bind address and scheme, in the order of
    /// [`Cli::listeners`]; the first is the scheduler address's.
    pub listeners: Vec<(SocketAddr, Scheme)>,
    /// Present when a CA file and a certificate are configured; also used
    /// to dial `tls://` workers.
    pub tls: Option<TlsSettings>,
    /// Refuse `tcp://` in both directions.
    pub require_encryption: bool,
}

impl CommPlan {
    /// Decide the scheme and TLS settings; an error names the option or
    /// setting that is missing or cannot be honoured.
    pub fn decide(cli: &Cli, config: &CommConfig) -> anyhow::Result<CommPlan> {
        let flags = cli.tls_flags_given();
        // Security(**flags): require_encryption from config, else bool(flags)
        let require_encryption = config.require_encryption.unwrap_or(flags);
        let default = if flags || require_encryption {
            Scheme::Tls
        } else {
            match config.default_scheme.as_deref() {
                None => Scheme::Tcp,
                Some(name) => match Scheme::parse(name.trim_end_matches("://")) {
                    Some(s) => s,
                    None => bail!(
                        "distributed.comm.default-scheme is {name:?}, which this scheduler \
                         does not support; only tcp, tls, ws and wss are"
                    ),
                },
            }
        };
        let listeners: Vec<(SocketAddr, Scheme)> = cli
            .listeners()?
            .iter()
            .map(|l| (l.addr, l.scheme.unwrap_or(default)))
            .collect();
        let schemes = || listeners.iter().map(|(_, s)| *s);
        let secure = schemes().find(|s| s.secure());
        let file = |p: &Option<std::path::PathBuf>| p.clone().map(PemSource::File);
        let conf = |v: &Option<String>| v.as_deref().map(PemSource::from_config);
        let ca_file = file(&cli.tls_ca_file).or_else(|| conf(&config.ca_file));
        let cert = file(&cli.tls_cert).or_else(|| conf(&config.cert));
        let key = file(&cli.tls_key).or_else(|| conf(&config.key));
        let version = |v: Option<f64>, name: &str| -> anyhow::Result<Option<TlsVersion>> {
            match v {
                None => Ok(None),
                Some(x) => match TlsVersion::parse(x) {
                    Some(t) => Ok(Some(t)),
                    None => bail!("distributed.comm.tls.{name} must be 1.2 or 1.3, not {x}"),
                },
            }
        };
        let min_version = version(config.min_version, "min-version")?.unwrap_or(TlsVersion::V1_2);
        let max_version = version(config.max_version, "max-version")?;
        let tls = match (ca_file, cert) {
            (Some(ca_file), Some(cert)) => Some(TlsSettings {
                ca_file,
                cert,
                key,
                min_version,
                max_version,
            }),
            (ca, cert) => {
                if let Some(scheme) = secure {
                    let mut missing = Vec::new();
                    if ca.is_none() {
                        missing.push("--tls-ca-file (distributed.comm.tls.ca-file)");
                    }
                    if cert.is_none() {
                        missing.push("--tls-cert (distributed.comm.tls.scheduler.cert)");
                    }
                    bail!(
                        "{}:// needs a CA file and a certificate; missing {}",
                        scheme.name(),
                        missing.join(" and ")
                    );
                }
                None
            }
        };
        if let (Some(ciphers), Some(_)) = (&config.ciphers, &tls) {
            bail!(
                "distributed.comm.tls.ciphers ({ciphers:?}) is not supported by this scheduler: \
                 its TLS (rustls) offers only its own fixed set of modern cipher suites; \
                 unset the setting"
            );
        }
        if require_encryption && schemes().any(|s| s == Scheme::Tcp) {
            bail!(
                "encryption required by Dask configuration (distributed.comm.require-encryption, \
                 or TLS options given), refusing to listen on tcp://; use tls://"
            );
        }
        Ok(CommPlan {
            listeners,
            tls,
            require_encryption,
        })
    }

    /// The listeners' schemes, in order.
    pub fn schemes(&self) -> Vec<Scheme> {
        self.listeners.iter().map(|(_, s)| *s).collect()
    }

    /// Read the certificates and key: the comm security that the listener
    /// and the worker RPC pool share.
    pub fn load(&self) -> anyhow::Result<CommSecurity> {
        let tls = match &self.tls {
            Some(settings) => Some(Arc::new(
                Tls::load(settings).context("setting up TLS for tls:// comms")?,
            )),
            None => None,
        };
        Ok(CommSecurity {
            tls,
            require_encryption: self.require_encryption,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["dask-scheduler"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap()
    }

    fn decide(args: &[&str], config: &CommConfig) -> anyhow::Result<CommPlan> {
        CommPlan::decide(&cli(args), config)
    }

    const FLAGS: &[&str] = &["--tls-ca-file", "ca.pem", "--tls-cert", "c.pem"];

    #[test]
    fn schemes_follow_python() {
        let none = CommConfig::default();
        let configured = CommConfig {
            ca_file: Some("ca.pem".into()),
            cert: Some("c.pem".into()),
            ..Default::default()
        };
        let tls_scheme = CommConfig {
            default_scheme: Some("tls".into()),
            ..configured.clone()
        };
        let required = CommConfig {
            require_encryption: Some(true),
            ..configured.clone()
        };
        let not_required = CommConfig {
            require_encryption: Some(false),
            ..Default::default()
        };
        // (args, config, scheme, has TLS, encryption required)
        let cases: &[(&[&str], &CommConfig, Scheme, bool, bool)] = &[
            (&[], &none, Scheme::Tcp, false, false),
            (FLAGS, &none, Scheme::Tls, true, true),
            // certificates in the config alone do not change the scheme
            (&[], &configured, Scheme::Tcp, true, false),
            (&[], &tls_scheme, Scheme::Tls, true, false),
            (&[], &required, Scheme::Tls, true, true),
            (
                &["--protocol", "tls"],
                &configured,
                Scheme::Tls,
                true,
                false,
            ),
            (
                &["--host", "tls://127.0.0.1"],
                &configured,
                Scheme::Tls,
                true,
                false,
            ),
            (&["--protocol", "ws"], &none, Scheme::Ws, false, false),
            (
                &["--protocol", "wss", "--tls-ca-file", "a", "--tls-cert", "b"],
                &none,
                Scheme::Wss,
                true,
                true,
            ),
            (
                &["--host", "wss://127.0.0.1"],
                &configured,
                Scheme::Wss,
                true,
                false,
            ),
            // distributed's WebSocket listener does not check require-encryption
            (
                &["--protocol", "ws", "--tls-ca-file", "a", "--tls-cert", "b"],
                &none,
                Scheme::Ws,
                true,
                true,
            ),
            // flags with require-encryption off may listen on tcp
            (
                &["--tls-ca-file", "a", "--tls-cert", "b", "--protocol", "tcp"],
                &not_required,
                Scheme::Tcp,
                true,
                false,
            ),
        ];
        for (args, config, scheme, tls, required) in cases {
            let plan = decide(args, config).unwrap();
            assert_eq!(plan.schemes(), [*scheme], "{args:?} {config:?}");
            assert_eq!(plan.tls.is_some(), *tls, "{args:?} {config:?}");
            assert_eq!(plan.require_encryption, *required, "{args:?} {config:?}");
        }
        // several listeners: each its own scheme, the TLS set-up shared
        let plan = decide(&["--protocol", "tcp,wss", "--port", "1,2"], &configured).unwrap();
        assert_eq!(plan.schemes(), [Scheme::Tcp, Scheme::Wss]);
        assert!(plan.tls.is_some());
        let e = decide(&["--protocol", "ws,wss", "--port", "1,2"], &none).unwrap_err();
        assert!(e.to_string().contains("wss:// needs"), "{e}");
        let mut flags = FLAGS.to_vec();
        flags.extend(["--protocol", "wss,tcp", "--port", "1,2"]);
        let e = decide(&flags, &none).unwrap_err();
        assert!(
            e.to_string().contains("refusing to listen on tcp://"),
            "{e}"
        );
        let plan = decide(FLAGS, &none).unwrap().tls.unwrap();
        assert_eq!(plan.ca_file, PemSource::File("ca.pem".into()));
        assert_eq!(plan.key, None);
        assert_eq!(plan.min_version, TlsVersion::V1_2);
    }

    #[test]
    fn flags_win_over_config_and_inline_pem_is_recognised() {
        let config = CommConfig {
            ca_file: Some("-----BEGIN CERTIFICATE-----\nx\n".into()),
            cert: Some("conf-cert.pem".into()),
            key: Some("conf-key.pem".into()),
            min_version: Some(1.3),
            ..Default::default()
        };
        let plan = decide(&["--tls-cert", "flag.pem", "--protocol", "tls"], &config)
            .unwrap()
            .tls
            .unwrap();
        assert!(matches!(plan.ca_file, PemSource::Inline(_)));
        assert_eq!(plan.cert, PemSource::File("flag.pem".into()));
        assert_eq!(plan.key, Some(PemSource::File("conf-key.pem".into())));
        assert_eq!(plan.min_version, TlsVersion::V1_3);
    }

    #[test]
    fn what_cannot_work_is_named() {
        let none = CommConfig::default();
        let cases: &[(&[&str], CommConfig, &str)] = &[
            (&["--protocol", "tls"], none.clone(), "--tls-ca-file"),
            (
                &["--protocol", "wss"],
                none.clone(),
                "wss:// needs a CA file",
            ),
            (&["--tls-cert", "c.pem"], none.clone(), "--tls-ca-file"),
            (&["--tls-ca-file", "ca.pem"], none.clone(), "--tls-cert"),
            (
                &["--protocol", "tcp", "--tls-ca-file", "a", "--tls-cert", "b"],
                none.clone(),
                "refusing to listen on tcp://",
            ),
            (
                FLAGS,
                CommConfig {
                    ciphers: Some("ECDHE+AESGCM".into()),
                    ..Default::default()
                },
                "distributed.comm.tls.ciphers",
            ),
            (
                FLAGS,
                CommConfig {
                    min_version: Some(1.1),
                    ..Default::default()
                },
                "min-version must be 1.2 or 1.3",
            ),
            (
                &[],
                CommConfig {
                    default_scheme: Some("ucx".into()),
                    ..Default::default()
                },
                "default-scheme",
            ),
        ];
        for (args, config, want) in cases {
            let e = decide(args, config).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn missing_files_are_named() {
        let plan = decide(
            &[
                "--tls-ca-file",
                "/nonexistent/ca.pem",
                "--tls-cert",
                "c.pem",
            ],
            &CommConfig::default(),
        )
        .unwrap();
        let e = format!("{:#}", plan.load().unwrap_err());
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn the_dashboard_is_https_only_with_a_certificate() {
        assert!(DashboardTlsConfig::default().acceptor().unwrap().is_none());
        let missing = DashboardTlsConfig {
            cert: Some("/nonexistent/web.pem".into()),
            key: None,
        };
        let e = format!("{:#}", missing.acceptor().err().unwrap());
        assert!(
            e.contains("dashboard") && e.contains("/nonexistent/web.pem"),
            "{e}"
        );
    }
}
