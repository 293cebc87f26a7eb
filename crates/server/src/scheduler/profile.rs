//! RPC `profile` (`Client.profile`): the workers' statistical profiles,
//! merged as `distributed.profile.merge` does.
//!
//! A profile is a tree `{"description", "children": {identifier: tree},
//! "count", "identifier"}`; merging sums the counts of nodes with the same
//! identifier, level by level.

use super::errors::error_reply;
use super::Scheduler;
use dask_wire::Value;
use std::sync::Arc;

/// `distributed.profile.create()`: an empty profile.
pub fn empty_profile() -> Value {
    Value::map([
        ("count", Value::Int(0)),
        ("children", Value::Map(Vec::new())),
        ("identifier", Value::str("root")),
        (
            "description",
            Value::map([
                ("filename", Value::str("")),
                ("name", Value::str("")),
                ("line_number", Value::Int(0)),
                ("line", Value::str("")),
            ]),
        ),
    ])
}

/// `distributed.profile.merge(*trees)`.
pub fn merge_profiles(trees: &[&Value]) -> Result<Value, String> {
    let Some(first) = trees.first() else {
        return Ok(empty_profile());
    };
    let identifier = first.get("identifier").cloned().unwrap_or(Value::Nil);
    if let Some(other) = trees
        .iter()
        .map(|t| t.get("identifier").cloned().unwrap_or(Value::Nil))
        .find(|i| *i != identifier)
    {
        return Err(format!(
            "Expected identifiers, got {identifier} and {other}"
        ));
    }
    // children by identifier, in first-seen order
    let mut children: Vec<(Value, Vec<&Value>)> = Vec::new();
    for t in trees {
        let Some(kids) = t.get("children").and_then(Value::as_map) else {
            continue;
        };
        for (k, v) in kids {
            match children.iter_mut().find(|(seen, _)| seen == k) {
                Some((_, list)) => list.push(v),
                None => children.push((k.clone(), vec![v])),
            }
        }
    }
    let merged: Vec<(Value, Value)> = children
        .into_iter()
        .map(|(k, list)| merge_profiles(&list).map(|m| (k, m)))
        .collect::<Result<_, _>>()?;
    let count: i64 = trees
        .iter()
        .filter_map(|t| t.get("count").and_then(Value::as_i64))
        .sum();
    Ok(Value::map([
        (
            "description",
            first.get("description").cloned().unwrap_or(Value::Nil),
        ),
        ("children", Value::Map(merged)),
        ("count", Value::Int(count)),
        ("identifier", identifier),
    ]))
}

/// `profile(workers, scheduler, server, merge_workers, start, stop, key)`.
pub async fn rpc_profile(sched: &Arc<Scheduler>, msg: &Value) -> Result<Value, Value> {
    if msg.get("scheduler").is_some_and(Value::truthy) {
        return Err(error_reply(
            "NotImplementedError",
            "profile(scheduler=True): the Rust dask-scheduler runs no Python event loop to \
             profile; profile the workers instead",
        ));
    }
    let wanted = msg
        .get("workers")
        .cloned()
        .filter(|w| !matches!(w, Value::Nil));
    let workers: Vec<String> = sched
        .with_state(move |s, _| s.broadcast_targets(wanted.as_ref(), None))
        .await
        .unwrap_or_default();
    let field = |k: &str| msg.get(k).cloned().unwrap_or(Value::Nil);
    let request = Value::map([
        ("op", Value::str("profile")),
        ("start", field("start")),
        ("stop", field("stop")),
        ("key", field("key")),
        (
            "server",
            Value::Bool(msg.get("server").is_some_and(Value::truthy)),
        ),
    ]);
    let calls = workers.iter().map(|w| sched.rpc.call(w, request.clone()));
    let replies = futures_util::future::join_all(calls).await;
    // like Python, workers that fail to answer are left out
    let answered: Vec<(String, Value)> = workers
        .into_iter()
        .zip(replies)
        .filter_map(|(w, r)| match r {
            Ok(v) if v.get("status").and_then(Value::as_str) != Some("uncaught-error") => {
                Some((w, v))
            }
            _ => None,
        })
        .collect();
    if msg.get("merge_workers").is_none_or(Value::truthy) {
        let trees: Vec<&Value> = answered.iter().map(|(_, v)| v).collect();
        merge_profiles(&trees).map_err(|e| error_reply("ValueError", &e))
    } else {
        Ok(Value::Map(
            answered
                .into_iter()
                .map(|(w, v)| (Value::str(w), v))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, count: i64, children: Vec<Value>) -> Value {
        Value::map([
            ("description", Value::map([("name", Value::str(id))])),
            (
                "children",
                Value::Map(
                    children
                        .into_iter()
                        .map(|c| (c.get("identifier").cloned().unwrap(), c))
                        .collect(),
                ),
            ),
            ("count", Value::Int(count)),
            ("identifier", Value::str(id)),
        ])
    }

    #[test]
    fn merging_sums_counts_of_the_same_frames() {
        let a = node(
            "root",
            3,
            vec![
                node("f", 2, vec![node("g", 1, vec![])]),
                node("h", 1, vec![]),
            ],
        );
        let b = node("root", 4, vec![node("f", 4, vec![node("g", 4, vec![])])]);
        let m = merge_profiles(&[&a, &b]).unwrap();
        assert_eq!(m.get("count"), Some(&Value::Int(7)));
        let kids = m.get("children").and_then(Value::as_map).unwrap();
        let f = &kids
            .iter()
            .find(|(k, _)| k.as_str() == Some("f"))
            .unwrap()
            .1;
        assert_eq!(f.get("count"), Some(&Value::Int(6)));
        let g = f.get("children").and_then(Value::as_map).unwrap();
        assert_eq!(g[0].1.get("count"), Some(&Value::Int(5)));
        let h = &kids
            .iter()
            .find(|(k, _)| k.as_str() == Some("h"))
            .unwrap()
            .1;
        assert_eq!(h.get("count"), Some(&Value::Int(1)));
    }

    #[test]
    fn nothing_to_merge_is_an_empty_profile_and_mismatched_roots_an_error() {
        assert_eq!(merge_profiles(&[]).unwrap(), empty_profile());
        let a = node("root", 1, vec![]);
        let b = node("other", 1, vec![]);
        assert!(merge_profiles(&[&a, &b]).is_err());
    }
}
