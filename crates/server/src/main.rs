//! `dask-scheduler`: a drop-in Rust replacement for `dask scheduler`.

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use dask_scheduler::cli::Cli;
use dask_scheduler::materializer::{Availability, MaterializerConfig, MaterializerPool};
use dask_scheduler::net::listener;
use dask_scheduler::net::rpc::RpcPool;
use dask_scheduler::scheduler::{connection::Router, now, Scheduler, SchedulerInfo};
use dask_scheduler::security::CommPlan;
use dask_scheduler::{files, http, logging};
use dask_wire::frames::FrameLimits;
use std::sync::Arc;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let args = dask_scheduler::cli::args_for_clap(std::env::args_os().collect());
    let matches = Cli::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // An explicit --log-level (or DASK_SCHEDULER_LOG_LEVEL) wins over Dask's
    // logging config (DASK_LOGGING__DISTRIBUTED...).
    let explicit = matches!(
        matches.value_source("log_level"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    logging::init(&logging::resolve_level(
        explicit.then_some(cli.log_level.as_str()),
    ));
    let warnings = match cli.validate() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::exit(2);
        }
    };
    for w in warnings {
        tracing::warn!("{w}");
    }
    // One I/O thread, like Python's event loop: every message ends on the
    // single-threaded state machine anyway, and cross-thread wake-ups of a
    // multi-threaded runtime cost more CPU than they save (measured: ~30 %
    // less scheduler CPU per task with real workers; benches/README.md).
    // CPU-heavy one-offs (metrics rendering, graph replies) use
    // `spawn_blocking`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(run(cli, explicit));
    // lines still held if it stopped before Dask's config was known
    dask_scheduler::logroute::release_held();
    result
}

fn scheduler_id() -> String {
    format!("Scheduler-{}", dask_scheduler::scheduler::uuid4())
}

/// Pending connections the kernel queues per listener (capped by
/// `net.core.somaxconn`) when Dask's `distributed.comm.socket-backlog` is
/// unknown (no materializer Python): 2,000 workers connecting at once fit,
/// where tokio's default of 1,024 would drop some until their SYN is retried.
const LISTEN_BACKLOG: u32 = 4096;

