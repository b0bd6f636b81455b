//! Runs with parameters: what `spec.params` may declare, what a trigger may give, the
//! variables a run's container gets, and the run id that tells a run with parameters
//! apart from the scheduled run of the same logical time.
//!
//! A trigger with arguments is two annotations on the DataJob, written in one patch:
//! `datajob.dev/trigger` (the logical time) and `datajob.dev/trigger-args` (a JSON
//! object of strings). The run's Job records the arguments it was given in
//! `datajob.dev/params`, which is where its run record reads them back.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::labels;
use crate::problem::Problem;

/// Parameter names to values.
pub type Args = BTreeMap<String, String>;

/// The most parameters a DataJob declares.
pub const MAX_PARAMS: usize = 32;
/// The longest parameter name.
pub const MAX_NAME_LEN: usize = 40;
/// The longest value a parameter takes (default or given).
pub const MAX_VALUE_LEN: usize = 1024;
/// The longest name of a DataJob with parameters: its runs with parameters are named
/// `<name>-<minutes since the epoch>-<8 hex digits>`, within the 63 characters of a label.
pub const MAX_DATAJOB_NAME_LEN: usize = 45;
/// What the variable of parameter `day` is called: `DATAJOB_ARG_DAY`.
pub const ENV_PREFIX: &str = "DATAJOB_ARG_";

/// `DATAJOB_ARG_FROM_DATE` for parameter `from-date` (or `from_date`, `fromDate` →
/// `DATAJOB_ARG_FROMDATE`).
pub fn env_name(name: &str) -> String {
    let mut s = String::from(ENV_PREFIX);
    s.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

fn name_problem(field: &str, name: &str) -> Option<Problem> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !starts_with_letter || !rest_ok || name.len() > MAX_NAME_LEN {
        return Some(Problem::new(
            field,
            name,
            "is not a valid parameter name",
            format!(
                "start with a letter and use only letters, digits, '_' and '-', at most {MAX_NAME_LEN} characters"
            ),
        ));
    }
    None
}

