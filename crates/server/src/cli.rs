//! Command line, compatible with `dask scheduler` (`distributed/cli/dask_scheduler.py`).
//!
//! Options of the Python CLI that this scheduler cannot honour (UCX,
//! Jupyter) are still accepted so that existing deployments start;
//! [`Cli::validate`] turns the unsupported ones into a clear startup error or
//! a warning. [`args_for_clap`] reads the arguments for `--preload` modules
//! as click does.

use crate::net::Scheme;
use anyhow::{anyhow, bail, Context};
use clap::{CommandFactory, Parser};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

/// The `distributed` version whose protocol this scheduler speaks.
pub const DISTRIBUTED_VERSION: &str = "2026.8.0";

/// Default scheduler port.
pub const DEFAULT_PORT: u16 = 8786;

/// Default dashboard (HTTP) port.
pub const DEFAULT_DASHBOARD_PORT: u16 = 8787;

/// Default `--max-message-size`: 4 GiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 4 << 30;

/// Launch a Dask scheduler.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dask-scheduler",
    version = concat!("2026.8.0 (Rust dask-scheduler ", env!("CARGO_PKG_VERSION"), ")"),
    about = "Launch a Dask scheduler."
)]
pub struct Cli {
    /// URI, IP or hostname of this server
    #[arg(long, default_value = "", hide_default_value = true)]
    pub host: String,

    /// Serving port [default: 8786]; a comma-separated list with a list of
    /// protocols
    #[arg(long)]
    pub port: Option<String>,

    /// Preferred network interface like 'eth0' or 'ib0' (a comma-separated
    /// list with a list of protocols)
    #[arg(long)]
    pub interface: Option<String>,

    /// Protocol like tcp, tls, or ucx (tcp, tls, ws and wss are supported);
    /// a comma-separated list listens on each, e.g. `--protocol tcp,ws
    /// --port 8786,8788`
    #[arg(long)]
    pub protocol: Option<String>,

    /// CA cert(s) file for TLS (in PEM format)
    #[arg(long)]
    pub tls_ca_file: Option<PathBuf>,

    /// certificate file for TLS (in PEM format)
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,

    /// private key file for TLS (in PEM format)
    #[arg(long)]
    pub tls_key: Option<PathBuf>,

    /// Address on which to listen for diagnostics dashboard
    #[arg(long, default_value = ":8787")]
    pub dashboard_address: String,

    /// Launch the Dashboard [default: --dashboard]
    #[arg(long = "dashboard", overrides_with = "no_dashboard")]
    pub dashboard: bool,

    /// Do not launch the dashboard (nor /health and /metrics)
    #[arg(long = "no-dashboard", overrides_with = "dashboard")]
    pub no_dashboard: bool,

    /// Start a Jupyter Server in the same process [not supported, ignored]
    #[arg(long = "jupyter", overrides_with = "no_jupyter")]
    pub jupyter: bool,

    /// Do not start a Jupyter Server
    #[arg(long = "no-jupyter", overrides_with = "jupyter", hide = true)]
    pub no_jupyter: bool,

    /// Show web UI (deprecated, ignored)
    #[arg(long = "show", overrides_with = "no_show", hide = true)]
    pub show: bool,

    /// Do not show web UI (deprecated, ignored)
    #[arg(long = "no-show", overrides_with = "show", hide = true)]
    pub no_show: bool,

    /// Use xheaders in dashboard app for ssl termination in header (deprecated, ignored)
    #[arg(long, hide = true)]
    pub use_xheaders: Option<String>,

    /// Prefix for the dashboard app
    #[arg(long, default_value = "", hide_default_value = true)]
    pub dashboard_prefix: String,

    /// File to write the process PID
    #[arg(long, default_value = "", hide_default_value = true)]
    pub pid_file: String,

    /// File to write connection information. This may be a good way to share
    /// connection information if your cluster is on a shared network file system.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub scheduler_file: String,

    /// Module that should be loaded by the scheduler process like "foo.bar" or
    /// "/path/to/foo.py" (run in the scheduler's Python process for
    /// run_on_scheduler functions, with a stand-in for the scheduler object)
    #[arg(long)]
    pub preload: Vec<String>,

