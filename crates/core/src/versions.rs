//! The version check Python's scheduler makes when a client or a worker
//! registers (`distributed.versions.error_message`): the packages whose
//! versions differ between the newcomer, the scheduler and the workers, as
//! the "Mismatched versions found" table the client turns into a
//! `VersionMismatchWarning` and a worker logs.
//!
//! Workers mostly share one environment, so the scheduler keeps each
//! distinct set of workers' package versions once, with how many workers
//! have it ([`PackageSets`]): the check then costs the number of distinct
//! environments, not of workers, and gives the table Python's would (which
//! depends only on the set of versions each package has among the workers).
//!
//! Where Python's differs: a party that sent no versions (Python calls it
//! `"UNKNOWN"`, and then compares the letters of that word as if they were
//! package names) takes no part in the check, and a newcomer without
//! versions gets no table; the workers' versions of a package, when they
//! differ, are listed sorted (Python lists a set in hash order).

use dask_wire::Value;
use rustc_hash::FxHashMap;

/// Packages whose scheduler version counts (Python's
/// `scheduler_relevant_packages`, which by its operator precedence keeps
/// `msgpack`): for the others the scheduler's version is shown but not compared.
const SCHEDULER_RELEVANT: [&str; 8] = [
    "cloudpickle",
    "dask",
    "distributed",
    "lz4",
    "msgpack",
    "python",
    "toolz",
    "tornado",
];

/// A package's version as Python's table prints it: a str, or `None`
/// (installed nowhere / not importable), or Python's `"MISSING"` for a
/// package a party does not list.
type Version = Option<String>;

/// What a party lacks a package as (Python's string).
const MISSING: &str = "MISSING";

/// One party's package versions (`get_versions()["packages"]`), sorted by
/// package name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Packages(Vec<(String, Version)>);

impl Packages {
    /// The packages of a `get_versions()` map (`{"host": ..., "packages":
    /// {...}}`); `None` when it has none (no versions sent).
    pub fn of(versions: &Value) -> Option<Packages> {
        let packages = versions.get("packages")?.as_map()?;
        let mut out: Vec<(String, Version)> = packages
            .iter()
            .filter_map(|(name, v)| {
                let version = match v {
                    Value::Nil => None,
                    Value::Str(s) => Some(s.to_string()),
                    other => Some(other.to_string()),
                };
                Some((name.as_str()?.to_string(), version))
            })
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        Some(Packages(out))
    }

    /// The version of `package`, `"MISSING"` if not listed.
    fn get(&self, package: &str) -> Version {
        match self
            .0
            .binary_search_by(|(name, _)| name.as_str().cmp(package))
        {
            Ok(i) => self.0[i].1.clone(),
            Err(_) => Some(MISSING.to_string()),
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }
}

/// The distinct package sets of the connected workers, each with how many
/// workers have it (see the module docs).
#[derive(Debug, Default)]
pub struct PackageSets {
    /// Each set and its workers; `None` once no worker has it (slot free).
    sets: Vec<Option<(Packages, u32)>>,
    /// Slot of each set held.
    by_content: FxHashMap<Packages, u32>,
    /// Free slots.
    free: Vec<u32>,
}

impl PackageSets {
    /// A worker with `versions` joined: the slot of its set (`None` when it
    /// sent no versions, so takes no part in the check).
    pub fn add(&mut self, versions: &Value) -> Option<u32> {
        let packages = Packages::of(versions)?;
        if let Some(&slot) = self.by_content.get(&packages) {
            if let Some((_, n)) = &mut self.sets[slot as usize] {
                *n += 1;
            }
            return Some(slot);
        }
        let entry = Some((packages.clone(), 1));
        let slot = match self.free.pop() {
            Some(slot) => {
                self.sets[slot as usize] = entry;
                slot
            }
            None => {
                self.sets.push(entry);
                (self.sets.len() - 1) as u32
            }
        };
        self.by_content.insert(packages, slot);
        Some(slot)
    }

    /// A worker whose set is in `slot` left.
    pub fn remove(&mut self, slot: u32) {
        let Some(Some((packages, n))) = self.sets.get_mut(slot as usize) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.by_content.remove(packages);
            self.sets[slot as usize] = None;
            self.free.push(slot);
        }
    }