fn value_problem(field: &str, value: &str) -> Option<Problem> {
    if value.len() > MAX_VALUE_LEN {
        return Some(Problem::new(
            field,
            format!("<{} characters>", value.chars().count()),
            format!("is longer than the limit of {MAX_VALUE_LEN} bytes"),
            "pass a short value (a date, a flag, a path) and keep data in the input or a ConfigMap",
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Some(Problem::new(
            field,
            value,
            format!("has the control character {c:?}, which is not allowed"),
            "use printable characters only: no newlines, tabs or escape codes",
        ));
    }
    None
}

/// What is wrong with `spec.params` of DataJob `datajob`: names, values, how many, names
/// that map to the same variable, and a DataJob name too long for the run ids.
pub fn check_declared(datajob: &str, params: &Args) -> Vec<Problem> {
    let mut p = Vec::new();
    if params.is_empty() {
        return p;
    }
    if params.len() > MAX_PARAMS {
        p.push(Problem::new(
            "spec.params",
            format!("<{} parameters>", params.len()),
            format!("declares more than {MAX_PARAMS} parameters"),
            "pass related settings as one parameter, or read them from a ConfigMap",
        ));
    }
    if datajob.len() > MAX_DATAJOB_NAME_LEN {
        p.push(Problem::new(
            "metadata.name",
            datajob,
            format!("is {} characters, and a DataJob with spec.params may have at most {MAX_DATAJOB_NAME_LEN}: the run id of a run with parameters adds 9 characters", datajob.len()),
            format!("use a name of at most {MAX_DATAJOB_NAME_LEN} characters"),
        ));
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (name, default) in params {
        let field = format!("spec.params.{name}");
        if let Some(problem) = name_problem("spec.params", name) {
            p.push(problem);
            continue;
        }
        p.extend(value_problem(&field, default));
        if let Some(first) = seen.insert(env_name(name), name) {
            p.push(Problem::new(
                "spec.params",
                name,
                format!(
                    "gives the same variable {} as parameter {first:?}",
                    env_name(name)
                ),
                "keep one of the two names",
            ));
        }
    }
    p
}

/// What is wrong with the arguments `given` to a run of a DataJob that declares
/// `declared`: names it does not declare (with the list it does) and values that are
/// too long or not printable. Each problem names the parameter.
pub fn check_given(declared: &Args, given: &Args) -> Vec<Problem> {
    let mut p = Vec::new();
    for (name, value) in given {
        let field = format!("parameter {name}");
        if !declared.contains_key(name) {
            let fix = match declared.is_empty() {
                true => "this DataJob declares no parameters: add the name to spec.params (with its default) and apply it first".to_string(),
                false => format!(
                    "use one of the declared parameters: {}",
                    declared.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            p.push(Problem::new(
                field,
                value,
                "is not declared in the DataJob's spec.params",
                fix,
            ));
            continue;
        }
        p.extend(value_problem(&field, value));
    }
    p
}

/// What is wrong with a trigger, given `given`, of a DataJob with `spec`: [`check_given`],
/// and arguments for a DataJob that publishes (`spec.output`), whose run with
/// parameters would publish over the output of its logical time.
pub fn check_trigger(spec: &datajob_api::DataJobSpec, given: &Args) -> Vec<Problem> {
    let mut p = check_given(&spec.params, given);
    if let (Some(output), Some((name, value))) = (&spec.output, given.iter().next()) {
        p.push(Problem::new(
            format!("parameter {name}"),
            value,
            format!("is given to a DataJob that publishes to {output}: a run with parameters would replace the published output of its logical time"),
            "trigger without --arg, or run the other arguments as a DataJob of its own (with another spec.output)",
        ));
    }
    p
}

/// `KEY=VALUE`, as `--arg` takes it.
pub fn parse_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "{s:?} is not KEY=VALUE: write e.g. --arg day=2026-11-01"
        )),
    }
}

/// Eight hex digits that stand for `args` (their SHA-256, of the sorted pairs).
pub fn hash(args: &Args) -> String {
    let mut h = Sha256::new();
    for (k, v) in args {
        // Lengths first: no two different sets of pairs hash the same text.
        h.update(format!("{}:{k}{}:{v}", k.len(), v.len()).as_bytes());
    }
    h.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The run id of a run of `datajob` at `logical_time` given `args`: the scheduled run's
/// id without arguments, and that id with `-<hash>` with them, so a run with parameters
/// never replaces nor doubles the run of the same logical time.
pub fn run_id(datajob: &str, logical_time: DateTime<Utc>, args: &Args) -> String {
    let id = labels::run_id(datajob, logical_time);
    match args.is_empty() {
        true => id,
        false => format!("{id}-{}", hash(args)),
    }
}

/// What `status.lastTrigger` records for a trigger of `time` (the annotation's value)
/// with `args`: the time alone without arguments, so each trigger acts once.
pub fn trigger_key(time: &str, args: &Args) -> String {
    match args.is_empty() {
        true => time.to_string(),
        false => format!("{time} args={}", hash(args)),
    }
}

/// The arguments of `datajob.dev/trigger-args` or `datajob.dev/params`: a JSON object of
/// strings.
pub fn parse_annotation(value: &str) -> Result<Args, String> {
    serde_json::from_str(value).map_err(|e| {
        format!("{value:?} is not a JSON object of strings ({e}): write it as {{\"day\":\"2026-11-01\"}}, or use `kubectl datajob trigger NAME --arg day=2026-11-01`")
    })
}

/// The annotation text of `args`.
pub fn annotation(args: &Args) -> String {
    serde_json::to_string(args).unwrap_or_default()
}

/// The variables of a run: each declared parameter, with the value given or its default.
pub fn env(declared: &Args, given: &Args) -> Vec<(String, String)> {
    declared
        .iter()
        .map(|(name, default)| {
            let value = given.get(name).unwrap_or(default);
            (env_name(name), value.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Args {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_are_named_for_their_parameter() {
        assert_eq!(env_name("day"), "DATAJOB_ARG_DAY");
        assert_eq!(env_name("from-date"), "DATAJOB_ARG_FROM_DATE");
        assert_eq!(env_name("dryRun"), "DATAJOB_ARG_DRYRUN");
        let declared = args(&[("day", "yesterday"), ("mode", "full")]);
        assert_eq!(
            env(&declared, &args(&[("day", "2026-11-01")])),
            vec![
                ("DATAJOB_ARG_DAY".into(), "2026-11-01".into()),
                ("DATAJOB_ARG_MODE".into(), "full".into())
            ]
        );
    }

    #[test]
    fn a_declaration_is_checked() {
        assert!(check_declared("nightly", &args(&[("day", ""), ("from-date", "x")])).is_empty());
        let p = check_declared("nightly", &args(&[("1day", "")]));
        assert_eq!(p.len(), 1);
        assert!(
            p[0].to_string()
                .contains("spec.params \"1day\" is not a valid parameter name")
        );
        let p = check_declared("nightly", &args(&[("a-b", ""), ("a_b", "")]));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].problem.contains("DATAJOB_ARG_A_B"), "{p:?}");
        let p = check_declared("nightly", &args(&[("day", "a\nb")]));
        assert_eq!(p[0].field, "spec.params.day");
        assert!(p[0].problem.contains("control character"), "{p:?}");
        let long = "x".repeat(MAX_DATAJOB_NAME_LEN + 1);
        let p = check_declared(&long, &args(&[("day", "")]));
        assert_eq!(p[0].field, "metadata.name");
        // Without parameters a long name is fine here (its own limit is checked elsewhere).
        assert!(check_declared(&long, &Args::new()).is_empty());
        let many: Args = (0..=MAX_PARAMS)
            .map(|i| (format!("p{i}"), String::new()))
            .collect();
        assert!(
            check_declared("nightly", &many)[0]
                .problem
                .contains("more than 32")
        );
    }

    #[test]
    fn arguments_must_be_declared_and_printable() {
        let declared = args(&[("day", ""), ("mode", "full")]);
        assert!(check_given(&declared, &args(&[("day", "2026-11-01")])).is_empty());
        let p = check_given(&declared, &args(&[("region", "eu")]));
        assert_eq!(
            p[0].to_string(),
            "parameter region \"eu\" is not declared in the DataJob's spec.params; use one of the declared parameters: day, mode"
        );
        let p = check_given(&Args::new(), &args(&[("day", "x")]));
        assert!(p[0].fix.contains("declares no parameters"), "{p:?}");
        let p = check_given(&declared, &args(&[("day", &"9".repeat(MAX_VALUE_LEN + 1))]));
        assert!(
            p[0].to_string()
                .starts_with("parameter day \"<1025 characters>\" is longer"),
            "{p:?}"
        );
        let p = check_given(&declared, &args(&[("mode", "a\u{1b}[31m")]));
        assert_eq!(p[0].field, "parameter mode");
        let spec = datajob_api::DataJobSpec {
            params: declared.clone(),
            output: Some("pvc://lake/daily".into()),
            ..Default::default()
        };
        let p = check_trigger(&spec, &args(&[("day", "1")]));
        assert!(
            p.len() == 1 && p[0].problem.contains("would replace the published output"),
            "{p:?}"
        );
        assert!(check_trigger(&spec, &Args::new()).is_empty());
    }

    #[test]
    fn a_run_with_arguments_has_an_id_of_its_own() {
        let t = labels::parse_rfc3339("2026-11-25T03:00:00Z").unwrap();
        assert_eq!(run_id("nightly", t, &Args::new()), "nightly-29926260");
        let a = run_id("nightly", t, &args(&[("day", "2026-11-01")]));
        let b = run_id("nightly", t, &args(&[("day", "2026-11-02")]));
        assert!(a.starts_with("nightly-29926260-") && a.len() == "nightly-29926260-".len() + 8);
        assert_ne!(a, b);
        assert_eq!(
            a,
            run_id("nightly", t, &args(&[("day", "2026-11-01")])),
            "deterministic"
        );
        // Pairs that would concatenate alike hash apart.
        assert_ne!(hash(&args(&[("a", "bc")])), hash(&args(&[("ab", "c")])));
        let longest = "x".repeat(MAX_DATAJOB_NAME_LEN);
        let far = labels::parse_rfc3339("2099-12-31T23:59:00Z").unwrap();
        assert!(run_id(&longest, far, &args(&[("d", "1")])).len() <= 63);
        assert_eq!(
            trigger_key("2026-11-25T03:00:00Z", &Args::new()),
            "2026-11-25T03:00:00Z"
        );
        assert_ne!(
            trigger_key("2026-11-25T03:00:00Z", &args(&[("day", "1")])),
            trigger_key("2026-11-25T03:00:00Z", &args(&[("day", "2")]))
        );
    }

    #[test]
    fn arguments_are_parsed() {
        assert_eq!(
            parse_arg("day=2026-11-01"),
            Ok(("day".into(), "2026-11-01".into()))
        );
        assert_eq!(parse_arg("q=a=b"), Ok(("q".into(), "a=b".into())));
        assert_eq!(parse_arg("flag="), Ok(("flag".into(), String::new())));
        assert!(parse_arg("day").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_arg("=x").is_err());
        let a = args(&[("day", "2026-11-01")]);
        assert_eq!(parse_annotation(&annotation(&a)), Ok(a));
        assert!(
            parse_annotation("[1]")
                .unwrap_err()
                .contains("JSON object of strings")
        );
    }
}
