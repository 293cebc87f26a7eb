//! `dask-machine-probe`: how fast is this machine right now?
//!
//! Prints, for each of three probes (see `dask_loaddriver::probe`), the median
//! and range over `--reps` repetitions on stderr, and one JSON line on stdout
//! (`{"bench": "machine-probe", ...}`) that `benches/run_all.py` records next
//! to the results.

use clap::Parser;
use dask_loaddriver::probe::{
    chase, cyclic_permutation, loopback_round_trips, median_min_max, spin,
};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "dask-machine-probe",
    about = "Memory latency, integer speed and loopback round trip of this machine"
)]
struct Args {
    /// Repetitions of each probe.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Size of the pointer-chasing array in MiB (far above the last-level cache).
    #[arg(long, default_value_t = 128)]
    mib: usize,
    /// Dependent loads per repetition.
    #[arg(long, default_value_t = 4_000_000)]
    loads: usize,
    /// Dependent integer steps per repetition.
    #[arg(long, default_value_t = 50_000_000)]
    spins: u64,
    /// TCP round trips per repetition.
    #[arg(long, default_value_t = 5_000)]
    round_trips: usize,
}

/// The `model name`, family, model and stepping of the first CPU in
/// `/proc/cpuinfo` (the VM's host CPU can change between runs).
fn cpu_description() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "{} (family {}, model {}, stepping {}, {} cache)",
        field("model name"),
        field("cpu family"),
        field("model"),
        field("stepping"),
        field("cache size")
    )
}

/// Run `f` `reps` times; each call returns a per-unit time.
fn measure(reps: usize, mut f: impl FnMut() -> f64) -> (f64, f64, f64) {
    let xs: Vec<f64> = (0..reps.max(1)).map(|_| f()).collect();
    median_min_max(&xs)
}

fn main() {
    let args = Args::parse();
    let slots = args.mib * (1 << 20) / 4;
    let next = cyclic_permutation(slots, 0x5EED);
    // One pass to fault the array in and warm the TLB's page walks.
    let mut sink = chase(&next, slots.min(args.loads));
    let mem = measure(args.reps, || {
        let t = Instant::now();
        sink ^= chase(&next, args.loads);
        t.elapsed().as_secs_f64() * 1e9 / args.loads as f64
    });
    drop(next);
    let mut sink64 = 0u64;
    let int = measure(args.reps, || {
        let t = Instant::now();
        sink64 ^= spin(args.spins, sink64 ^ 3);
        t.elapsed().as_secs_f64() * 1e9 / args.spins as f64
    });
    let mut failed = None;
    let mut cpu_per_rt = Vec::new();
    let rtt = measure(args.reps, || match loopback_round_trips(args.round_trips) {
        Ok(rt) => {
            if let Some(ns) = rt.cpu_ns {
                cpu_per_rt.push(ns as f64 / 1e3 / args.round_trips as f64);
            }
            rt.wall.as_secs_f64() * 1e6 / args.round_trips as f64
        }
        Err(e) => {
            failed = Some(e.to_string());
            f64::NAN
        }
    });
    let rtt_cpu = (!cpu_per_rt.is_empty()).then(|| median_min_max(&cpu_per_rt));
    let cpu = cpu_description();
    eprintln!("machine probe: {cpu}");
    eprintln!(
        "  memory latency  {:.1} ns per dependent load ({:.1}-{:.1}; {} MiB array)",
        mem.0, mem.1, mem.2, args.mib
    );
    eprintln!(
        "  integer         {:.3} ns per dependent multiply-rotate-xor ({:.3}-{:.3})",
        int.0, int.1, int.2
    );
    match &failed {
        None => {
            eprintln!(
                "  loopback        {:.1} µs per TCP round trip ({:.1}-{:.1})",
                rtt.0, rtt.1, rtt.2
            );
            if let Some(c) = rtt_cpu {
                eprintln!(
                    "                  {:.1} µs of CPU per round trip, both threads ({:.1}-{:.1})",
                    c.0, c.1, c.2
                );
            }
        }
        Some(e) => eprintln!("  loopback        failed: {e}"),
    }
    let j = |t: (f64, f64, f64)| serde_json::json!({"median": t.0, "min": t.1, "max": t.2});
    let out = serde_json::json!({
        "bench": "machine-probe",
        "cpu": cpu,
        "reps": args.reps,
        "mem_latency_ns": j(mem),
        "mem_array_mib": args.mib,
        "int_op_ns": j(int),
        "loopback_rtt_us": if failed.is_none() { j(rtt) } else { serde_json::Value::Null },
        "loopback_cpu_us": rtt_cpu.map(j),
        "loopback_error": failed,
        "sink": (sink as u64) ^ sink64,
    });
    println!("{out}");
}
