//! Generators (proptest strategies) of what users and platform engineers write: cron
//! schedules, durations, quantities, names, images, environment variables, annotations,
//! whole DataJob specs and NodeGroups. Each mixes values that are valid, values that are
//! nearly valid (one character off, out of range, too long) and arbitrary text, so the
//! property tests see every door of the validation. Shared by `tests/prop_*.rs` (no
//! cluster) and the e2e suite `shared::generated_specs` (a server-side dry run of a sample).

use std::collections::BTreeMap;

use datajob_api::nodegroup::{KwokProvider, NodeShape, NodeTaint, Provider, StaticProvider};
use datajob_api::{DataJob, DataJobResources, DataJobSpec, NodeGroup, NodeGroupSpec};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Strategy};

/// Any text, including control characters and non-ASCII.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        1 => "\\PC{0,12}",
        1 => Just(String::new()),
        1 => Just(" ".to_string()),
    ]
    .boxed()
}

fn one_of(values: &'static [&'static str]) -> BoxedStrategy<String> {
    proptest::sample::select(values)
        .prop_map(str::to_string)
        .boxed()
}

// ---- cron -------------------------------------------------------------------------

/// One cron field for values `lo..=hi` (with `names`, e.g. JAN or MON): `*`, `?`, a
/// number (sometimes out of range), a range, a step, a list, a name, or junk.
pub fn cron_field(lo: u32, hi: u32, names: &'static [&'static str]) -> BoxedStrategy<String> {
    let number = (lo.saturating_sub(2)..=hi + 3).prop_map(|n| n.to_string());
    let name = if names.is_empty() {
        Just("*".to_string()).boxed()
    } else {
        proptest::sample::select(names)
            .prop_flat_map(|n| {
                prop_oneof![
                    Just(n.to_string()),
                    Just(n.to_lowercase()),
                    Just(n[..1].to_string() + &n[1..].to_lowercase()),
                ]
            })
            .boxed()
    };
    let atom = prop_oneof![4 => number.clone(), 1 => name];
    let range = (atom.clone(), atom.clone()).prop_map(|(a, b)| format!("{a}-{b}"));
    let step_base = prop_oneof![Just("*".to_string()), atom.clone(), range.clone()];
    let step = (step_base, 0u32..70).prop_map(|(b, s)| format!("{b}/{s}"));
    let part = prop_oneof![4 => atom, 2 => range, 2 => step];
    let list = proptest::collection::vec(part.clone(), 2..4).prop_map(|v| v.join(","));
    prop_oneof![
        6 => Just("*".to_string()),
        1 => Just("?".to_string()),
        6 => part,
        2 => list,
        1 => one_of(&["", ",", "1,,2", "-", "*/", "/5", "1-", "L", "W", "#", "1#2", "5L", "0x1"]),
        1 => text(),
    ]
    .boxed()
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A schedule as a user might write it: five fields, a macro, the wrong number of
/// fields, a time zone inside it, or junk.
pub fn schedule() -> BoxedStrategy<String> {
    let five = (
        cron_field(0, 59, &[]),
        cron_field(0, 23, &[]),
        cron_field(1, 31, &[]),
        cron_field(1, 12, MONTHS),
        cron_field(0, 7, DAYS),
    )
        .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}"));
    let wrong_count = proptest::collection::vec(cron_field(0, 59, &[]), 0..8)
        .prop_filter("not five fields", |v| v.len() != 5)
        .prop_map(|v| v.join(" "));
    prop_oneof![
        10 => five,
        2 => one_of(&[
            "@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually",
            "@reboot", "@every 5m", "@", "@DAILY",
        ]),
        1 => wrong_count,
        1 => (Just("CRON_TZ=UTC "), cron_field(0, 59, &[]))
            .prop_map(|(tz, m)| format!("{tz}{m} * * * *")),
        1 => "( |\t){0,2}[0-9*/,-]{1,4}( |\t)[0-9*]{1,2} \\* \\* \\*( |\n){0,2}",
        1 => text(),
    ]
    .boxed()
}

