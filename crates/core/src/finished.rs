//! `task-finished`, the message a worker sends for every task it computes,
//! read into a typed struct: straight from its msgpack bytes on the
//! server's hot path ([`TaskFinished::decode`]), or from an already decoded
//! op map ([`TaskFinished::from_value`]). The msgpack path builds no
//! [`Value`] tree: of the eleven fields a worker sends, only the key and the
//! result type become values; numbers are read in place, the `startstops`
//! entries go into an inline vector, and the rest is stepped over.
//!
//! Both paths read the same fields with the same leniency (a field of the
//! wrong type counts as missing; of a repeated field the last one counts),
//! which `tests` checks on the same messages.

use dask_wire::msgpack::Reader;
use dask_wire::{Text, Value, WireError};
use smallvec::SmallVec;

/// One `startstops` entry: what a worker spent time on, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct StartStop {
    /// `compute`, `transfer`, `disk-read`, ...
    pub action: Text,
    /// Start time (worker clock, seconds).
    pub start: f64,
    /// Stop time (worker clock, seconds).
    pub stop: f64,
}

/// The fields of a `task-finished` that the scheduler reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskFinished {
    /// The key, as sent: a decoded value ([`TaskFinished::from_value`]),
    /// or its msgpack bytes as a `Value::Raw` (a slice of the op map, when
    /// read by [`TaskFinished::decode`]). The state machine looks the raw
    /// bytes up as they are, and decodes and canonicalises them only when
    /// they are not a known key's bytes.
    pub key: Option<Value>,
    /// Which run of the task this is the result of.
    pub run_id: Option<i64>,
    /// Size of the result in bytes.
    pub nbytes: Option<i64>,
    /// The pickled type of the result (`type`), unless nil.
    pub result_type: Option<Value>,
    /// Entries of `startstops` that have an action, a start and a stop.
    pub startstops: SmallVec<[StartStop; 2]>,
    /// The worker's `stimulus_id`, as msgpack (a str; absent if it is not
    /// one): like Python's `_transitions`, the scheduler gives the messages
    /// it sends while handling this one the same stimulus id. Read by
    /// [`TaskFinished::decode`] it is a slice of the frame, no copy.
    pub stimulus_id: Option<bytes::Bytes>,
    /// The whole op map as msgpack, when read by [`TaskFinished::decode`]
    /// (a slice of the frame, no copy): what the task stream records.
    pub source: Option<bytes::Bytes>,
    /// The worker's `metadata` map, when read by
    /// [`TaskFinished::from_value`] and not empty; [`TaskFinished::decode`]
    /// leaves it in `source` (see [`TaskFinished::metadata`]).
    pub metadata_value: Option<Value>,
    /// The worker sent a `metadata` map with entries (read either way; the
    /// map itself by [`TaskFinished::metadata`]).
    pub has_metadata: bool,
    /// The result type's name (`typename`), when read by
    /// [`TaskFinished::from_value`]; [`TaskFinished::decode`] leaves it in
    /// `source` (see [`TaskFinished::typename`]).
    pub typename_value: Option<String>,
}

/// What each field of a `task-finished` map is to the scheduler.
enum Field {
    Key,
    RunId,
    NBytes,
    Type,
    StartStops,
    StimulusId,
    Metadata,
    TypeName,
    Other,
}

impl Field {
    fn of(name: &Value) -> Field {
        Field::named(name.as_str_key().map(str::as_bytes))
    }

    fn named(name: Option<&[u8]>) -> Field {
        match name {
            Some(b"key") => Field::Key,
            Some(b"run_id") => Field::RunId,
            Some(b"nbytes") => Field::NBytes,
            Some(b"type") => Field::Type,
            Some(b"startstops") => Field::StartStops,
            Some(b"stimulus_id") => Field::StimulusId,
            Some(b"metadata") => Field::Metadata,
            Some(b"typename") => Field::TypeName,
            _ => Field::Other,
        }
    }
}

/// A `startstops` entry's three fields, from `(name, value)` pairs.
#[derive(Default)]
struct StartStopFields {
    action: Option<Text>,
    start: Option<f64>,
    stop: Option<f64>,
}

impl StartStopFields {
    fn set(&mut self, name: &Value, v: &Value) {
        match name.as_str_key() {
            Some("action") => self.action = v.as_str().map(Text::from),
            Some("start") => self.start = v.as_f64(),
            Some("stop") => self.stop = v.as_f64(),
            _ => {}
        }
    }

