//! The result types of finished tasks, kept once each and named by a small
//! id in the task.
//!
//! A `task-finished` carries the pickled type of the result (`type`, a few
//! dozen bytes); the scheduler keeps it to forward in `key-in-memory`.
//! Results have few distinct types, so a task holds a 4-byte
//! [`ResultTypeId`] into a [`ResultTypes`] table instead of the value (40
//! bytes in every task, used or not). The table is bounded; a type met once
//! it is full, or one that is not bytes, is kept in the task's rarely set
//! parts instead (`TaskExtra::result_type`).
//!
//! Each entry also keeps the type's name (`typename`, Python's
//! `TaskState.type`, e.g. `"pandas.core.frame.DataFrame"`), read from the
//! first `task-finished` that brought the type: the table is where a task's
//! `type` comes from, at no cost per task. Names get small ids of their own
//! ([`TypeNameId`]), which task groups count (Python's `TaskGroup.types`).

use bytes::Bytes;
use dask_wire::Value;
use rustc_hash::FxHashMap;

/// Distinct result types kept at most; later ones are stored per task.
pub const MAX_RESULT_TYPES: usize = 4096;

/// Distinct type names kept at most; a later one is kept as text in the
/// task that has it (and not counted in its group).
pub const MAX_TYPE_NAMES: usize = 4096;

/// A type name's id in [`ResultTypes`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeNameId(u32);

/// What a task knows of its result's type: a compact code stored in the
/// task (none, an entry of [`ResultTypes`], or "kept in the task's extra").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResultTypeId(u32);

impl ResultTypeId {
    /// No result type (not finished, or the worker sent none).
    pub const NONE: ResultTypeId = ResultTypeId(0);
    /// The type is stored in the task's `TaskExtra::result_type`.
    pub const IN_EXTRA: ResultTypeId = ResultTypeId(u32::MAX);

    /// Whether this id names an entry of the table.
    pub fn is_entry(self) -> bool {
        self.index().is_some()
    }

    /// The table index this id names, if it names one.
    fn index(self) -> Option<usize> {
        match self {
            ResultTypeId::NONE | ResultTypeId::IN_EXTRA => None,
            ResultTypeId(i) => Some(i as usize - 1),
        }
    }
}

/// The table of distinct pickled result types (see the module docs).
#[derive(Debug, Default)]
pub struct ResultTypes {
    /// Each type's bytes, owned (never a slice of a received frame).
    values: Vec<Bytes>,
    /// Position in `values` by content.
    by_bytes: FxHashMap<Bytes, u32>,
    /// The name of each entry of `values`, if its first `task-finished` had one.
    value_names: Vec<Option<TypeNameId>>,
    /// Every type name met, by id.
    names: Vec<Box<str>>,
    /// Id of each name in `names`.
    by_name: FxHashMap<Box<str>, u32>,
}

impl ResultTypes {
    /// The id of `v` in the table, adding it if new; `None` when `v` is not
    /// bytes or the table is full (the caller then keeps `v` itself).
    ///
    /// A new entry is copied out of `v`: a slice would pin the connection's
    /// whole read buffer for as long as the table lives.
    ///
    /// `typename` gives the type's name; it is called only when `v` makes a
    /// new entry (reading it may mean decoding the message again).
    pub fn intern(
        &mut self,
        v: &Value,
        typename: impl FnOnce() -> Option<String>,
    ) -> Option<ResultTypeId> {
        let Value::Bin(b) = v else {
            return None;
        };
        if let Some(&i) = self.by_bytes.get(b.as_ref()) {
            return Some(ResultTypeId(i + 1));
        }
        if self.values.len() >= MAX_RESULT_TYPES {
            return None;
        }
        let own = Bytes::copy_from_slice(b);
        let i = self.values.len() as u32;
        self.values.push(own.clone());
        self.by_bytes.insert(own, i);
        let name = typename().and_then(|n| self.intern_name(&n));
        self.value_names.push(name);
        Some(ResultTypeId(i + 1))
    }

