//! `feed`: the connection `distributed.progress(futures)` opens.
//!
//! Why: Python's scheduler runs the two pickled functions a `feed` carries
//! (a `setup`, then a polling `function` every `interval`). This scheduler
//! runs no Python of its own, but the feeds users meet are those of
//! distributed's progress bars (`ProgressBar`, `MultiProgressBar`), so a
//! materializer helper unpickles the `setup` and says which bar it is and
//! which keys it watches, and the bar is then served from the state
//! ([`dask_core::progress`]). Any other feed is refused with an error naming
//! it.

use super::errors::{error_reply, exception_value};
use super::event_loop::Command;
use super::rpc::helper_error;
use super::Scheduler;
use crate::net::conn::{Conn, ConnWriter};
use dask_core::progress::{ProgressId, ProgressKind};
use dask_wire::{Key, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How often Python's `Progress.setup` looks whether the keys are known.
const SETUP_POLL: Duration = Duration::from_millis(50);
/// How long a finished bar's connection is kept for its client to close it.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// What a materializer helper made of a feed.
#[derive(Debug)]
enum Feed {
    /// A progress bar this scheduler serves.
    Bar {
        keys: Vec<Key>,
        complete: bool,
        kind: ProgressKind,
    },
    /// A progress bar it cannot serve: told so in the shape a bar reads.
    UnsupportedBar(String),
}

/// `interval` as Python's `parse_timedelta` reads it (default 1 s), kept
/// between 10 ms and a minute.
fn interval_of(msg: &Value) -> Duration {
    let seconds = match msg.get("interval") {
        Some(Value::Str(s)) => dask_core::timedelta::parse_seconds(s),
        Some(v) => v.as_f64(),
        None => None,
    };
    Duration::from_secs_f64(seconds.unwrap_or(1.0).clamp(0.01, 60.0))
}

/// Ask a helper what the feed is.
async fn describe(sched: &Scheduler, msg: &Value) -> Result<Feed, Value> {
    use crate::materializer::Availability;
    if let Availability::Unavailable { reason } = sched.materializer.availability() {
        return Err(error_reply(
            "NotImplementedError",
            &format!(
                "feed (the progress bars of distributed.progress) needs the graph \
                 materializer's Python, which is unavailable: {reason}"
            ),
        ));
    }
    let field = |k: &str| msg.get(k).cloned().unwrap_or(Value::Nil);
    let request = Value::map([
        ("op", Value::str("describe_feed")),
        ("setup", field("setup")),
        ("function", field("function")),
        ("teardown", field("teardown")),
    ]);
    let reply = sched.helper_request(&request).await?;
    if reply.get("status").and_then(Value::as_str) != Some("ok") {
        return Err(helper_error(&reply));
    }
    let kind = match reply.get("kind").and_then(Value::as_str) {
        Some("progress") => ProgressKind::Single,
        Some("multi") => ProgressKind::ByPrefix,
        Some("unsupported") => {
            let text = reply.get("text").and_then(Value::as_str).unwrap_or("");
            return Ok(Feed::UnsupportedBar(text.to_string()));
        }
        other => {
            return Err(error_reply(
                "RuntimeError",
                &format!("graph materializer: unexpected feed kind {other:?}"),
            ))
        }
    };
    let keys = reply
        .get("keys")
        .and_then(Value::as_seq)
        .unwrap_or(&[])
        .iter()
        .map(Key::from_value)
        .collect::<Result<Vec<Key>, _>>()
        .map_err(|e| error_reply("TypeError", &format!("feed: a progress bar's key: {e}")))?;
    let complete = reply.get("complete").is_some_and(Value::truthy);
    Ok(Feed::Bar {
        keys,
        complete,
        kind,
    })
}

/// Serve a `feed` connection whose first message is `msg`.
pub async fn serve(sched: Arc<Scheduler>, conn: Conn, msg: Value) {
    let peer = conn.peer().to_string();
    let (mut reader, mut writer) = conn.into_split();
    // the bar's client closes the connection once it has read the end;
    // anything it sends before is not for us
    let (closed_tx, mut closed) = oneshot::channel::<()>();
    tokio::spawn(async move {
        while reader.read().await.is_ok() {}
        let _ = closed_tx.send(());
    });
    let (keys, complete, kind) = match describe(&sched, &msg).await {
        Ok(Feed::Bar {
            keys,
            complete,
            kind,
        }) => (keys, complete, kind),
        Ok(Feed::UnsupportedBar(text)) => {
            tracing::warn!("Refusing a progress bar from {peer}: {text}");
            let end = Value::map([
                ("all", Value::Map(Vec::new())),
                ("remaining", Value::Map(Vec::new())),
                ("status", Value::str("error")),
                ("exception", exception_value("NotImplementedError", &text)),
                ("key", Value::Nil),
            ]);
            return finish(writer, &end, closed).await;
        }
        Err(reply) => {
            let text = reply.get("exception_text").map(Value::to_string);
            tracing::warn!("Refusing a feed from {peer}: {}", text.unwrap_or_default());
            return finish(writer, &reply, closed).await;
        }
    };
    let interval = interval_of(&msg);
    // Python's `Progress.setup` waits until the scheduler knows every key
    let id = loop {
        let ks = keys.clone();
        match sched
            .with_state(move |s, _| s.progress_start(&ks, complete, kind))
            .await
        {
            None => return,
            Some(Some(id)) => break id,
            Some(None) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(SETUP_POLL) => {}
            _ = &mut closed => return,
        }
    };
    tracing::debug!("Progress bar {id} from {peer} on {} keys", keys.len());
    report_until_done(&sched, id, &mut writer, interval, &mut closed).await;
    sched.send(Command::Call(Box::new(move |s, _| s.progress_stop(id))));
    let _ = tokio::time::timeout(CLOSE_GRACE, closed).await;
}

/// Write the bar's report every `interval` until it ends or its client goes.
async fn report_until_done(
    sched: &Scheduler,
    id: ProgressId,
    writer: &mut ConnWriter,
    interval: Duration,
    closed: &mut oneshot::Receiver<()>,
) {
    loop {
        let Some(Some(report)) = sched.with_state(move |s, _| s.progress_report(id)).await else {
            return;
        };
        let ended = matches!(
            report.get("status").and_then(Value::as_str),
            Some("finished" | "error")
        );
        if writer.write(&report).await.is_err() || ended {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut *closed => return,
        }
    }
}

/// Write the last message and give the client a moment to close.
async fn finish(mut writer: ConnWriter, last: &Value, closed: oneshot::Receiver<()>) {
    if writer.write(last).await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_GRACE, closed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_read_as_python_reads_it() {
        let table = [
            (Some(Value::Float(0.1)), 0.1),
            (Some(Value::str("100ms")), 0.1),
            (Some(Value::str("2s")), 2.0),
            (Some(Value::Int(0)), 0.01),
            (Some(Value::str("forever")), 1.0),
            (None, 1.0),
        ];
        for (given, seconds) in table {
            let mut msg = vec![(Value::str("op"), Value::str("feed"))];
            if let Some(v) = given.clone() {
                msg.push((Value::str("interval"), v));
            }
            let got = interval_of(&Value::Map(msg));
            assert!(
                (got.as_secs_f64() - seconds).abs() < 1e-9,
                "{given:?}: {got:?}"
            );
        }
    }
}