    /// [`StartStopFields::set`] for the entry named `name` whose value is
    /// next in `r`.
    fn read(&mut self, name: Option<&[u8]>, r: &mut Reader, depth: usize) -> Result<(), WireError> {
        match name {
            Some(b"action") => {
                let action = r.str()?;
                if action.is_none() {
                    r.skip(depth)?;
                }
                self.action = action.map(Text::from);
            }
            Some(b"start") => self.start = r.value(depth)?.as_f64(),
            Some(b"stop") => self.stop = r.value(depth)?.as_f64(),
            _ => r.skip(depth)?,
        }
        Ok(())
    }

    fn finish(self) -> Option<StartStop> {
        Some(StartStop {
            action: self.action?,
            start: self.start?,
            stop: self.stop?,
        })
    }
}

/// The complete entries of a `startstops` value (of a decoded message).
pub(crate) fn startstops_from_value(v: &Value) -> SmallVec<[StartStop; 2]> {
    let mut out = SmallVec::new();
    for entry in v.as_seq().unwrap_or_default() {
        let mut f = StartStopFields::default();
        for (k, v) in entry.as_map().unwrap_or_default() {
            f.set(k, v);
        }
        out.extend(f.finish());
    }
    out
}

impl TaskFinished {
    /// Read the fields from a decoded `task-finished` op map.
    pub fn from_value(msg: &Value) -> TaskFinished {
        let mut t = TaskFinished::default();
        for (k, v) in msg.as_map().unwrap_or_default() {
            t.set(Field::of(k), v);
        }
        t
    }

    fn set(&mut self, field: Field, v: &Value) {
        match field {
            Field::Key => self.key = Some(v.clone()),
            Field::RunId => self.run_id = v.as_i64(),
            Field::NBytes => self.nbytes = v.as_i64(),
            Field::Type => self.result_type = Some(v.clone()).filter(|v| !v.is_nil()),
            Field::StartStops => self.startstops = startstops_from_value(v),
            Field::StimulusId => {
                self.stimulus_id = v.as_str_key().map(|s| {
                    let mut out = Vec::with_capacity(s.len() + 5);
                    dask_wire::msgpack::write_str(&mut out, s);
                    bytes::Bytes::from(out)
                })
            }
            Field::Metadata => {
                self.metadata_value =
                    Some(v.clone()).filter(|m| m.as_map().is_some_and(|m| !m.is_empty()));
                self.has_metadata = self.metadata_value.is_some();
            }
            Field::TypeName => self.typename_value = v.as_str().map(str::to_string),
            Field::Other => {}
        }
    }

    /// The result type's name (`typename`), if the worker sent one as a
    /// str: read from `source` only when asked (the scheduler asks once per
    /// distinct result type), so the hot path does not decode it.
    pub fn typename(&self) -> Option<String> {
        if self.typename_value.is_some() {
            return self.typename_value.clone();
        }
        let m = dask_wire::msgpack::decode(self.source.as_ref()?).ok()?;
        m.get("typename")?.as_str().map(str::to_string)
    }

    /// The worker's `metadata` (what `get_task_metadata` reports), nil if
    /// it sent none or an empty map: read from `source` only when asked,
    /// so the hot path does not decode it.
    pub fn metadata(&self) -> Value {
        if let Some(m) = &self.metadata_value {
            return m.clone();
        }
        self.source
            .as_ref()
            .and_then(|b| dask_wire::msgpack::decode(b).ok())
            .and_then(|m| m.get("metadata").cloned())
            .filter(|m| m.as_map().is_some_and(|m| !m.is_empty()))
            .unwrap_or(Value::Nil)
    }

    /// Read the fields straight from the msgpack bytes of one `task-finished`
    /// op map (an element of a worker's batch, see
    /// [`dask_wire::split_ops`], which has already checked it). `Ok(None)`
    /// when the bytes are not a map.
    pub fn decode(bytes: &bytes::Bytes) -> Result<Option<TaskFinished>, WireError> {
        // the op map is an element of the batch array: depth 1
        const MAP: usize = 1;
        let mut r = Reader::new(bytes);
        let Some(n) = r.map_len()? else {
            return Ok(None);
        };
        let mut t = TaskFinished::default();
        for _ in 0..n {
            match Field::named(field_name(&mut r, MAP + 1)?) {
                Field::Other | Field::TypeName => r.skip(MAP + 1)?,
                // only whether it has entries: a map's first byte says
                // (almost every worker sends an empty one)
                Field::Metadata => {
                    let start = r.position();
                    r.skip(MAP + 1)?;
                    let first = r.slice(start, r.position()).first().copied();
                    t.has_metadata = matches!(first, Some(0x81..=0x8f | 0xde | 0xdf));
                }
                Field::StartStops => t.startstops = decode_startstops(&mut r, MAP + 1)?,
                // the bytes, not a value: most keys are found by them
                Field::Key => {
                    let start = r.position();
                    r.skip(MAP + 1)?;
                    t.key = Some(Value::Raw(r.slice(start, r.position())));
                }
                Field::Type => t.result_type = Some(r.value(MAP + 1)?).filter(|v| !v.is_nil()),
                // a str's bytes as they are; anything else is not an id
                Field::StimulusId => {
                    let start = r.position();
                    t.stimulus_id = match r.str()? {
                        Some(_) => Some(r.slice(start, r.position())),
                        None => {
                            r.skip(MAP + 1)?;
                            None
                        }
                    };
                }
                field => {
                    let v = r.value(MAP + 1)?;
                    t.set(field, &v);
                }
            }
        }
        if !r.is_at_end() {
            return Err(WireError::TrailingBytes(bytes.len() - r.position()));
        }
        t.source = Some(bytes.clone());
        Ok(Some(t))
    }
}