/// A time zone: an IANA name, one spelled wrong, or junk.
pub fn time_zone() -> BoxedStrategy<String> {
    let names: Vec<&'static str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
    prop_oneof![
        6 => proptest::sample::select(names).prop_map(str::to_string),
        1 => one_of(&["utc", "Europe/london", "CET ", "Mars/Olympus", "GMT+1", "+01:00", ""]),
        1 => text(),
    ]
    .boxed()
}

// ---- durations and quantities -------------------------------------------------------

/// A duration: one or more `<n><unit>` parts, a bare number, a space, a negative, junk.
pub fn duration() -> BoxedStrategy<String> {
    let part = (
        0u64..100_000,
        proptest::sample::select(&["s", "m", "h", "d"][..]),
    )
        .prop_map(|(n, u)| format!("{n}{u}"));
    prop_oneof![
        6 => proptest::collection::vec(part, 1..4).prop_map(|v| v.concat()),
        1 => one_of(&[
            "0s", "90", "h", "1h 30m", "-5m", "1.5h", "1w", "99999999999999999999d", "1H",
            "PT1H", "", "2 hours",
        ]),
        1 => text(),
    ]
    .boxed()
}

/// A quantity: an integer or decimal with any unit Kubernetes knows (or not), an
/// exponent, a sign, or junk.
pub fn quantity() -> BoxedStrategy<String> {
    let suffix = one_of(&[
        "", "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u",
        "e3", "E6", "e-3", "KB", "gi", "b", "MB",
    ]);
    let number = prop_oneof![
        4 => (0u64..100_000).prop_map(|n| n.to_string()),
        2 => (0u64..10_000, 0u64..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        1 => (0u64..1000).prop_map(|b| format!(".{b}")),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "[0-9]{20,45}",
    ];
    let sign = one_of(&["", "", "", "", "-", "+"]);
    prop_oneof![
        8 => (sign, number, suffix).prop_map(|(s, n, u)| format!("{s}{n}{u}")),
        1 => text(),
    ]
    .boxed()
}

// ---- names ------------------------------------------------------------------------

/// A Kubernetes-style name: a DNS label (sometimes too long), with capitals, dots,
/// underscores or junk.
pub fn name() -> BoxedStrategy<String> {
    prop_oneof![
        8 => "[a-z]([-a-z0-9]{0,40}[a-z0-9])?",
        2 => "[a-z][a-z0-9]{48,60}",
        1 => "[A-Za-z0-9._-]{1,20}",
        1 => one_of(&["", "-a", "a-", "a..b", "a.b", "UPPER", "é"]),
    ]
    .boxed()
}

/// An image reference: registry, path, tag and digest in every mix, or junk.
pub fn image() -> BoxedStrategy<String> {
    let registry = one_of(&[
        "",
        "ghcr.io/",
        "registry.example.com:5000/",
        "127.0.0.1:5000/",
        "localhost/",
        "[::1]:5000/",
        "Registry.Example.com/",
        "registry-.example.com/",
    ]);
    let path = "[a-z0-9]{1,8}([._-][a-z0-9]{1,5})?(/[a-z0-9]{1,8}){0,2}";
    let tag = prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}".prop_map(|t| format!(":{t}")),
        Just(":".to_string()),
        Just(format!(":{}", "t".repeat(129))),
    ];
    let digest = prop_oneof![
        3 => Just(String::new()),
        1 => "[0-9a-f]{64}".prop_map(|d| format!("@sha256:{d}")),
        1 => "[0-9a-f]{1,20}".prop_map(|d| format!("@sha256:{d}")),
    ];
    prop_oneof![
        8 => (registry, path, tag, digest).prop_map(|(r, p, t, d)| format!("{r}{p}{t}{d}")),
        1 => one_of(&["", "UPPER/case", "a//b", "a:b:c", "busybox:", " busybox"]),
        1 => text(),
    ]
    .boxed()
}

