//! What the benchmarks share: the time criterion measured, kept so that a bench can
//! print its ratios from the same measurements criterion reports.

use std::time::{Duration, Instant};

use criterion::Criterion;

/// Returns criterion as the benchmarks run it: ten samples of four seconds after a
/// second of warm-up, unless the command line says otherwise.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args()
}

/// Returns a rayon pool of one thread, for rates per core.
#[allow(dead_code, reason = "a benchmark that matches nothing has no pool to pin")]
pub fn one_core() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a pool of one thread")
}

/// Total time and iterations of the measured runs of one benchmark.
#[derive(Default)]
pub struct Timing {
    elapsed: Duration,
    iterations: u64,
}

impl Timing {
    /// Runs `run` `iters` times (an `iter_custom` body), adds the time, returns it.
    pub fn measure(&mut self, iters: u64, mut run: impl FnMut() -> usize) -> Duration {
        let started = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(run());
        }
        let elapsed = started.elapsed();
        self.elapsed += elapsed;
        self.iterations += iters;
        elapsed
    }

    /// Returns items per second, with `per_iteration` items per run; `None` when the
    /// benchmark did not run (filtered out).
    pub fn per_second(&self, per_iteration: usize) -> Option<f64> {
        (self.iterations > 0)
            .then(|| (self.iterations as f64 * per_iteration as f64) / self.elapsed.as_secs_f64())
    }
}