    /// The distinct sets held.
    pub fn iter(&self) -> impl Iterator<Item = &Packages> + Clone {
        self.sets.iter().flatten().map(|(p, _)| p)
    }
}

/// Python's `error_message(scheduler, workers, source, source_name)["warning"]`:
/// `""` when every compared version agrees, else "Mismatched versions
/// found" and the table. `scheduler` or `source` `None`: not known (see the
/// module docs).
pub fn mismatch_warning<'a>(
    scheduler: Option<&Packages>,
    workers: impl Iterator<Item = &'a Packages> + Clone,
    source: Option<&Packages>,
    source_name: &str,
) -> String {
    let Some(source) = source else {
        return String::new();
    };
    let mut names: Vec<&str> = source.names().collect();
    names.extend(scheduler.iter().flat_map(|s| s.names()));
    for w in workers.clone() {
        names.extend(w.names());
    }
    names.sort_unstable();
    names.dedup();
    let mut rows: Vec<[String; 4]> = Vec::new();
    for package in names {
        let scheduler_version = scheduler.map(|s| s.get(package));
        let source_version = source.get(package);
        let mut worker_versions: Vec<Version> = workers.clone().map(|w| w.get(package)).collect();
        worker_versions.sort();
        worker_versions.dedup();
        let mut all = worker_versions.clone();
        all.push(source_version.clone());
        if SCHEDULER_RELEVANT.contains(&package) {
            all.extend(scheduler_version.clone());
        }
        all.sort();
        all.dedup();
        if all.len() <= 1 {
            continue;
        }
        let workers_text = match worker_versions.as_slice() {
            [] => "None".to_string(),
            [one] => text(one),
            many => format!(
                "{{{}}}",
                many.iter().map(repr).collect::<Vec<_>>().join(", ")
            ),
        };
        rows.push([
            package.to_string(),
            text(&source_version),
            scheduler_version
                .as_ref()
                .map_or("UNKNOWN".to_string(), text),
            workers_text,
        ]);
    }
    if rows.is_empty() {
        return String::new();
    }
    let table = ascii_table(&["Package", source_name, "Scheduler", "Workers"], &rows);
    format!("Mismatched versions found\n\n{table}")
}

/// Python's `str()` of a version.
fn text(v: &Version) -> String {
    v.clone().unwrap_or_else(|| "None".to_string())
}

