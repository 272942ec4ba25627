//! Realistic synthetic profiles: per service a fixed pool of functions and stacks whose
//! popularity follows a Zipf law, Go-, Java- or Python-like names, stacks 10 to 64 deep.

use std::collections::HashMap;

use kiln_proto::google::v1::{Function, Label, Line, Location, Profile, Sample, ValueType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// The naming style of a service's functions.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Style {
    Go,
    Java,
    Python,
}

/// Shape of the generated workload.
#[derive(Clone, Debug)]
pub(crate) struct WorkloadConfig {
    /// Distinct functions per service.
    pub(crate) functions: usize,
    /// Distinct stacks per service.
    pub(crate) stacks: usize,
    /// Samples per CPU profile (10 s at 100 Hz is 1000).
    pub(crate) samples_per_profile: usize,
    /// Fraction of samples that carry a span id.
    pub(crate) span_fraction: f64,
    /// Distinct values of the extra `label_0` label (label cardinality).
    pub(crate) label_values: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            functions: 2_000,
            stacks: 5_000,
            samples_per_profile: 1_000,
            span_fraction: 0.1,
            label_values: 10,
        }
    }
}

/// One service's pools of names and stacks.
#[derive(Debug)]
pub(crate) struct ServiceModel {
    pub(crate) name: String,
    functions: Vec<String>,
    /// Stacks as function indices, leaf first.
    stacks: Vec<Vec<usize>>,
    zipf: Zipf<f64>,
    config: WorkloadConfig,
}

impl ServiceModel {
    pub(crate) fn new(index: usize, config: &WorkloadConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(index as u64);
        let style = [Style::Go, Style::Java, Style::Python][index % 3];
        let functions: Vec<String> = (0..config.functions)
            .map(|i| match style {
                Style::Go => format!(
                    "github.com/acme/svc{index}/pkg{}.(*Type{}).Method{i}",
                    i % 37,
                    i % 11
                ),
                Style::Java => format!(
                    "com.acme.svc{index}.module{}.Service{}.method{i}",
                    i % 29,
                    i % 13
                ),
                Style::Python => format!("app/svc{index}/module{}.py:func_{i}", i % 31),
            })
            .collect();
        let roots = config.functions.min(8);
        let stacks = (0..config.stacks)
            .map(|_| {
                let depth = rng.random_range(10..=64);
                // Shared roots and a random path, so that prefixes repeat as in real programs.
                let mut frames: Vec<usize> = (0..depth)
                    .map(|level| {
                        if level < 3 {
                            rng.random_range(0..roots)
                        } else {
                            rng.random_range(roots..config.functions)
                        }
                    })
                    .collect();
                frames.reverse();
                frames
            })
            .collect();
        Self {
            name: format!("loadgen-svc-{index}"),
            functions,
            stacks,
            zipf: Zipf::new(config.stacks as f64, 1.1).expect("valid Zipf parameters"),
            config: config.clone(),
        }
    }

    fn pick_stack(&self, rng: &mut StdRng) -> usize {
        self.zipf.sample(rng) as usize - 1
    }