/// An environment variable: a valid name, a reserved one, an invalid one; a short value,
/// a value from a Secret, or a value past the size limit.
pub fn env_var() -> BoxedStrategy<EnvVar> {
    let name = prop_oneof![
        6 => "[A-Za-z_][A-Za-z0-9_.-]{0,20}",
        1 => "DATAJOB_[A-Z]{1,8}",
        1 => one_of(&["", "1ABC", "A B", "A=B", "é", "-x", ".x", "x.y"]),
        1 => text(),
    ];
    let value = prop_oneof![
        6 => "[ -~]{0,40}".prop_map(Some),
        1 => Just(None),
        1 => (32_000usize..33_500).prop_map(|n| Some("v".repeat(n))),
        1 => text().prop_map(Some),
    ];
    let from_secret = (name.clone(), self::name(), "[a-z]{1,8}").prop_map(|(n, s, k)| EnvVar {
        name: n,
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: s,
                key: k,
                optional: None,
            }),
            ..Default::default()
        }),
    });
    prop_oneof![
        6 => (name, value).prop_map(|(name, value)| EnvVar {
            name,
            value,
            value_from: None,
        }),
        1 => from_secret,
    ]
    .boxed()
}

/// A pod annotation key: `[prefix/]name`, reserved prefixes, invalid ones.
pub fn annotation_key() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "([a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,2}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?",
        1 => one_of(&[
            "datajob.dev/x", "batch.kubernetes.io/x", "-bad", "a/", "/a", "Example.com/x",
            "a/b/c", "",
        ]),
        1 => "[a-z]{64,70}",
        1 => text(),
    ]
    .boxed()
}

/// An `output` location.
pub fn output() -> BoxedStrategy<String> {
    prop_oneof![
        3 => ("s3://|gs://|abfs://|abfss://|file:///", "[a-z0-9/_-]{1,20}")
            .prop_map(|(s, p)| format!("{s}{p}")),
        1 => "/[a-z0-9/_-]{0,20}",
        1 => one_of(&["s3://", "http://x", "relative/path", ""]),
        1 => text(),
    ]
    .boxed()
}

// ---- values validation accepts --------------------------------------------------

/// A five-field schedule or macro that validation accepts.
pub fn good_schedule() -> BoxedStrategy<String> {
    let field = |lo: u32, hi: u32| {
        prop_oneof![
            3 => Just("*".to_string()),
            3 => (lo..=hi).prop_map(|n| n.to_string()),
            1 => (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            1 => (1..=hi.max(2)).prop_map(|k| format!("*/{k}")),
            1 => proptest::collection::btree_set(lo..=hi, 2..4)
                .prop_map(|s| s.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
        ]
    };
    let dom_or_dow = prop_oneof![
        (field(1, 28), Just("*".to_string())),
        (Just("*".to_string()), field(0, 6)),
        (
            Just("*".to_string()),
            one_of(&["MON-FRI", "SAT,SUN", "sun", "7", "1-5"])
        ),
    ];
    prop_oneof![
        6 => (field(0, 59), field(0, 23), dom_or_dow, field(1, 12))
            .prop_map(|(m, h, (dom, dow), mon)| format!("{m} {h} {dom} {mon} {dow}")),
        1 => one_of(&["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"]),
    ]
    .boxed()
}

/// An image reference validation accepts.
pub fn good_image() -> BoxedStrategy<String> {
    (
        one_of(&[
            "",
            "ghcr.io/",
            "registry.example.com:5000/",
            "127.0.0.1:5000/",
            "localhost/",
        ]),
        "[a-z0-9]{1,8}(-[a-z0-9]{1,5})?(/[a-z0-9]{1,8}){0,2}",
        prop_oneof![
            Just(String::new()),
            "[a-z0-9][a-z0-9.-]{0,8}".prop_map(|t| format!(":{t}"))
        ],
    )
        .prop_map(|(r, p, t)| format!("{r}{p}{t}"))
        .boxed()
}

/// An environment variable validation accepts.
pub fn good_env_var() -> BoxedStrategy<EnvVar> {
    ("[A-CE-Z_][A-Z0-9_]{0,12}", "[ -~]{0,30}")
        .prop_map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            value_from: None,
        })
        .boxed()
}