/// The name of the map entry next in `r`, read in place as its bytes: the
/// names of interest are ASCII, so one that matches is valid UTF-8, and
/// the entry of any other name is stepped over unread. A name that is not
/// a str is stepped over too (no field of interest has one).
fn field_name<'a>(r: &mut Reader<'a>, depth: usize) -> Result<Option<&'a [u8]>, WireError> {
    let name = r.str_bytes()?;
    if name.is_none() {
        r.skip(depth)?;
    }
    Ok(name)
}

/// `startstops` read in place: a list of small maps, the common case, goes
/// into the inline vector entry by entry; anything else is decoded and read
/// as [`TaskFinished::from_value`] reads it.
fn decode_startstops(r: &mut Reader, depth: usize) -> Result<SmallVec<[StartStop; 2]>, WireError> {
    let Some(n) = r.array_len()? else {
        return Ok(startstops_from_value(&r.value(depth)?));
    };
    let mut out = SmallVec::new();
    for _ in 0..n {
        let Some(m) = r.map_len()? else {
            r.skip(depth + 1)?;
            continue;
        };
        let mut f = StartStopFields::default();
        for _ in 0..m {
            let name = field_name(r, depth + 2)?;
            f.read(name, r, depth + 2)?;
        }
        out.extend(f.finish());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A worker's `task-finished` as `distributed` 2026.8.0 sends it (the
    /// field order of `TaskFinishedMsg`, from a captured trace).
    fn real_message(key: Value) -> Value {
        Value::map([
            ("key", key),
            ("run_id", Value::Int(1)),
            ("nbytes", Value::Int(28)),
            (
                "type",
                Value::Bin(Bytes::from_static(b"\x80\x05\x95pickled int")),
            ),
            ("typename", Value::str("int")),
            ("metadata", Value::Map(vec![])),
            ("thread", Value::Int(140_357_987_722_944)),
            (
                "startstops",
                Value::Array(vec![Value::map([
                    ("action", Value::str("compute")),
                    ("start", Value::Float(1_795_313_394.089_322)),
                    ("stop", Value::Float(1_795_313_394.089_359_8)),
                ])]),
            ),
            ("op", Value::str("task-finished")),
            (
                "stimulus_id",
                Value::str("task-finished-1795313394.0838294"),
            ),
            ("status", Value::str("OK")),
        ])
    }

    fn both_ways(msg: &Value) -> TaskFinished {
        let mut from_value = TaskFinished::from_value(msg);
        let bytes = Bytes::from(dask_wire::msgpack::encode(msg));
        let mut decoded = TaskFinished::decode(&bytes).unwrap().unwrap();
        // the name is read from the message's bytes only when asked
        assert_eq!(decoded.typename_value, None);
        assert_eq!(decoded.typename(), from_value.typename(), "{msg:?}");
        from_value.typename_value = None;
        // and the metadata map, when it has entries
        assert_eq!(decoded.metadata(), from_value.metadata(), "{msg:?}");
        from_value.metadata_value = None;
        assert_eq!(decoded.source.take(), Some(bytes), "the op map's bytes");
        // the key comes as its bytes; decoded, it is the same value
        if let Some(key) = &mut decoded.key {
            let Value::Raw(raw) = key else {
                panic!("decode keeps the key's bytes: {key:?}");
            };
            *key = dask_wire::msgpack::decode(raw).unwrap();
        }
        assert_eq!(decoded, from_value, "{msg:?}");
        decoded
    }

    #[test]
    fn reads_a_real_message() {
        let key = Value::Array(vec![Value::str("inc-d6e41087"), Value::Int(3)]);
        let t = both_ways(&real_message(key.clone()));
        assert_eq!(t.key, Some(key.clone()));
        assert_eq!(t.run_id, Some(1));
        assert_eq!(t.nbytes, Some(28));
        assert!(matches!(t.result_type, Some(Value::Bin(_))));
        assert_eq!(
            TaskFinished::from_value(&real_message(key)).typename(),
            Some("int".to_string())
        );
        assert_eq!(
            t.startstops.as_slice(),
            [StartStop {
                action: "compute".into(),
                start: 1_795_313_394.089_322,
                stop: 1_795_313_394.089_359_8,
            }]
        );
    }

    #[test]
    fn odd_fields_read_alike_both_ways() {
        let mut msgs = Vec::new();
        let base = real_message(Value::str("x"));
        let with = |name: &str, v: Value| {
            let mut m = base.clone();
            m.set(name, v);
            m
        };
        msgs.push(with("run_id", Value::str("not an int")));
        msgs.push(with("nbytes", Value::Float(1.5)));
        msgs.push(with("nbytes", Value::UInt(u64::MAX)));
        msgs.push(with("type", Value::Nil));
        msgs.push(with("startstops", Value::Nil));
        msgs.push(with(
            "startstops",
            Value::Array(vec![
                Value::str("not a map"),
                Value::map([("action", Value::str("transfer")), ("start", Value::Int(1))]),
                Value::map([
                    ("action", Value::str("transfer")),
                    ("start", Value::Int(1)),
                    ("stop", Value::Int(2)),
                    ("source", Value::str("tcp://a:1")),
                ]),
                Value::map([
                    ("action", Value::Int(5)),
                    ("start", Value::Int(1)),
                    ("stop", Value::Int(2)),
                ]),
            ]),
        ));
        // a set (`{"__Set__": True, "as-list": [...]}`) reads as its list
        msgs.push(with(
            "startstops",
            Value::map([
                ("__Set__", Value::Bool(true)),
                (
                    "as-list",
                    Value::Array(vec![Value::map([
                        ("action", Value::str("compute")),
                        ("start", Value::Int(1)),
                        ("stop", Value::Int(3)),
                    ])]),
                ),
            ]),
        ));
        // a repeated field: the last one counts
        let mut repeated = base.clone();
        if let Value::Map(entries) = &mut repeated {
            entries.push((Value::str("nbytes"), Value::Int(99)));
        }
        msgs.push(repeated);
        // no key at all
        let mut keyless = base.clone();
        if let Value::Map(entries) = &mut keyless {
            entries.retain(|(k, _)| k.as_str() != Some("key"));
        }
        msgs.push(keyless);
        // a name that is not a str is no name
        msgs.push(with("typename", Value::Int(3)));
        // metadata with entries, and metadata that is not a map
        msgs.push(with("metadata", Value::map([("stamped", Value::str("x"))])));
        msgs.push(with("metadata", Value::Array(vec![Value::Int(1)])));
        let read: Vec<TaskFinished> = msgs.iter().map(both_ways).collect();
        assert_eq!(read[0].run_id, None);
        assert_eq!(read[1].nbytes, None);
        assert_eq!(read[2].nbytes, None);
        assert_eq!(read[3].result_type, None);
        assert!(read[4].startstops.is_empty());
        assert_eq!(read[5].startstops.len(), 1, "only the complete entry");
        assert_eq!(read[5].startstops[0].action, "transfer");
        assert_eq!(read[6].startstops[0].stop, 3.0);
        assert_eq!(read[7].nbytes, Some(99));
        assert_eq!(read[8].key, None);
        assert_eq!(TaskFinished::from_value(&msgs[9]).typename(), None);
        assert!(read[10].has_metadata);
        assert!(!read[11].has_metadata && !read[0].has_metadata);
    }

    #[test]
    fn a_field_whose_name_is_not_utf8_is_stepped_over() {
        // `real_message` with one more entry, named by invalid UTF-8: the
        // names are compared as bytes, so it matches no field and is skipped
        let mut bytes = dask_wire::msgpack::encode(&real_message(Value::str("k")));
        let n = bytes[0] & 0x0f;
        bytes[0] = 0x80 | (n + 1);
        bytes.extend_from_slice(&[0xa2, b'k', 0xff, 0x01]);
        let t = TaskFinished::decode(&Bytes::from(bytes)).unwrap().unwrap();
        assert_eq!(t.run_id, Some(1));
        assert_eq!(t.nbytes, Some(28));
        assert_eq!(t.startstops.len(), 1);
    }

    #[test]
    fn not_a_map_is_none_and_bad_bytes_are_errors() {
        let list = Bytes::from(dask_wire::msgpack::encode(&Value::Array(vec![])));
        assert_eq!(TaskFinished::decode(&list).unwrap(), None);
        let full = Bytes::from(dask_wire::msgpack::encode(&real_message(Value::str("k"))));
        for cut in 1..full.len() {
            assert!(
                TaskFinished::decode(&full.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
    }
}
