//! Error replies in the shape `distributed.core.clean_exception` understands.

use dask_wire::pickle;
use dask_wire::Value;

/// `{"status": "uncaught-error", ...}` raising `builtins.<exc_type>(message)` in the caller.
pub fn error_reply(exc_type: &str, message: &str) -> Value {
    Value::map([
        ("status", Value::str("uncaught-error")),
        (
            "exception",
            Value::Bin(pickle::exception("builtins", exc_type, message)),
        ),
        ("traceback", Value::Nil),
        (
            "exception_text",
            Value::str(format!("{exc_type}('{message}')")),
        ),
        ("traceback_text", Value::str("")),
    ])
}

/// The pickled exception alone (for `task-erred.exception`).
pub fn exception_value(exc_type: &str, message: &str) -> Value {
    Value::Bin(pickle::exception("builtins", exc_type, message))
}

/// The reply to an RPC whose event loop has ended under it.
pub fn shutting_down() -> Value {
    error_reply("RuntimeError", "scheduler is shutting down")
}