/// An `output` location validation accepts.
pub fn good_output() -> BoxedStrategy<String> {
    ("s3://|gs://", "[a-z0-9]{3,8}/[a-z0-9_-]{1,12}")
        .prop_map(|(s, p)| format!("{s}{p}"))
        .boxed()
}

/// A DNS label of at most 52 characters: a DataJob, service account or input name.
pub fn good_name() -> BoxedStrategy<String> {
    "[a-z]([-a-z0-9]{0,30}[a-z0-9])?".boxed()
}

// ---- whole specs ------------------------------------------------------------------

fn maybe<T: std::fmt::Debug + Clone + 'static>(s: BoxedStrategy<T>) -> BoxedStrategy<Option<T>> {
    prop_oneof![1 => Just(None), 2 => s.prop_map(Some)].boxed()
}

/// `good` mostly (19 in 20 when `plausible`, else half the time), `bad` otherwise.
fn either<T: std::fmt::Debug + Clone + 'static>(
    plausible: bool,
    good: BoxedStrategy<T>,
    bad: BoxedStrategy<T>,
) -> BoxedStrategy<T> {
    let (g, b) = if plausible { (19, 1) } else { (1, 1) };
    prop_oneof![g => good, b => bad].boxed()
}

/// The resources: each quantity optional, a GPU count in and out of range.
pub fn resources() -> BoxedStrategy<DataJobResources> {
    (
        maybe(quantity()),
        maybe(quantity()),
        maybe(quantity()),
        maybe(prop_oneof![4 => 0i32..=2, 1 => -2i32..40].boxed()),
    )
        .prop_map(|(cpu, memory, disk, gpu)| DataJobResources {
            cpu: cpu.map(|q| q.as_str().into()),
            memory: memory.map(|q| q.as_str().into()),
            disk: disk.map(|q| q.as_str().into()),
            gpu,
        })
        .boxed()
}

/// Resources that validation accepts: plausible values in plausible units, big scratch
/// disks (generic ephemeral volumes) included.
pub fn plausible_resources() -> BoxedStrategy<DataJobResources> {
    let cpu = prop_oneof![
        (1u64..64).prop_map(|c| c.to_string()),
        (10u64..8000).prop_map(|m| format!("{m}m")),
        (1u64..40).prop_map(|c| format!("{}.5", c)),
    ];
    let memory = prop_oneof![
        (16u64..4096).prop_map(|m| format!("{m}Mi")),
        (1u64..128).prop_map(|g| format!("{g}Gi")),
        (1u64..100).prop_map(|g| format!("{g}.5G")),
        (17_000_000u64..2_000_000_000).prop_map(|b| b.to_string()),
    ];
    let disk = prop_oneof![
        (1u64..200).prop_map(|g| format!("{g}Gi")),
        (1u64..2000).prop_map(|m| format!("{m}M")),
        (1u64..4).prop_map(|t| format!("{t}Ti")),
    ];
    (
        maybe(cpu.boxed()),
        maybe(memory.boxed()),
        maybe(disk.boxed()),
        prop_oneof![4 => Just(None), 1 => (0i32..=2).prop_map(Some)],
    )
        .prop_map(|(cpu, memory, disk, gpu)| DataJobResources {
            cpu: cpu.map(|q| q.as_str().into()),
            memory: memory.map(|q| q.as_str().into()),
            disk: disk.map(|q| q.as_str().into()),
            gpu,
        })
        .boxed()
}

