//! The `dask-scheduler` server: networking, CLI, HTTP, logging, files,
//! comm security.

pub mod cli;
pub mod files;
pub mod http;
pub mod logformat;
pub mod logging;
pub mod logjson;
pub mod logring;
pub mod logroute;
pub mod logsetup;
pub mod materializer;
pub mod metrics;
pub mod monitor;
pub mod net;
pub mod scheduler;
pub mod security;
