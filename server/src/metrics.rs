//! Counters for `GET /metrics`, in Prometheus' text format: HTTP responses by route and status,
//! speech jobs by outcome, frames and generation time (so frames per second), time to first
//! audio as a histogram; the queue depth and running jobs are read from the engine when
//! scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use dia_run::batch::SchedulerStats;

use crate::engine::{Progress, State};

/// Upper bounds of the time-to-first-audio histogram, in seconds.
const TTFA_BUCKETS: [f64; 12] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0,
];

#[derive(Default)]
struct Inner {
    /// (route, status) -> responses.
    http: BTreeMap<(String, u16), u64>,
    /// outcome -> jobs.
    jobs: BTreeMap<&'static str, u64>,
    frames: u64,
    samples: u64,
    generation_seconds: f64,
    last_frames_per_second: f64,
    ttfa_counts: [u64; TTFA_BUCKETS.len()],
    ttfa_count: u64,
    ttfa_sum: f64,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// What the engine reports when scraped.
pub struct Gauges {
    pub running: usize,
    pub queued: usize,
    pub max_concurrent: usize,
    pub queue_capacity: usize,
    /// The batching scheduler's counts, when generations decode together.
    pub batch: Option<SchedulerStats>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One HTTP response on `route` (the matched route pattern, so the label set stays small).
    pub fn response(&self, route: &str, status: u16) {
        *self
            .lock()
            .http
            .entry((route.to_string(), status))
            .or_default() += 1;
    }