    /// Arguments for --preload modules
    #[arg(hide = true, allow_hyphen_values = true, trailing_var_arg = true)]
    pub preload_argv: Vec<String>,

    /// Time of inactivity after which to kill the scheduler
    #[arg(long)]
    pub idle_timeout: Option<String>,

    /// Python interpreter for the graph materializer helpers (needs the same
    /// dask/distributed as the workers) [default: python3 from PATH]
    #[arg(long, env = "DASK_SCHEDULER_PYTHON")]
    pub python: Option<PathBuf>,

    /// Most graph materializer helper processes at once [default: number of CPUs]
    #[arg(long, env = "DASK_SCHEDULER_MATERIALIZER_POOL_SIZE")]
    pub materializer_pool_size: Option<usize>,

    /// Materializer helpers kept running (at least 1); more start while graphs
    /// wait, up to --materializer-pool-size
    #[arg(
        long,
        env = "DASK_SCHEDULER_MATERIALIZER_MIN_HELPERS",
        default_value_t = 1
    )]
    pub materializer_min_helpers: usize,

    /// How long an extra materializer helper may stay idle before it stops
    /// ("60s", "2m", "0.5")
    #[arg(long, env = "DASK_SCHEDULER_MATERIALIZER_SPARE_IDLE", default_value = "60s",
          value_parser = parse_duration)]
    pub materializer_spare_idle: Duration,

    /// Log level: debug, info, warning, error (RUST_LOG overrides it when set)
    #[arg(long, env = "DASK_SCHEDULER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Largest accepted message, in bytes ("4GiB", "500MB", "1000000")
    #[arg(long, value_parser = parse_bytes, default_value = "4GiB")]
    pub max_message_size: u64,
}

/// `args` (the program name first) reordered for clap as click reads them
/// for `dask scheduler`: its options are recognised wherever they stand,
/// and every other token (an unknown option, its value, a positional) is an
/// argument for the `--preload` modules, kept in order after a `--`. So
/// `--preload m.py --greeting hi --port 8786` listens on 8786 and passes
/// `--greeting hi` to `m.py`, as Python's `ignore_unknown_options` does.
pub fn args_for_clap(args: Vec<OsString>) -> Vec<OsString> {
    let mut command = Cli::command();
    command.build(); // adds --help and --version
    let takes_value = |long: &str| {
        command
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(long) || a.get_short().is_some_and(|c| long == c.to_string())
            })
            .map(|a| a.get_action().takes_values())
    };
    let mut iter = args.into_iter();
    let mut known: Vec<OsString> = iter.next().into_iter().collect();
    let mut rest = Vec::new();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy().into_owned();
        if text == "--" {
            rest.extend(iter.by_ref());
            break;
        }
        let name = text
            .strip_prefix("--")
            .or_else(|| text.strip_prefix('-').filter(|n| n.len() == 1))
            .map(|n| n.split_once('=').map_or(n, |(n, _)| n));
        match name.and_then(takes_value) {
            Some(true) => {
                let inline = text.contains('=');
                known.push(arg);
                if !inline {
                    known.extend(iter.next());
                }
            }
            Some(false) => known.push(arg),
            None => rest.push(arg),
        }
    }
    if !rest.is_empty() {
        known.push("--".into());
        known.extend(rest);
    }
    known
}

impl Cli {
    /// Check option combinations; returns warnings to log for options that are
    /// accepted but ignored, and an error for the ones that cannot work.
    pub fn validate(&self) -> anyhow::Result<Vec<String>> {
        let mut warnings = Vec::new();
        if !self.preload_argv.is_empty() && self.preload.is_empty() {
            if let Some(opt) = self.preload_argv.iter().find(|a| a.starts_with('-')) {
                bail!("No such option: {opt} (see '--help' for valid options)");
            }
            bail!(
                "Got unexpected extra argument{}: ({}). Check spelling -- see '--help' for valid options.",
                if self.preload_argv.len() > 1 { "s" } else { "" },
                self.preload_argv.join(" ")
            );
        }
        if self.jupyter {
            warnings.push("--jupyter is not supported by this scheduler; ignoring it".into());
        }
        if self.show || self.no_show {
            warnings.push("--show/--no-show is deprecated and has no effect".into());
        }
        if self.use_xheaders.is_some() {
            warnings.push("--use-xheaders is deprecated and has no effect".into());
        }
        self.listeners()?;
        self.dashboard_addr()?;
        self.idle_timeout()?;
        Ok(warnings)
    }