/// Python's `repr()` of a version, as a set lists it.
fn repr(v: &Version) -> String {
    match v {
        Some(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        None => "None".to_string(),
    }
}

/// Python's `distributed.utils.asciitable`.
fn ascii_table(columns: &[&str; 4], rows: &[[String; 4]]) -> String {
    let widths: Vec<usize> = (0..4)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([columns[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::from("|");
        for (cell, w) in cells.zip(&widths) {
            let pad = w - cell.chars().count();
            out.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
        }
        out
    };
    let bar = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let header = line(&mut columns.iter().copied());
    let data: Vec<String> = rows
        .iter()
        .map(|r| line(&mut r.iter().map(String::as_str)))
        .collect();
    [bar.clone(), header, bar.clone(), data.join("\n"), bar].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(packages: &[(&str, Option<&str>)]) -> Value {
        Value::map([
            (
                "host",
                Value::map([("python", Value::str("3.11.9.final.0"))]),
            ),
            (
                "packages",
                Value::Map(
                    packages
                        .iter()
                        .map(|(name, v)| (Value::str(*name), v.map_or(Value::Nil, Value::str)))
                        .collect(),
                ),
            ),
        ])
    }

    fn p(packages: &[(&str, Option<&str>)]) -> Packages {
        Packages::of(&versions(packages)).unwrap()
    }

    #[test]
    fn the_table_is_pythons() {
        // (scheduler, workers, source, the expected warning); the tables
        // are what `distributed.versions.error_message` returns for the
        // same versions (checked with distributed 2026.8.0), but for the
        // order of the workers' differing versions, which Python's set
        // gives in hash order
        let base = [("dask", Some("2026.8.0")), ("numpy", Some("2.1.0"))];
        let numpy_old = [("dask", Some("2026.8.0")), ("numpy", Some("1.26.4"))];
        let dask_old = [("dask", Some("2025.1.0")), ("numpy", Some("2.1.0"))];
        let no_numpy = [("dask", Some("2026.8.0")), ("numpy", None)];
        type Case<'a> = (
            &'a [(&'a str, Option<&'a str>)],
            Vec<&'a [(&'a str, Option<&'a str>)]>,
            &'a [(&'a str, Option<&'a str>)],
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (&base, vec![&base, &base], &base, ""),
            // the scheduler's numpy is not compared
            (&numpy_old, vec![&base], &base, ""),
            (
                &base,
                vec![&base],
                &numpy_old,
                "Mismatched versions found\n\n\
                 +---------+--------+-----------+---------+\n\
                 | Package | Client | Scheduler | Workers |\n\
                 +---------+--------+-----------+---------+\n\
                 | numpy   | 1.26.4 | 2.1.0     | 2.1.0   |\n\
                 +---------+--------+-----------+---------+",
            ),
            // dask is compared with the scheduler's, and workers differ
            (
                &dask_old,
                vec![&base, &numpy_old, &no_numpy],
                &base,
                "Mismatched versions found\n\n\
                 +---------+----------+-----------+---------------------------+\n\
                 | Package | Client   | Scheduler | Workers                   |\n\
                 +---------+----------+-----------+---------------------------+\n\
                 | dask    | 2026.8.0 | 2025.1.0  | 2026.8.0                  |\n\
                 | numpy   | 2.1.0    | 2.1.0     | {None, '1.26.4', '2.1.0'} |\n\
                 +---------+----------+-----------+---------------------------+",
            ),
            // a package one party lacks, and no workers (numpy, which the
            // client lacks, is only the scheduler's: not compared)
            (
                &base,
                vec![],
                &[("dask", Some("2026.8.0")), ("lz4", Some("4.3.3"))],
                "Mismatched versions found\n\n\
                 +---------+--------+-----------+---------+\n\
                 | Package | Client | Scheduler | Workers |\n\
                 +---------+--------+-----------+---------+\n\
                 | lz4     | 4.3.3  | MISSING   | None    |\n\
                 +---------+--------+-----------+---------+",
            ),
        ];
        for (n, (scheduler, workers, source, want)) in cases.into_iter().enumerate() {
            let workers: Vec<Packages> = workers.into_iter().map(p).collect();
            let got = mismatch_warning(
                Some(&p(scheduler)),
                workers.iter(),
                Some(&p(source)),
                "Client",
            );
            assert_eq!(got, want, "case {n}:\n{got}");
        }
    }

    #[test]
    fn unknown_parties_take_no_part() {
        let base = p(&[("dask", Some("2026.8.0"))]);
        let old = p(&[("dask", Some("2025.1.0"))]);
        assert_eq!(
            mismatch_warning(Some(&old), [&base].into_iter(), None, "Client"),
            ""
        );
        let got = mismatch_warning(None, [&old].into_iter(), Some(&base), "Worker-1");
        assert!(
            got.contains("| dask    | 2026.8.0 | UNKNOWN   | 2025.1.0 |"),
            "{got}"
        );
        assert!(got.contains("| Package | Worker-1 |"), "{got}");
        assert_eq!(Packages::of(&Value::Nil), None);
        assert_eq!(Packages::of(&Value::Map(vec![])), None);
    }

    #[test]
    fn workers_share_a_set_until_the_last_leaves() {
        let mut sets = PackageSets::default();
        let a = versions(&[("dask", Some("1"))]);
        let b = versions(&[("dask", Some("2"))]);
        let first = sets.add(&a).unwrap();
        assert_eq!(sets.add(&a), Some(first));
        let other = sets.add(&b).unwrap();
        assert_ne!(first, other);
        assert_eq!(sets.iter().count(), 2);
        assert_eq!(sets.add(&Value::Nil), None, "no versions: not counted");
        sets.remove(first);
        assert_eq!(sets.iter().count(), 2, "one worker still has it");
        sets.remove(first);
        assert_eq!(
            sets.iter().collect::<Vec<_>>(),
            [&Packages::of(&b).unwrap()]
        );
        // the freed slot is reused
        assert_eq!(sets.add(&versions(&[("dask", Some("3"))])), Some(first));
    }
}