    /// A 10 s CPU profile at 100 Hz (samples/count and cpu/nanoseconds) of `instance`.
    pub(crate) fn cpu_profile(&self, rng: &mut StdRng, time_nanos: i64) -> Profile {
        let mut counts: HashMap<(usize, Option<u64>), i64> = HashMap::new();
        for _ in 0..self.config.samples_per_profile {
            let span = rng
                .random_bool(self.config.span_fraction)
                .then(|| rng.random::<u64>());
            *counts.entry((self.pick_stack(rng), span)).or_insert(0) += 1;
        }
        let mut builder = PprofBuilder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
        );
        for ((stack, span), count) in counts {
            let label = span.map(|s| ("span_id", format!("{s:016x}")));
            builder.sample(self, stack, vec![count, count * 10_000_000], label);
        }
        builder.finish(time_nanos, 10_000_000_000, 10_000_000)
    }

    /// A Go-like heap profile (alloc and inuse objects and bytes).
    pub(crate) fn heap_profile(&self, rng: &mut StdRng, time_nanos: i64) -> Profile {
        let mut builder = PprofBuilder::new(
            &[
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ],
            ("space", "bytes"),
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..self.config.samples_per_profile / 4 {
            let stack = self.pick_stack(rng);
            if seen.insert(stack) {
                let objects = rng.random_range(1..1000);
                let size = objects * rng.random_range(16..4096);
                builder.sample(
                    self,
                    stack,
                    vec![objects, size, objects / 2, size / 2],
                    None,
                );
            }
        }
        builder.finish(time_nanos, 0, 524_288)
    }

    /// The frames of a stack as function names, leaf first.
    pub(crate) fn stack_names(&self, stack: usize) -> impl Iterator<Item = &str> {
        self.stacks[stack]
            .iter()
            .map(|&f| self.functions[f].as_str())
    }

    /// A stack drawn with the service's popularity.
    pub(crate) fn random_stack(&self, rng: &mut StdRng) -> usize {
        self.pick_stack(rng)
    }

    /// Value of the extra label for an instance, so that label cardinality is configurable.
    pub(crate) fn label_value(&self, instance: usize) -> String {
        format!("value-{}", instance % self.config.label_values.max(1))
    }
}

/// Builds a pprof with deduplicated strings, functions and locations.
struct PprofBuilder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<String, u64>,
}

impl PprofBuilder {
    fn new(sample_types: &[(&str, &str)], period_type: (&str, &str)) -> Self {
        let mut builder = Self {
            profile: Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
        };
        builder.string("");
        builder.profile.sample_type = sample_types
            .iter()
            .map(|(t, u)| ValueType {
                r#type: builder.string(t),
                unit: builder.string(u),
            })
            .collect();
        builder.profile.period_type = Some(ValueType {
            r#type: builder.string(period_type.0),
            unit: builder.string(period_type.1),
        });
        builder
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    /// One location per function (Go's pprof does the same for inlined-free code), at an address
    /// that depends only on the name, as code stays where the binary put it.
    fn function(&mut self, name: &str) -> u64 {
        if let Some(&id) = self.functions.get(name) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let name_index = self.string(name);
        self.profile.function.push(Function {
            id,
            name: name_index,
            system_name: name_index,
            filename: 0,
            start_line: 0,
        });
        self.profile.location.push(Location {
            id,
            mapping_id: 0,
            address: 0x400000 + (stable_hash(name) & 0xf_ffff) * 16,
            line: vec![Line {
                function_id: id,
                line: 1,
                column: 0,
            }],
            is_folded: false,
        });
        self.functions.insert(name.to_string(), id);
        id
    }

    fn sample(
        &mut self,
        model: &ServiceModel,
        stack: usize,
        value: Vec<i64>,
        label: Option<(&str, String)>,
    ) {
        let names: Vec<String> = model.stack_names(stack).map(String::from).collect();
        let location_id = names.iter().map(|n| self.function(n)).collect();
        let label = label
            .map(|(k, v)| {
                vec![Label {
                    key: self.string(k),
                    str: self.string(&v),
                    num: 0,
                    num_unit: 0,
                }]
            })
            .unwrap_or_default();
        self.profile.sample.push(Sample {
            location_id,
            value,
            label,
        });
    }

    fn finish(mut self, time_nanos: i64, duration_nanos: i64, period: i64) -> Profile {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
        self.profile.period = period;
        self.profile
    }
}

/// A hash that is the same in every run (SipHash with zero keys).
fn stable_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_have_the_configured_shape() {
        let config = WorkloadConfig {
            functions: 100,
            stacks: 200,
            ..WorkloadConfig::default()
        };
        let model = ServiceModel::new(1, &config);
        let mut rng = StdRng::seed_from_u64(7);
        let profile = model.cpu_profile(&mut rng, 1);
        let samples: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(samples, 1000);
        assert!(
            profile
                .sample
                .iter()
                .all(|s| (10..=64).contains(&s.location_id.len()))
        );
        let heap = model.heap_profile(&mut rng, 1);
        assert_eq!(heap.sample_type.len(), 4);
    }
}
