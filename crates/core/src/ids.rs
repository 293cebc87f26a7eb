//! Integer identities for tasks, workers and clients, so hot paths move integers.

/// Index of a task in the task arena.
pub type TaskId = u32;

/// A connected worker; never reused within one scheduler run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u32);

/// A registered client (or the `fire-and-forget` pseudo-client); never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u32);