    /// A speech job ended (done, failed or cancelled).
    pub fn job_ended(&self, p: &Progress) {
        let mut m = self.lock();
        let outcome = match p.state {
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled | State::Queued | State::Running => "cancelled",
        };
        *m.jobs.entry(outcome).or_default() += 1;
        m.frames += p.frames as u64;
        m.samples += p.samples as u64;
        m.generation_seconds += p.elapsed_seconds;
        if p.state == State::Done && p.elapsed_seconds > 0.0 {
            m.last_frames_per_second = p.frames as f64 / p.elapsed_seconds;
        }
        if let Some(t) = p.first_audio_seconds {
            m.ttfa_count += 1;
            m.ttfa_sum += t;
            for (i, b) in TTFA_BUCKETS.iter().enumerate() {
                if t <= *b {
                    m.ttfa_counts[i] += 1;
                }
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self, g: &Gauges) -> String {
        let m = self.lock();
        let mut s = String::new();
        let header = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let name = "dia_http_responses_total";
        header(
            &mut s,
            name,
            "counter",
            "HTTP responses by route and status code.",
        );
        for ((route, status), n) in &m.http {
            let _ = writeln!(
                s,
                "{name}{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let name = "dia_speech_jobs_total";
        header(
            &mut s,
            name,
            "counter",
            "Speech generations ended, by outcome (done, failed, cancelled).",
        );
        for outcome in ["done", "failed", "cancelled"] {
            let n = m.jobs.get(outcome).copied().unwrap_or(0);
            let _ = writeln!(s, "{name}{{outcome=\"{outcome}\"}} {n}");
        }
        let gauge = |s: &mut String, name: &str, kind: &str, help: &str, v: f64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(
            &mut s,
            "dia_running_generations",
            "gauge",
            "Generations running now.",
            g.running as f64,
        );
        gauge(
            &mut s,
            "dia_queue_depth",
            "gauge",
            "Requests waiting for a generation slot.",
            g.queued as f64,
        );
        gauge(
            &mut s,
            "dia_max_concurrent",
            "gauge",
            "Generation slots.",
            g.max_concurrent as f64,
        );
        gauge(
            &mut s,
            "dia_queue_capacity",
            "gauge",
            "Requests that may wait for a slot before the server answers 503.",
            g.queue_capacity as f64,
        );
        gauge(
            &mut s,
            "dia_frames_total",
            "counter",
            "Audio frames (86 per second of audio) generated.",
            m.frames as f64,
        );
        gauge(
            &mut s,
            "dia_samples_total",
            "counter",
            "Audio samples sent.",
            m.samples as f64,
        );
        gauge(
            &mut s,
            "dia_generation_seconds_total",
            "counter",
            "Seconds generations ran (frames_total / this = frames per second).",
            m.generation_seconds,
        );
        gauge(
            &mut s,
            "dia_frames_per_second",
            "gauge",
            "Frames per second of the last finished generation.",
            m.last_frames_per_second,
        );
        if let Some(b) = &g.batch {
            gauge(
                &mut s,
                "dia_batch_steps_total",
                "counter",
                "Decoder steps the batching scheduler ran.",
                b.steps as f64,
            );
            gauge(
                &mut s,
                "dia_batch_utterance_steps_total",
                "counter",
                "Generations decoded, summed over the batch's steps (/ dia_batch_steps_total = \
                 the mean a step decoded).",
                b.utterance_steps as f64,
            );
            gauge(
                &mut s,
                "dia_batch_peak",
                "gauge",
                "The most generations one batch step decoded.",
                b.peak as f64,
            );
            gauge(
                &mut s,
                "dia_batch_active",
                "gauge",
                "Generations in the batch's slots after its last step.",
                b.active as f64,
            );
        }
        let h = "dia_time_to_first_audio_seconds";
        let _ = writeln!(
            s,
            "# HELP {h} Seconds from a generation taking its slot to its first audio.\n# TYPE {h} histogram"
        );
        for (i, b) in TTFA_BUCKETS.iter().enumerate() {
            let _ = writeln!(s, "{h}_bucket{{le=\"{b}\"}} {}", m.ttfa_counts[i]);
        }
        let _ = writeln!(s, "{h}_bucket{{le=\"+Inf\"}} {}", m.ttfa_count);
        let _ = writeln!(s, "{h}_sum {}", m.ttfa_sum);
        let _ = writeln!(s, "{h}_count {}", m.ttfa_count);
        s
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: State, ttfa: Option<f64>) -> Progress {
        Progress {
            id: 1,
            state,
            frames: 86,
            estimated_frames: 86,
            samples: 86 * 512,
            steps: 100,
            segment: 0,
            segments: 1,
            elapsed_seconds: 2.0,
            first_audio_seconds: ttfa,
            queued_seconds: 0.0,
            realtime_factor: None,
            sample_rate: 44100,
            error: None,
        }
    }

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::default();
        m.response("/v1/audio/speech", 200);
        m.response("/v1/audio/speech", 200);
        m.response("/v1/audio/speech", 503);
        m.job_ended(&progress(State::Done, Some(0.3)));
        m.job_ended(&progress(State::Running, None));
        let text = m.render(&Gauges {
            running: 1,
            queued: 2,
            max_concurrent: 1,
            queue_capacity: 4,
            batch: Some(SchedulerStats {
                steps: 10,
                utterance_steps: 15,
                peak: 2,
                active: 1,
                waiting: 0,
            }),
        });
        for line in [
            "dia_http_responses_total{route=\"/v1/audio/speech\",status=\"200\"} 2",
            "dia_http_responses_total{route=\"/v1/audio/speech\",status=\"503\"} 1",
            "dia_speech_jobs_total{outcome=\"done\"} 1",
            "dia_speech_jobs_total{outcome=\"cancelled\"} 1",
            "dia_speech_jobs_total{outcome=\"failed\"} 0",
            "dia_queue_depth 2",
            "dia_running_generations 1",
            "dia_frames_total 172",
            "dia_frames_per_second 43",
            "dia_time_to_first_audio_seconds_bucket{le=\"0.25\"} 0",
            "dia_time_to_first_audio_seconds_bucket{le=\"0.5\"} 1",
            "dia_time_to_first_audio_seconds_count 1",
            "dia_batch_steps_total 10",
            "dia_batch_utterance_steps_total 15",
            "dia_batch_peak 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // Every sample line belongs to a declared metric.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {base} ")),
                "{name} has no TYPE line"
            );
        }
    }
}