    /// Whether the dashboard HTTP server (with /health, /metrics) runs.
    pub fn dashboard_enabled(&self) -> bool {
        !self.no_dashboard
    }

    /// True when any of `--tls-ca-file`, `--tls-cert`, `--tls-key` is given
    /// (Python then listens on `tls://` and requires encryption).
    pub fn tls_flags_given(&self) -> bool {
        self.tls_ca_file.is_some() || self.tls_cert.is_some() || self.tls_key.is_some()
    }

    /// The listeners asked for, in order (the first one's address is the
    /// scheduler's): one, or one per entry of `--protocol a,b` with
    /// `--port p,q`, as distributed's `dask scheduler` reads them.
    pub fn listeners(&self) -> anyhow::Result<Vec<ListenerSpec>> {
        let list = |v: &Option<String>| {
            v.as_deref().filter(|s| s.contains(',')).map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .collect::<Vec<_>>()
            })
        };
        let protocols = list(&self.protocol);
        let ports = match list(&self.port) {
            Some(ps) => Some(
                ps.iter()
                    .map(|p| parse_port(p))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let interfaces = list(&self.interface);
        let host_arg = self.host.trim();
        let host_has_port = split_host_port(strip_scheme(host_arg))?.1.is_some();
        let (protocols, ports) = match (protocols, ports) {
            (None, None) => {
                return Ok(vec![self.listener(
                    self.protocol.as_deref(),
                    self.port()?,
                    self.interface.as_deref(),
                )?])
            }
            // distributed: the first on 8786, the others on any free port
            (Some(pr), None) if self.port.is_none() && !host_has_port => {
                let ports = std::iter::once(Some(DEFAULT_PORT))
                    .chain(std::iter::repeat(Some(0)))
                    .take(pr.len())
                    .collect();
                (pr, ports)
            }
            (Some(pr), Some(ps)) if pr.len() == ps.len() => {
                (pr, ps.into_iter().map(Some).collect::<Vec<_>>())
            }
            _ => bail!("--protocol and --port must both be lists of equal length"),
        };
        if interfaces
            .as_ref()
            .is_some_and(|i| i.len() != protocols.len())
        {
            bail!("--interface must list as many interfaces as --protocol lists protocols");
        }
        protocols
            .iter()
            .zip(ports)
            .enumerate()
            .map(|(i, (protocol, port))| {
                let iface = match &interfaces {
                    Some(list) => Some(list[i].as_str()),
                    None => self.interface.as_deref(),
                };
                self.listener(Some(protocol), port, iface)
            })
            .collect()
    }

    /// `--port` when it is one port.
    fn port(&self) -> anyhow::Result<Option<u16>> {
        self.port.as_deref().map(parse_port).transpose()
    }

    /// One listener from its protocol, port and interface and `--host`.
    fn listener(
        &self,
        protocol: Option<&str>,
        port: Option<u16>,
        interface: Option<&str>,
    ) -> anyhow::Result<ListenerSpec> {
        // `--protocol` wins over a scheme in `--host`, as in distributed's
        // `address_from_user_args`
        let host_arg = self.host.trim();
        let scheme = match (protocol, host_arg.split_once("://")) {
            (Some(p), _) => scheme_named(p.trim_end_matches("://"), "--protocol")?,
            (None, Some((name, _))) => scheme_named(name, "--host")?,
            (None, None) => None,
        };
        if interface.is_some() && !host_arg.is_empty() {
            bail!("Can not specify both --interface and --host");
        }
        let (host, host_port) = split_host_port(strip_scheme(host_arg))?;
        let port = match (host_port, port) {
            (Some(hp), Some(p)) if hp != 0 && hp != p => {
                bail!("port number given twice in options: host {host_arg} and port {p}")
            }
            (_, Some(p)) => p,
            (Some(hp), None) => hp,
            (None, None) => DEFAULT_PORT,
        };
        let ip = match interface {
            Some(iface) => IpAddr::V4(interface_ipv4(iface)?),
            None if host.is_empty() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            None => resolve_host(host, port)?,
        };
        Ok(ListenerSpec {
            scheme,
            addr: SocketAddr::new(ip, port),
        })
    }

    /// The address to bind the dashboard HTTP server to; `None` with `--no-dashboard`.
    pub fn dashboard_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if !self.dashboard_enabled() {
            return Ok(None);
        }
        parse_dashboard_address(&self.dashboard_address).map(Some)
    }

    /// `--idle-timeout` as a duration; `None` when absent or zero (disabled).
    pub fn idle_timeout(&self) -> anyhow::Result<Option<Duration>> {
        let Some(s) = self.idle_timeout.as_deref() else {
            return Ok(None);
        };
        let timeout = parse_duration(s).map_err(|_| {
            anyhow!("invalid --idle-timeout {s:?} (expected e.g. \"30s\", \"5 minutes\", \"1h\")")
        })?;
        Ok((!timeout.is_zero()).then_some(timeout))
    }

    /// `--pid-file`, if given.
    pub fn pid_file(&self) -> Option<PathBuf> {
        (!self.pid_file.is_empty()).then(|| PathBuf::from(&self.pid_file))
    }

    /// `--scheduler-file`, if given.
    pub fn scheduler_file(&self) -> Option<PathBuf> {
        (!self.scheduler_file.is_empty()).then(|| PathBuf::from(&self.scheduler_file))
    }

    /// Most materializer helpers: `--materializer-pool-size` or the CPU count.
    pub fn materializer_pool_size(&self) -> usize {
        self.materializer_pool_size
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The `tcp://IP:PORT` (or `tls://`) address clients and workers should
    /// use to reach a listener bound to `bound`: a wildcard bind is replaced
    /// by this host's primary IP (like distributed's `get_ip()`), falling
    /// back to 127.0.0.1.
    pub fn contact_address(&self, bound: SocketAddr, scheme: Scheme) -> String {
        let ip = if bound.ip().is_unspecified() {
            primary_ip()
        } else {
            bound.ip()
        };
        crate::net::conn::uri(scheme, SocketAddr::new(ip, bound.port()))
    }
}