/// A TCP socket bound to `addr` (`SO_REUSEADDR`, as tokio's and Python's
/// listeners set it), not yet listening.
fn bind_socket(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Dask's logging config as the materializer's Python resolved it: the
/// handlers, levels and formats its loggers have in a Python process (the
/// lines held until now, of the materializer's start, go through them too),
/// and `distributed.admin.log-format` and `log-length` for
/// `get_scheduler_logs`.
fn apply_logging_config(
    extras: &dask_scheduler::scheduler::config::Extras,
    explicit_log_level: bool,
) {
    if let Some(format) = extras.log_format.as_deref() {
        logging::set_format(format);
    }
    if let Some(n) = extras.log_length {
        dask_scheduler::logring::set_capacity(n);
    }
    match extras.logging_setup.clone() {
        Some(Ok(setup)) => logging::route_through(setup, explicit_log_level),
        other => {
            // no handlers to wait for: the held lines in Dask's format
            dask_scheduler::logroute::release_held();
            if let Some(Err(why)) = other {
                tracing::warn!(
                    "Dask's logging config could not be read ({why}); logging in Dask's default format to stderr"
                );
            }
        }
    }
}

/// `explicit_log_level`: `--log-level`/`DASK_SCHEDULER_LOG_LEVEL` was given,
/// so Dask's YAML logging config does not override it.
async fn run(cli: Cli, explicit_log_level: bool) -> anyhow::Result<()> {
    // Signal handlers first, so a SIGTERM during start-up still cleans up.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let _pid_guard = match cli.pid_file() {
        Some(p) => Some(
            files::write_pid_file(&p)
                .with_context(|| format!("writing --pid-file {}", p.display()))?,
        ),
        None => None,
    };
    let limits = FrameLimits {
        max_message_bytes: cli.max_message_size,
        ..FrameLimits::default()
    };

    let materializer = MaterializerPool::start(MaterializerConfig {
        python: cli.python.clone(),
        pool_size: cli.materializer_pool_size(),
        min_helpers: cli.materializer_min_helpers,
        spare_idle: cli.materializer_spare_idle,
        request_timeout: Duration::from_secs(600),
    })
    .await;
    let sched_materializer = materializer.clone();
    let (config, extras) = dask_scheduler::scheduler::config::load(&sched_materializer).await;
    apply_logging_config(&extras, explicit_log_level);
    let comm_plan = CommPlan::decide(&cli, &extras.comm)?;
    let security = comm_plan.load()?;
    let https = match cli.dashboard_enabled() {
        true => extras.dashboard_tls.acceptor()?,
        false => None,
    };

    // Bound now (so the address is known and a port 0 has its port);
    // listening only once the scheduler is ready to serve.
    let mut bound_sockets = Vec::new();
    for &(addr, scheme) in &comm_plan.listeners {
        let socket =
            bind_socket(addr).with_context(|| format!("binding the scheduler to {addr}"))?;
        let bound = socket.local_addr()?;
        let contact = cli.contact_address(bound, scheme);
        bound_sockets.push((socket, scheme, bound, contact));
    }
    let address = bound_sockets[0].3.clone();
    let bound = bound_sockets[0].2;

    let dashboard = match cli.dashboard_addr()? {
        Some(addr) => {
            // (checked here: the scheduler's sockets are bound but listen
            // later, so the dashboard's bind alone would not fail)
            if let Some((_, scheme, at, _)) = bound_sockets
                .iter()
                .find(|(_, _, at, _)| at.port() == addr.port())
            {
                // Python's WSListener then adds its route to the dashboard's
                // server; on tcp:// and tls:// Python's bind fails too.
                anyhow::bail!(
                    "{}:// and the dashboard on one port ({}) is not supported by this \
                     scheduler; give --dashboard-address another port",
                    scheme.name(),
                    at.port()
                )
            }
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the dashboard to {addr}"))?;
            Some(l)
        }
        None => None,
    };
    let dashboard_port = dashboard
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port());

    let info = SchedulerInfo {
        id: scheduler_id(),
        address: address.clone(),
        dashboard_port,
        started: now(),
    };
    if let Some(namespace) = extras.prometheus_namespace.as_deref() {
        dask_scheduler::metrics::set_namespace(namespace);
    }
    match materializer.availability() {
        Availability::Available { python, .. } => {
            tracing::info!("Graph materializer: {python}")
        }
        Availability::Unavailable { reason } => tracing::warn!(
            "Graph materializer unavailable, graphs (compute/submit) will fail until it is fixed: {reason}"
        ),
    }
    tracing::info!(
        "Scheduling: worker-saturation={} allowed-failures={} work-stealing={} sibling-affinity={} \
         rootish-taskgroup={} rootish-taskgroup-dependencies={}",
        config.worker_saturation,
        config.allowed_failures,
        config.work_stealing,
        config.sibling_affinity,
        config.rootish_taskgroup,
        config.rootish_taskgroup_dependencies
    );
    let idle_timeout = cli
        .idle_timeout()?
        .or(extras.idle_timeout.map(Duration::from_secs_f64));
    let state = dask_core::State::new(config);
    let rpc = RpcPool::with_security(limits, Duration::from_secs(10), security.clone());
    let (sched, event_loop) =
        Scheduler::start(info.clone(), state, rpc, materializer, idle_timeout);
    sched.block_handlers(extras.blocked_handlers.clone());
    dask_scheduler::monitor::spawn();
    // before any worker can register: every worker gets it
    dask_scheduler::scheduler::p2p::install_worker_plugin(&sched).await;
    let mut listeners = Vec::new();
    for (socket, scheme, at, contact) in bound_sockets {
        let l = socket
            .listen(extras.socket_backlog.unwrap_or(LISTEN_BACKLOG))
            .with_context(|| format!("listening on {at}"))?;
        listeners.push((l, scheme, contact));
    }

    let (http_routes, unservable) =
        http::routes_config::RouteGroups::from_config(extras.http_routes.as_deref());
    for module in unservable {
        tracing::warn!(
            "Not serving the HTTP routes of {module:?} (distributed.scheduler.http.routes): \
             this scheduler cannot import Python route modules"
        );
    }
    tracing::info!("-----------------------------------------------");
    for (_, _, contact) in &listeners {
        tracing::info!("  Scheduler at:   {contact}");
    }
    if let Some(l) = dashboard {
        let port = l.local_addr()?.port();
        let web = if https.is_some() { "https" } else { "http" };
        tracing::info!("  dashboard at:  {web}://{}:{port}/status", bound.ip());
        let router = http::with_prefix(
            http::router(Arc::new(http::AppState {
                scheduler: sched.clone(),
                routes: http_routes,
            })),
            &cli.dashboard_prefix,
        );
        tokio::spawn(async move {
            let served = match https {
                Some(acceptor) => http::serve_https(l, acceptor, router).await,
                None => http::serve(l, router).await,
            };
            if let Err(e) = served {
                tracing::error!("dashboard server failed: {e}");
            }
        });
    }
    tracing::info!("-----------------------------------------------");

    if let Some(path) = cli.scheduler_file() {
        let ident =
            files::scheduler_identity(&info.id, &info.address, dashboard_port, info.started);
        files::write_scheduler_file(&path, &ident)
            .with_context(|| format!("writing --scheduler-file {}", path.display()))?;
    }

    let handler = Arc::new(Router {
        scheduler: sched.clone(),
    });
    for (l, scheme, _) in listeners {
        let tls = match scheme.secure() {
            true => security.tls.clone(),
            false => None,
        };
        tokio::spawn(listener::serve(l, scheme, limits, tls, handler.clone()));
    }

    // The preloads start while the scheduler serves; a signal still stops
    // it while one is running (in a block: a preload still starting is
    // dropped before the close).
    {
        let preloads = start_preloads(&cli, &extras, &sched);
        let shutdown = sched.shutdown.notified();
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(preloads, shutdown, ctrl_c, event_loop);
        let mut preloading = true;
        loop {
            tokio::select! {
                started = &mut preloads, if preloading => {
                    started?;
                    preloading = false;
                }
                _ = &mut event_loop => {
                    tracing::info!("Scheduler closing");
                    break;
                }
                _ = &mut shutdown => break,
                _ = &mut ctrl_c => {
                    // Python's logger and words (`distributed._signals`)
                    tracing::info!(target: "distributed._signals", "Received signal SIGINT (2)");
                    break;
                }
                _ = sigterm.recv() => {
                    // Python's logger and words (`distributed._signals`)
                    tracing::info!(target: "distributed._signals", "Received signal SIGTERM (15)");
                    break;
                }
            }
        }
    }
    sched.close_workers().await;
    sched
        .materializer
        .close_function_runner(Duration::from_secs(5))
        .await;
    tracing::info!("End scheduler");
    Ok(())
}

