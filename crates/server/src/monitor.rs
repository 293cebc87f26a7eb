//! The scheduler process's CPU and memory, sampled every half second (what
//! Python's `SystemMonitor` keeps for the dashboard).
//!
//! Why: `performance_report` asks for the sample count when its block
//! starts (`dask_scheduler.monitor.count`) and shows the samples taken
//! since in its "System" tab.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Python's `distributed.admin.system-monitor.interval`.
const INTERVAL: Duration = Duration::from_millis(500);
/// Python's `distributed.admin.system-monitor.log-length`.
const LOG_LENGTH: usize = 7200;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Epoch seconds.
    pub time: f64,
    /// CPU since the previous sample, percent of one core.
    pub cpu: f64,
    /// Resident memory, bytes.
    pub memory: f64,
}

#[derive(Default)]
struct Samples {
    ring: VecDeque<Sample>,
    /// Samples taken since start (the ring keeps the last `LOG_LENGTH`).
    count: u64,
}

impl Samples {
    fn push(&mut self, s: Sample) {
        if self.ring.len() == LOG_LENGTH {
            self.ring.pop_front();
        }
        self.ring.push_back(s);
        self.count += 1;
    }

    /// Samples taken after the first `count` (those still kept).
    fn since(&self, count: u64) -> Vec<Sample> {
        let wanted = self.count.saturating_sub(count).min(self.ring.len() as u64) as usize;
        self.ring
            .iter()
            .skip(self.ring.len() - wanted)
            .copied()
            .collect()
    }
}

static SAMPLES: Mutex<Samples> = Mutex::new(Samples {
    ring: VecDeque::new(),
    count: 0,
});

/// Samples taken so far (`SystemMonitor.count`).
pub fn count() -> u64 {
    SAMPLES.lock().unwrap_or_else(PoisonError::into_inner).count
}

/// The samples taken after the first `count` that are still kept.
pub fn since(count: u64) -> Vec<Sample> {
    SAMPLES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .since(count)
}

/// `(cpu seconds, resident bytes)` of this process, from the same
/// collector that gives `/metrics` its `process_*` families.
#[cfg(target_os = "linux")]
fn read_process() -> Option<(f64, f64)> {
    use prometheus::core::Collector;
    use prometheus::process_collector::ProcessCollector;
    static COLLECTOR: std::sync::LazyLock<ProcessCollector> =
        std::sync::LazyLock::new(ProcessCollector::for_self);
    let mut cpu = None;
    let mut rss = None;
    for family in COLLECTOR.collect() {
        let metric = family.get_metric().first()?;
        match family.name() {
            "process_cpu_seconds_total" => cpu = Some(metric.get_counter().get_value()),
            "process_resident_memory_bytes" => rss = Some(metric.get_gauge().get_value()),
            _ => {}
        }
    }
    Some((cpu?, rss?))
}

#[cfg(not(target_os = "linux"))]
fn read_process() -> Option<(f64, f64)> {
    None
}

/// Start sampling (once; later calls do nothing).
pub fn spawn() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        tokio::spawn(async {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<(f64, f64)> = None;
            loop {
                tick.tick().await;
                let now = crate::scheduler::now();
                let Some((cpu_s, rss)) = read_process() else {
                    continue;
                };
                let cpu = match last {
                    Some((t, c)) if now > t => 100.0 * (cpu_s - c).max(0.0) / (now - t),
                    _ => 0.0,
                };
                last = Some((now, cpu_s));
                SAMPLES
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Sample {
                        time: now,
                        cpu,
                        memory: rss,
                    });
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> Sample {
        Sample {
            time: i as f64,
            cpu: 0.0,
            memory: 0.0,
        }
    }

    #[test]
    fn samples_since_a_count_are_those_taken_after_it_and_still_kept() {
        let mut s = Samples::default();
        for i in 0..10 {
            s.push(sample(i));
        }
        let times = |v: Vec<Sample>| v.iter().map(|x| x.time as u64).collect::<Vec<_>>();
        assert_eq!(times(s.since(7)), [7, 8, 9]);
        assert_eq!(times(s.since(10)), Vec::<u64>::new());
        assert_eq!(times(s.since(99)), Vec::<u64>::new());
        assert_eq!(s.since(0).len(), 10);
        for i in 10..(LOG_LENGTH as u64 + 5) {
            s.push(sample(i));
        }
        // older ones have left the ring
        assert_eq!(s.since(0).len(), LOG_LENGTH);
        assert_eq!(s.since(0)[0].time as u64, 5);
        assert_eq!(s.count, LOG_LENGTH as u64 + 5);
    }

    #[test]
    fn this_process_can_be_read() {
        let (cpu, rss) = read_process().expect("/proc/self");
        assert!(cpu >= 0.0 && rss > 0.0, "{cpu} {rss}");
    }
}