/// One listener the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSpec {
    /// The scheme `--protocol` or `--host` names; else Dask's config decides.
    pub scheme: Option<Scheme>,
    /// Where to bind.
    pub addr: SocketAddr,
}

/// `host` without a `scheme://` prefix.
fn strip_scheme(host: &str) -> &str {
    host.split_once("://").map_or(host, |(_, rest)| rest)
}

fn parse_port(p: &str) -> anyhow::Result<u16> {
    p.trim()
        .parse()
        .map_err(|_| anyhow!("invalid --port {p:?} (a port number, or a comma-separated list)"))
}

/// A scheme this scheduler can listen on; any other is an error naming it.
fn scheme_named(name: &str, option: &str) -> anyhow::Result<Option<Scheme>> {
    match Scheme::parse(name) {
        Some(s) => Ok(Some(s)),
        None => bail!(
            "{option} asks for {name}://, which this scheduler does not support; \
             only tcp://, tls://, ws:// and wss:// are"
        ),
    }
}

/// Split `host`, `host:port`, `[v6]` or `[v6]:port` (distributed's `parse_host_port`).
fn split_host_port(loc: &str) -> anyhow::Result<(&str, Option<u16>)> {
    let bad = || anyhow!("invalid address {loc:?}; maybe: ipv6 needs brackets like [::1]");
    let port = |p: &str| -> anyhow::Result<u16> {
        p.parse()
            .map_err(|_| anyhow!("invalid port {p:?} in address {loc:?}"))
    };
    if let Some(rest) = loc.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        if tail.is_empty() {
            return Ok((host, None));
        }
        let p = tail.strip_prefix(':').ok_or_else(bad)?;
        return Ok((host, Some(port(p)?)));
    }
    match loc.rsplit_once(':') {
        None => Ok((loc, None)),
        Some((host, _)) if host.contains(':') => Err(bad()),
        Some((host, p)) => Ok((host, Some(port(p)?))),
    }
}