/// `--preload` (or `distributed.scheduler.preload`): run the modules'
/// `dask_setup` in the function runner, once the scheduler listens, as
/// Python does. A module that cannot be loaded stops the scheduler, as it
/// stops Python's; a `dask_setup` that fails is logged.
async fn start_preloads(
    cli: &Cli,
    extras: &dask_scheduler::scheduler::config::Extras,
    sched: &Scheduler,
) -> anyhow::Result<()> {
    let (names, argv) = if cli.preload.is_empty() {
        let argv = extras.preload_argv.clone();
        (
            extras.preload.clone(),
            argv.unwrap_or(dask_wire::Value::Nil),
        )
    } else {
        let argv = dask_wire::Value::Array(
            cli.preload_argv
                .iter()
                .map(|a| dask_wire::Value::str(a.as_str()))
                .collect(),
        );
        (cli.preload.clone(), argv)
    };
    if names.is_empty() {
        return Ok(());
    }
    // calls of operations the scheduler does not know wait for this
    sched.preloading.send_replace(true);
    let started = sched
        .materializer
        .start_preloads(&names, argv, &sched.info.address, &sched.info.id)
        .await;
    if let Ok((_, reply)) = &started {
        // the plugins and handlers the preloads added (`scheduler.add_plugin`,
        // `scheduler.handlers[name] = ...`), known before those calls go on
        dask_scheduler::scheduler::scheduler_plugins::adopt_runner_table(sched, reply);
        sched.runner_handlers.adopt(reply);
    }
    sched.preloading.send_replace(false);
    let (failed, _) =
        started.map_err(|why| anyhow::anyhow!("--preload {}: {why}", names.join(", ")))?;
    for f in failed {
        tracing::error!("Failed to start preload: {f}");
    }
    Ok(())
}