/// A whole DataJob spec, every field drawn from the generators above. `plausible`
/// draws each field from the values validation accepts 19 times in 20 (so that many
/// specs get as far as their children); otherwise half of them are anything.
pub fn spec(plausible: bool) -> BoxedStrategy<DataJobSpec> {
    let p = plausible;
    let durations = |good: &'static [&'static str]| either(p, one_of(good), duration());
    let strings = proptest::collection::vec("[ -~]{0,10}", 0..4);
    (
        (
            either(p, good_image(), image()),
            strings.clone(),
            strings,
            proptest::collection::vec(either(p, good_env_var(), env_var()), 0..4),
            maybe(either(p, good_schedule(), schedule())),
            maybe(either(p, one_of(&["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]), time_zone())),
            either(p, plausible_resources(), resources()),
            maybe(durations(&["30s", "10m", "1h", "2h", "1h30m", "1d"])),
        ),
        (
            proptest::collection::btree_map(
                either(p, one_of(&["sidecar.istio.io/inject", "example.com/team", "owner"]), annotation_key()),
                "[ -~]{0,10}",
                0..3,
            ),
            maybe(durations(&["5m", "30m"])),
            maybe(either(p, (0i32..=10).boxed(), (-3i32..20).boxed())),
            maybe(any::<bool>().boxed()),
            maybe(either(p, good_name(), name())),
            maybe(either(p, (1i64..100_000).boxed(), any::<i64>().boxed())),
            maybe(either(p, (0i32..=50).boxed(), (-3i32..80).boxed())),
            prop_oneof![3 => Just(Vec::new()), 1 => proptest::collection::vec(either(p, good_name(), name()), 1..3)],
            maybe(either(p, good_output(), output())),
        ),
    )
        .prop_map(
            |(
                (image, command, args, env, schedule, time_zone, resources, deadline),
                (
                    pod_annotations,
                    pending_timeout,
                    retries,
                    suspend,
                    service_account_name,
                    run_as_user,
                    history,
                    inputs,
                    output,
                ),
            )| DataJobSpec {
                image,
                command,
                args,
                env,
                schedule,
                time_zone,
                resources,
                deadline,
                pod_annotations: pod_annotations.into_iter().collect::<BTreeMap<_, _>>(),
                pending_timeout,
                retries,
                suspend,
                service_account_name,
                run_as_user,
                history,
                inputs,
                output,
                ..Default::default()
            },
        )
        .boxed()
}

/// A DataJob named and namespaced as the apiserver would hand it over (the name within
/// the schema's 52 characters most of the time).
pub fn datajob(plausible: bool) -> BoxedStrategy<DataJob> {
    (either(plausible, good_name(), name()), spec(plausible))
        .prop_map(|(name, spec)| {
            let mut dj = DataJob::new(&name, spec);
            dj.metadata.namespace = Some("analytics".into());
            dj.metadata.uid = Some("00000000-0000-4000-8000-000000000001".into());
            dj
        })
        .boxed()
}

/// A NodeGroup: a shape (sometimes unreadable), labels, taints, sizes, price, provider.
pub fn node_group() -> BoxedStrategy<NodeGroup> {
    let cpu = prop_oneof![
        4 => (1u64..128).prop_map(|c| c.to_string()),
        1 => quantity(),
    ];
    let memory = prop_oneof![
        4 => (1u64..1024).prop_map(|g| format!("{g}Gi")),
        1 => quantity(),
    ];
    let taint = (
        "[a-z]{1,6}(\\.io/[a-z]{1,6})?",
        maybe("[a-z]{1,5}".boxed()),
        one_of(&["NoSchedule", "PreferNoSchedule", "NoExecute", "Sometimes"]),
    )
        .prop_map(|(key, value, effect)| NodeTaint { key, value, effect });
    (
        (
            "[a-z]([a-z0-9-]{0,10}[a-z0-9])?",
            cpu,
            memory,
            maybe(prop_oneof![3 => 0i32..=8, 1 => -1i32..3].boxed()),
            maybe(
                prop_oneof![3 => (1u64..2000).prop_map(|g| format!("{g}Gi")), 1 => quantity()]
                    .boxed(),
            ),
        ),
        (
            proptest::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{1,6}", 0..3),
            proptest::collection::vec(taint, 0..2),
            maybe(prop_oneof![3 => 0i32..3, 1 => -2i32..5].boxed()),
            prop_oneof![3 => 0i32..20, 1 => -2i32..3],
            maybe(prop_oneof![3 => "[0-9]{1,2}\\.[0-9]{1,3}", 1 => text()].boxed()),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((name, cpu, memory, gpu, eph), (labels, taints, min, max, price, kwok))| {
                let spec = NodeGroupSpec {
                    node: NodeShape {
                        cpu: cpu.as_str().into(),
                        memory: memory.as_str().into(),
                        gpu,
                        ephemeral_storage: eph.map(|e| e.as_str().into()),
                    },
                    labels,
                    taints,
                    min_size: min,
                    max_size: max,
                    price_per_hour: price,
                    provider: Provider {
                        kwok: kwok.then_some(KwokProvider { boot_delay: None }),
                        r#static: (!kwok).then_some(StaticProvider {}),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                NodeGroup::new(&name, spec)
            },
        )
        .boxed()
}

// ---- specs at the schema's bounds ---------------------------------------------------

/// `name` with its character at `at` (modulo its length) replaced by `with`: a name one
/// edit away, or the same name when `with` is already there.
fn one_off(name: &str, at: usize, with: char) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    if !chars.is_empty() {
        let i = at % chars.len();
        chars[i] = with;
    }
    chars.into_iter().collect()
}

/// A DataJob the CRD admits that costs validation the most: every list and map at (or
/// near) its `maxItems`/`maxProperties`, strings at their `maxLength`, and inputs that
/// are near misses of one another (repeats included) and of the namespace's DataJobs.
/// With it, the names of the namespace's DataJobs: 2000, each one edit from an input.
pub fn maximal_datajob() -> BoxedStrategy<(DataJob, Vec<String>)> {
    use datajob_api::bounds::*;
    let short = "[ -~]{0,64}";
    let stem = "[a-z][a-z0-9-]{30,44}[a-z0-9]";
    let inputs = (
        stem,
        proptest::collection::vec((0usize..64, proptest::char::range('a', 'z')), MAX_INPUTS),
    )
        .prop_map(|(stem, edits)| {
            edits
                .into_iter()
                .map(|(at, c)| one_off(&stem, at, c))
                .collect::<Vec<_>>()
        });
    (
        (
            "[a-z0-9]{40}(/[a-z0-9]{40}){4}:[a-z0-9]{1,40}",
            proptest::collection::vec(short, MAX_COMMAND_ITEMS),
            proptest::collection::vec(short, MAX_ARGS_ITEMS - 1),
            proptest::collection::vec(
                prop_oneof![8 => good_env_var(), 1 => env_var()],
                MAX_ENV_ITEMS,
            ),
            prop_oneof![good_schedule(), "[0-9*/,-]{100,128}"],
            "[A-Za-z_/+-]{40,64}",
            "([0-9]{1,5}[smhd]){1,6}",
        ),
        (
            proptest::collection::btree_map(
                annotation_key(),
                short,
                MAX_POD_ANNOTATIONS / 2..=MAX_POD_ANNOTATIONS,
            ),
            proptest::collection::btree_map(
                "[a-z][a-z0-9_-]{0,39}",
                "[ -~]{0,1024}",
                MAX_PARAMS / 2..=MAX_PARAMS,
            ),
            "[a-z0-9]([a-z0-9.-]{200,250}[a-z0-9])",
            "s3://[a-z0-9]{3,60}/[a-z0-9/_-]{900,1000}",
            "[ -~]{128}",
            inputs,
            proptest::char::range('a', 'z'),
        ),
    )
        .prop_map(
            |(
                (image, command, mut args, env, schedule, time_zone, duration),
                (pod_annotations, params, account, output, owner, inputs, c),
            )| {
                // One argument at its longest.
                args.push("a".repeat(MAX_ARG_LEN));
                let namespace = (0..2000)
                    .map(|i| one_off(&format!("{}{}", inputs[i % inputs.len()], i % 10), i, c))
                    .collect();
                let spec = DataJobSpec {
                    image,
                    command,
                    args,
                    env,
                    schedule: Some(schedule),
                    time_zone: Some(time_zone),
                    deadline: Some(duration.clone()),
                    pending_timeout: Some(duration.clone()),
                    expect_by: Some(duration),
                    pod_annotations,
                    params,
                    service_account_name: Some(account),
                    output: Some(output),
                    owner: Some(owner),
                    inputs,
                    ..Default::default()
                };
                let mut dj = DataJob::new("maximal", spec);
                dj.metadata.namespace = Some("analytics".into());
                (dj, namespace)
            },
        )
        .boxed()
}