    /// The id of type name `name`, adding it if new; `None` once
    /// [`MAX_TYPE_NAMES`] names are held.
    pub fn intern_name(&mut self, name: &str) -> Option<TypeNameId> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(TypeNameId(i));
        }
        if self.names.len() >= MAX_TYPE_NAMES {
            return None;
        }
        let i = self.names.len() as u32;
        self.names.push(name.into());
        self.by_name.insert(name.into(), i);
        Some(TypeNameId(i))
    }

    /// The name of the type a table id names, if known.
    pub fn name_of(&self, id: ResultTypeId) -> Option<TypeNameId> {
        id.index().and_then(|i| *self.value_names.get(i)?)
    }

    /// The text of a type name id.
    pub fn name(&self, id: TypeNameId) -> &str {
        &self.names[id.0 as usize]
    }

    /// The value a table id names (`None` for [`ResultTypeId::NONE`] and
    /// [`ResultTypeId::IN_EXTRA`], which the table does not hold).
    pub fn get(&self, id: ResultTypeId) -> Option<Value> {
        id.index()
            .and_then(|i| self.values.get(i))
            .map(|b| Value::Bin(b.clone()))
    }

    /// Number of distinct types held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no type was interned yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_types_share_one_id_and_one_buffer_detached_from_the_frame() {
        let mut t = ResultTypes::default();
        let frame1 = Bytes::from(b"....pickled-int....".to_vec());
        let frame2 = Bytes::from(b"xxpickled-intyy".to_vec());
        let a = t
            .intern(&Value::Bin(frame1.slice(4..15)), || Some("int".into()))
            .unwrap();
        let b = t
            .intern(&Value::Bin(frame2.slice(2..13)), || {
                panic!("not asked: known")
            })
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, ResultTypeId::NONE);
        let Some(Value::Bin(got)) = t.get(a) else {
            panic!("bin in, bin out")
        };
        assert_eq!(&got[..], b"pickled-int");
        assert!(
            !frame1.as_ptr_range().contains(&got.as_ptr()),
            "not a slice of the frame"
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.name_of(a).map(|n| t.name(n)), Some("int"));
        let c = t
            .intern(&Value::Bin(Bytes::from_static(b"pickled-str")), || None)
            .unwrap();
        assert_ne!(a, c);
        assert_eq!(
            t.get(c),
            Some(Value::Bin(Bytes::from_static(b"pickled-str")))
        );
        assert_eq!(t.name_of(c), None, "no name given");
        assert_eq!(t.name_of(ResultTypeId::NONE), None);
    }

    #[test]
    fn type_names_share_one_id_and_are_bounded() {
        let mut t = ResultTypes::default();
        let a = t.intern(&Value::Bin(Bytes::from_static(b"p1")), || {
            Some("int".into())
        });
        // another pickle of the same name (a type that fails pickling is
        // sent as its pickled name): the same name id
        let b = t.intern(&Value::Bin(Bytes::from_static(b"p2")), || {
            Some("int".into())
        });
        assert_eq!(t.name_of(a.unwrap()), t.name_of(b.unwrap()));
        for i in 1..MAX_TYPE_NAMES {
            assert!(t.intern_name(&format!("type-{i}")).is_some());
        }
        assert_eq!(t.intern_name("one more"), None);
        assert_eq!(t.intern_name("type-9").map(|n| t.name(n)), Some("type-9"));
    }

    #[test]
    fn the_table_is_bounded_and_holds_only_bytes() {
        let mut t = ResultTypes::default();
        assert_eq!(t.intern(&Value::str("not bytes"), || None), None);
        for i in 0..MAX_RESULT_TYPES {
            let v = Value::Bin(Bytes::from(format!("type-{i}").into_bytes()));
            assert!(t.intern(&v, || None).is_some());
        }
        assert_eq!(t.len(), MAX_RESULT_TYPES);
        let late = Value::Bin(Bytes::from_static(b"one more"));
        assert_eq!(t.intern(&late, || None), None, "full: the caller keeps it");
        // a known type still gets its id
        let known = Value::Bin(Bytes::from_static(b"type-7"));
        let id = t.intern(&known, || None).unwrap();
        assert_eq!(t.get(id), Some(known));
        assert_eq!(t.get(ResultTypeId::NONE), None);
        assert_eq!(t.get(ResultTypeId::IN_EXTRA), None);
    }
}