/// Resolve a host name or IP literal, preferring IPv4.
fn resolve_host(host: &str, port: u16) -> anyhow::Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("could not resolve host {host:?}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .map(SocketAddr::ip)
        .ok_or_else(|| anyhow!("host {host:?} resolved to no address"))
}

/// Parse `--dashboard-address`: `:PORT`, `HOST:PORT`, `PORT`, or `HOST`.
pub fn parse_dashboard_address(s: &str) -> anyhow::Result<SocketAddr> {
    let s = s.trim();
    let loc = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("tcp://"))
        .unwrap_or(s);
    if !loc.is_empty() && loc.bytes().all(|b| b.is_ascii_digit()) {
        let port = loc
            .parse()
            .map_err(|_| anyhow!("invalid dashboard port {loc:?}"))?;
        return Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
    }
    let (host, port) = split_host_port(loc).context("invalid --dashboard-address")?;
    let port = port.unwrap_or(DEFAULT_DASHBOARD_PORT);
    let ip = if host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        resolve_host(host, port)?
    };
    Ok(SocketAddr::new(ip, port))
}

/// The IPv4 address of network interface `name` (distributed's `get_ip_interface`).
pub fn interface_ipv4(name: &str) -> anyhow::Result<Ipv4Addr> {
    let ifaces = if_addrs::get_if_addrs().context("could not list network interfaces")?;
    if !ifaces.iter().any(|i| i.name == name) {
        let mut names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
        names.dedup();
        bail!("{name:?} is not a valid network interface. Valid network interfaces are: {names:?}");
    }
    ifaces
        .iter()
        .filter(|i| i.name == name)
        .find_map(|i| match i.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| anyhow!("interface {name:?} doesn't have an IPv4 address"))
}

/// This host's primary IP: the local address of the default route (found with
/// an unconnected UDP socket, which sends nothing), else the first
/// non-loopback IPv4 interface address, else 127.0.0.1.
pub fn primary_ip() -> IpAddr {
    let routed = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(8, 8, 8, 8), 80))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified());
    if let Some(ip) = routed {
        return ip;
    }
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        if let Some(ip) = ifaces
            .iter()
            .map(|i| i.ip())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        {
            return ip;
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Parse a duration like dask's `parse_timedelta`: `"60s"`, `"2m"`, `"0.5"` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    dask_core::timedelta::parse_seconds(s)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("invalid duration {s:?} (like \"60s\", \"2m\" or \"0.5\")"))
}

