//! The Dask scheduler state machine: pure and synchronous.
//!
//! [`State`] owns tasks, workers and clients. Every stimulus (a stream op from a
//! client or worker, a materialized graph, a worker joining or leaving, a timer)
//! is a method call taking the current time as an argument; the messages the
//! stimulus produces for workers and clients are queued in an outbox that the
//! I/O layer drains with [`State::take_outbox`]. No sockets, no clocks, no async:
//! the whole scheduler can be driven and inspected from a unit test.
//!
//! Task states and transitions follow `distributed.scheduler` (released,
//! waiting, queued, no-worker, processing, memory, erred, forgotten); the
//! transition engine is in [`transitions`], placement in [`placement`].

pub mod actors;
pub mod amm;
pub mod bandwidth;
pub mod config;
pub mod coordination;
pub mod dump;
pub mod error;
pub mod finished;
pub mod graph;
pub mod ids;
pub mod idset;
pub mod info;
pub mod keyindex;
pub mod memory;
pub mod messages;
pub mod metadata;
pub mod multilock;
pub mod noworkers;
pub mod ops_client;
pub mod ops_worker;
pub mod p2p;
pub mod placement;
pub mod pluginfeed;
pub mod progress;
pub mod queries;
pub mod queuedset;
pub mod queues;
pub mod replicas;
pub mod restart;
pub mod resulttypes;
pub mod retire;
pub mod runindex;
pub mod runspec;
pub mod schedevents;
pub mod semaphores;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod stealing;
pub mod story;
pub mod task;
pub mod taskgroups;
pub mod taskidset;
pub mod taskmetadata;
pub mod taskstream;
pub mod timedelta;
pub mod transitions;
pub mod validate;
pub mod versions;
pub mod worker;
pub mod workermap;

pub use config::Config;
pub use error::CoreError;
pub use finished::TaskFinished;
pub use graph::{GraphSubmission, GraphTask, GraphTimings};
pub use ids::{ClientId, TaskId, WorkerId};
pub use runspec::{RunSpec, RunSpecPacker};
pub use state::{Outgoing, State};
pub use task::TaskState;
pub use worker::{WorkerRegistration, WorkerStatus};