/// Parse a byte size like dask's `parse_bytes`: `"4GiB"`, `"500 MB"`, `"1e6"`, `"100"`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().replace(' ', "").to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '+'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = if num.is_empty() {
        1.0
    } else {
        num.parse()
            .map_err(|_| format!("invalid byte size {s:?}"))?
    };
    let factor: f64 = match unit {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024f64.powi(4),
        "pi" | "pib" => 1024f64.powi(5),
        _ => return Err(format!("invalid byte size {s:?} (unknown unit {unit:?})")),
    };
    let v = n * factor;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("invalid byte size {s:?}"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec![OsString::from("dask-scheduler")];
        argv.extend(args.iter().map(OsString::from));
        Cli::try_parse_from(args_for_clap(argv)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listen_addresses() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "0.0.0.0:8786"),
            (&["--host", "0.0.0.0"], "0.0.0.0:8786"),
            (&["--host", "127.0.0.1"], "127.0.0.1:8786"),
            (&["--host", "127.0.0.1", "--port", "9000"], "127.0.0.1:9000"),
            (&["--port", "0"], "0.0.0.0:0"),
            (&["--host", "tcp://127.0.0.1:9001"], "127.0.0.1:9001"),
            (&["--host", "127.0.0.1:9002"], "127.0.0.1:9002"),
            (
                &["--host", "127.0.0.1:9002", "--port", "9002"],
                "127.0.0.1:9002",
            ),
            (&["--host", "[::1]"], "[::1]:8786"),
            (&["--host", "[::1]:7"], "[::1]:7"),
            (&["--host", "localhost", "--port", "1234"], "127.0.0.1:1234"),
            (&["--protocol", "tcp", "--port", "5"], "0.0.0.0:5"),
            (&["--protocol", "tcp://"], "0.0.0.0:8786"),
            (&["--protocol", "tls"], "0.0.0.0:8786"),
            (&["--host", "tls://127.0.0.1:9003"], "127.0.0.1:9003"),
            (&["--protocol", "ws"], "0.0.0.0:8786"),
            (&["--host", "wss://127.0.0.1:9004"], "127.0.0.1:9004"),
            (&["--interface", "lo"], "127.0.0.1:8786"),
        ];
        for (args, want) in cases {
            let c = cli(args);
            let listeners = c.listeners().unwrap();
            assert_eq!(listeners.len(), 1, "{args:?}");
            assert_eq!(listeners[0].addr, sa(want), "{args:?}");
            c.validate().unwrap();
        }
    }

    #[test]
    fn several_listeners() {
        let spec = |scheme, addr: &str| ListenerSpec {
            scheme: Some(scheme),
            addr: sa(addr),
        };
        let cases: &[(&[&str], Vec<ListenerSpec>)] = &[
            (
                &["--protocol", "tcp,ws", "--port", "8786,8788"],
                vec![
                    spec(Scheme::Tcp, "0.0.0.0:8786"),
                    spec(Scheme::Ws, "0.0.0.0:8788"),
                ],
            ),
            // the first on 8786, the others on any free port
            (
                &["--protocol", "tls,wss", "--host", "127.0.0.1"],
                vec![
                    spec(Scheme::Tls, "127.0.0.1:8786"),
                    spec(Scheme::Wss, "127.0.0.1:0"),
                ],
            ),
            (
                &[
                    "--protocol",
                    "tcp,ws",
                    "--port",
                    "1,2",
                    "--interface",
                    "lo,lo",
                ],
                vec![
                    spec(Scheme::Tcp, "127.0.0.1:1"),
                    spec(Scheme::Ws, "127.0.0.1:2"),
                ],
            ),
            // one interface for every listener
            (
                &["--protocol", "tcp,ws", "--port", "1,2", "--interface", "lo"],
                vec![
                    spec(Scheme::Tcp, "127.0.0.1:1"),
                    spec(Scheme::Ws, "127.0.0.1:2"),
                ],
            ),
        ];
        for (args, want) in cases {
            assert_eq!(&cli(args).listeners().unwrap(), want, "{args:?}");
        }
    }

    #[test]
    fn bad_listen_addresses() {
        let cases: &[&[&str]] = &[
            &["--protocol", "ucx"],
            &["--host", "ucxx://1.2.3.4"],
            &["--protocol", "tcp,ws", "--port", "8786"],
            &["--protocol", "tcp", "--port", "8786,8787"],
            &["--protocol", "tcp,ws", "--port", "1,2,3"],
            &["--protocol", "tcp,ws", "--host", "127.0.0.1:8786"],
            &[
                "--protocol",
                "tcp,ws",
                "--port",
                "1,2",
                "--interface",
                "lo,lo,lo",
            ],
            &["--protocol", "tcp,ucx"],
            &["--port", "x"],
            &["--host", "tcp://1.2.3.4", "--protocol", "ucx"],
            &["--host", "127.0.0.1:9000", "--port", "9001"],
            &["--host", "::1"],
            &["--host", "1.2.3.4:http"],
            &["--interface", "lo", "--host", "127.0.0.1"],
            &["--interface", "no-such-interface0"],
        ];
        for args in cases {
            let c = cli(args);
            assert!(c.validate().is_err(), "{args:?}");
        }
        let e = cli(&["--protocol", "ucx"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("ucx"), "{e}");
        let schemes: &[(&[&str], Option<Scheme>)] = &[
            (&[], None),
            (&["--protocol", "tls"], Some(Scheme::Tls)),
            // --protocol wins over the scheme in --host
            (
                &["--host", "tls://127.0.0.1", "--protocol", "tcp"],
                Some(Scheme::Tcp),
            ),
            (
                &["--host", "ucx://127.0.0.1", "--protocol", "ws"],
                Some(Scheme::Ws),
            ),
            (&["--host", "tcp://127.0.0.1"], Some(Scheme::Tcp)),
            (&["--protocol", "ws"], Some(Scheme::Ws)),
            (&["--host", "wss://127.0.0.1"], Some(Scheme::Wss)),
        ];
        for (args, want) in schemes {
            assert_eq!(cli(args).listeners().unwrap()[0].scheme, *want, "{args:?}");
        }
        let e = cli(&["--interface", "nope0"])
            .listeners()
            .unwrap_err()
            .to_string();
        assert!(e.contains("Valid network interfaces"), "{e}");
    }

    #[test]
    fn dashboard_addresses() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], Some("0.0.0.0:8787")),
            (&["--dashboard-address", ":9999"], Some("0.0.0.0:9999")),
            (&["--dashboard-address", "9998"], Some("0.0.0.0:9998")),
            (
                &["--dashboard-address", "127.0.0.1:9997"],
                Some("127.0.0.1:9997"),
            ),
            (
                &["--dashboard-address", "127.0.0.1"],
                Some("127.0.0.1:8787"),
            ),
            (&["--dashboard-address", "localhost:0"], Some("127.0.0.1:0")),
            (&["--dashboard-address", "[::1]:80"], Some("[::1]:80")),
            (&["--no-dashboard"], None),
            (&["--dashboard", "--no-dashboard"], None),
            (&["--no-dashboard", "--dashboard"], Some("0.0.0.0:8787")),
        ];
        for (args, want) in cases {
            let got = cli(args).dashboard_addr().unwrap();
            assert_eq!(got, want.map(sa), "{args:?}");
        }
        for bad in ["127.0.0.1:x", "::1:80", "99999"] {
            assert!(parse_dashboard_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idle_timeouts() {
        let cases: &[(&[&str], Option<Option<f64>>)] = &[
            (&[], Some(None)),
            (&["--idle-timeout", "30s"], Some(Some(30.0))),
            (&["--idle-timeout", "5 minutes"], Some(Some(300.0))),
            (&["--idle-timeout", "1.5"], Some(Some(1.5))),
            (&["--idle-timeout", "0"], Some(None)),
            (&["--idle-timeout", "soon"], None),
            (&["--idle-timeout", "-3s"], None),
            // too long for a Duration: refused, not a panic
            (&["--idle-timeout", "1e30s"], None),
        ];
        for (args, want) in cases {
            let got = cli(args).idle_timeout().ok();
            let got = got.map(|o| o.map(|d| d.as_secs_f64()));
            assert_eq!(got, *want, "{args:?}");
        }
    }

    #[test]
    fn byte_sizes() {
        let cases = [
            ("4GiB", Some(4u64 << 30)),
            ("500 MB", Some(500_000_000)),
            ("100", Some(100)),
            ("1e6", Some(1_000_000)),
            ("2kib", Some(2048)),
            ("1 kB", Some(1000)),
            ("lots", None),
            ("5 parsecs", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_bytes(input).ok(), want, "{input}");
        }
        assert_eq!(cli(&[]).max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(
            cli(&["--max-message-size", "1MiB"]).max_message_size,
            1 << 20
        );
    }

    #[test]
    fn compat_flags() {
        let c = cli(&[
            "--jupyter",
            "--no-show",
            "--dashboard-prefix",
            "/dask",
            "--pid-file",
            "/tmp/p",
            "--scheduler-file",
            "/tmp/s.json",
            "--preload",
            "foo.bar",
            "--preload",
            "baz",
            "--use-xheaders",
            "True",
        ]);
        assert_eq!(c.preload, ["foo.bar", "baz"]);
        assert_eq!(c.dashboard_prefix, "/dask");
        assert_eq!(c.pid_file(), Some(PathBuf::from("/tmp/p")));
        assert_eq!(c.scheduler_file(), Some(PathBuf::from("/tmp/s.json")));
        let warnings = c.validate().unwrap();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("--jupyter"));
        assert_eq!(cli(&[]).pid_file(), None);
        assert!(cli(&["extra"]).validate().is_err());
        assert!(cli(&["--preload", "m", "--m-arg", "1"]).validate().is_ok());
        // the scheduler's own options count wherever they stand, as in click
        let c = cli(&[
            "--preload",
            "m.py",
            "--greeting",
            "hi",
            "--port",
            "9000",
            "x",
            "--no-dashboard",
            "--label=1",
            "-h2",
        ]);
        assert_eq!(c.port.as_deref(), Some("9000"));
        assert!(!c.dashboard_enabled());
        assert_eq!(
            c.preload_argv,
            ["--greeting", "hi", "x", "--label=1", "-h2"]
        );
        let c = cli(&["--preload=m.py", "--port=9001", "--", "--port", "7"]);
        assert_eq!(
            (c.preload.as_slice(), c.port.as_deref()),
            (&["m.py".to_string()][..], Some("9001"))
        );
        assert_eq!(c.preload_argv, ["--port", "7"]);
        let argv = |a: &[&str]| args_for_clap(a.iter().map(OsString::from).collect());
        assert_eq!(argv(&["s", "--x", "--help"]), ["s", "--help", "--", "--x"]);
        assert_eq!(
            argv(&["s", "--version", "--x"]),
            ["s", "--version", "--", "--x"]
        );
        assert_eq!(argv(&["s", "-h"]), ["s", "-h"]);
        let e = cli(&["--bogus"]).validate().unwrap_err().to_string();
        assert!(e.contains("No such option: --bogus"), "{e}");
        assert!(Cli::try_parse_from(["dask-scheduler", "--tls-cert", "c.pem"]).is_ok());
        assert!(cli(&["--tls-cert", "c.pem"]).validate().is_ok());
        assert!(cli(&["--tls-cert", "c.pem"]).tls_flags_given());
        assert!(!cli(&[]).tls_flags_given());
    }

    #[test]
    fn contact_addresses() {
        let c = cli(&[]);
        assert_eq!(
            c.contact_address(sa("127.0.0.1:8786"), Scheme::Tcp),
            "tcp://127.0.0.1:8786"
        );
        assert_eq!(
            c.contact_address(sa("127.0.0.1:8786"), Scheme::Tls),
            "tls://127.0.0.1:8786"
        );
        assert_eq!(
            c.contact_address(sa("[::1]:1"), Scheme::Tcp),
            "tcp://[::1]:1"
        );
        let wild = c.contact_address(sa("0.0.0.0:8786"), Scheme::Tcp);
        assert!(
            wild.starts_with("tcp://") && wild.ends_with(":8786"),
            "{wild}"
        );
        assert!(!wild.contains("0.0.0.0"), "{wild}");
    }

    #[test]
    fn materializer_spares_default_to_one_kept_and_a_minute_idle() {
        let c = cli(&[]);
        assert_eq!(c.materializer_min_helpers, 1);
        assert_eq!(c.materializer_spare_idle, Duration::from_secs(60));
        let c = cli(&[
            "--materializer-min-helpers",
            "2",
            "--materializer-spare-idle",
            "2m",
        ]);
        assert_eq!(c.materializer_min_helpers, 2);
        assert_eq!(c.materializer_spare_idle, Duration::from_secs(120));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["soon", "-1s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pool_size_defaults_to_cpus() {
        assert!(cli(&[]).materializer_pool_size() >= 1);
        assert_eq!(
            cli(&["--materializer-pool-size", "3"]).materializer_pool_size(),
            3
        );
    }
}
