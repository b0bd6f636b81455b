//! `kubectl datajob <TAB>`: kubectl (1.26+) completes a plugin's arguments by running
//! `kubectl_complete-datajob __complete ARGS… WORD` and reading Cobra's protocol back: one
//! candidate per line (`candidate<TAB>description`), then `:<directive>`. The
//! `kubectl_complete-datajob` executable shipped beside the plugin runs
//! `kubectl-datajob __complete …`, answered here: sub-commands, their flags, the values of
//! `-o` and `--engine`, namespaces for `-n`, and DataJob names where a command takes one
//! (read from the cluster within a few seconds; nothing when it cannot be reached).
use std::time::Duration;

use clap::CommandFactory;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};

use crate::Cli;
use crate::cluster::{ClusterArgs, load_config};
use datajob_api::DataJob;

/// Cobra's `ShellCompDirectiveNoFileComp`: do not fall back to file names.
const NO_FILES: u8 = 4;
/// Cobra's `ShellCompDirectiveDefault`: the shell may complete file names.
const FILES: u8 = 0;

/// The sub-commands that take a DataJob's name as their first argument.
const TAKES_DATAJOB: [&str; 6] = ["status", "runs", "logs", "trigger", "backfill", "describe"];

/// What to offer for the word being completed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// These candidates (with descriptions).
    Words(Vec<(String, String)>, u8),
    /// DataJob names starting with the word, in the namespace `-n` names (if any).
    DataJobs { namespace: Option<String> },
    /// Namespace names.
    Namespaces,
}

/// Decides what to complete from the words before the cursor and the word under it.
pub(crate) fn want(before: &[String], word: &str) -> Want {
    let root = Cli::command();
    let mut sub: Option<clap::Command> = None;
    let mut positionals = 0;
    let mut namespace = None;
    let mut i = 0;
    while i < before.len() {
        let w = &before[i];
        if let Some(flag) = w.strip_prefix('-') {
            let takes_value = flag_takes_value(&root, sub.as_ref(), flag) && !w.contains('=');
            if takes_value {
                if matches!(w.as_str(), "-n" | "--namespace") {
                    namespace = before.get(i + 1).cloned();
                }
                i += 1;
            }
        } else if sub.is_none() {
            sub = root.find_subcommand(w).cloned();
        } else {
            positionals += 1;
        }
        i += 1;
    }
    if let Some(prev) = before
        .last()
        .filter(|p| p.starts_with('-') && !p.contains('='))
    {
        let flag = prev.trim_start_matches('-');
        if flag_takes_value(&root, sub.as_ref(), flag) {
            return match flag {
                "n" | "namespace" => Want::Namespaces,
                "o" | "output" => words(["json", "yaml", "name"].map(|v| (v, "")), word),
                "engine" => words(["docker", "podman", "host"].map(|v| (v, "")), word),
                "f" | "file" | "kubeconfig" => Want::Words(Vec::new(), FILES),
                _ => Want::Words(Vec::new(), NO_FILES),
            };
        }
    }
    match sub {
        None if word.starts_with('-') => flags(&root, word),
        None => {
            let subs: Vec<(String, String)> = root
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| (s.get_name().to_string(), about(s)))
                .collect();
            filtered(subs, word)
        }
        Some(s) if word.starts_with('-') => {
            let mut all = flags(&s, word);
            if let (Want::Words(a, _), Want::Words(b, _)) = (&mut all, flags(&root, word)) {
                a.extend(b);
            }
            all
        }
        Some(s) if positionals == 0 && TAKES_DATAJOB.contains(&s.get_name()) => {
            Want::DataJobs { namespace }
        }
        Some(s) if s.get_name() == "completion" && positionals == 0 => words(
            ["bash", "zsh", "fish", "powershell", "elvish"].map(|v| (v, "")),
            word,
        ),
        Some(_) => Want::Words(Vec::new(), NO_FILES),
    }
}

fn about(c: &clap::Command) -> String {
    c.get_about().map(|a| a.to_string()).unwrap_or_default()
}

fn words<const N: usize>(all: [(&str, &str); N], word: &str) -> Want {
    filtered(
        all.iter()
            .map(|(w, d)| (w.to_string(), d.to_string()))
            .collect(),
        word,
    )
}

fn filtered(all: Vec<(String, String)>, word: &str) -> Want {
    Want::Words(
        all.into_iter()
            .filter(|(w, _)| w.starts_with(word))
            .collect(),
        NO_FILES,
    )
}

/// The long flags of `c` (`--name`) starting with `word`.
fn flags(c: &clap::Command, word: &str) -> Want {
    let all = c
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let long = a.get_long()?;
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            Some((format!("--{long}"), help))
        })
        .collect();
    filtered(all, word)
}

/// Whether `flag` (without its dashes) takes a value, on the sub-command or the root.
fn flag_takes_value(root: &clap::Command, sub: Option<&clap::Command>, flag: &str) -> bool {
    let flag = flag.trim_start_matches('-');
    sub.into_iter().chain([root]).any(|c| {
        c.get_arguments().any(|a| {
            let named = a.get_long() == Some(flag)
                || (flag.len() == 1 && a.get_short().map(String::from).as_deref() == Some(flag));
            named && a.get_action().takes_values()
        })
    })
}

/// Cobra's answer: the candidates, then the directive.
pub(crate) fn render(candidates: &[(String, String)], directive: u8) -> String {
    let mut out = String::new();
    for (w, d) in candidates {
        let d = d.lines().next().unwrap_or_default();
        if d.is_empty() {
            out.push_str(&format!("{w}\n"));
        } else {
            out.push_str(&format!("{w}\t{d}\n"));
        }
    }
    out.push_str(&format!(":{directive}\n"));
    out
}

/// Answers `kubectl-datajob __complete ARGS… WORD` on stdout; never fails.
pub async fn run(args: &[String]) {
    let (word, before) = match args.split_last() {
        Some((w, b)) => (w.clone(), b.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let (candidates, directive) = match want(&before, &word) {
        Want::Words(c, d) => (c, d),
        Want::DataJobs { namespace } => (names(&before, namespace, &word, false).await, NO_FILES),
        Want::Namespaces => (names(&before, None, &word, true).await, NO_FILES),
    };
    print!("{}", render(&candidates, directive));
}

/// DataJob (or namespace) names starting with `word`, read from the cluster the other
/// flags point at; none when it does not answer within 3 seconds.
async fn names(
    before: &[String],
    namespace: Option<String>,
    word: &str,
    namespaces: bool,
) -> Vec<(String, String)> {
    let cluster = cluster_flags(before);
    let listed = tokio::time::timeout(Duration::from_secs(3), async {
        let mut config = load_config(&cluster).await.ok()?;
        config.connect_timeout = Some(Duration::from_secs(2));
        let ns = namespace.unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).ok()?;
        let items: Vec<String> = if namespaces {
            let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
            let l = api.list_metadata(&ListParams::default()).await.ok()?;
            l.items.iter().map(|m| m.name_any()).collect()
        } else {
            let api: Api<DataJob> = Api::namespaced(client, &ns);
            let l = api.list_metadata(&ListParams::default()).await.ok()?;
            l.items
                .iter()
                .map(|m: &PartialObjectMeta<DataJob>| m.name_any())
                .collect()
        };
        Some(items)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    listed
        .into_iter()
        .filter(|n| n.starts_with(word))
        .map(|n| (n, String::new()))
        .collect()
}

/// The connection flags among the words (`--context`, `--kubeconfig`, …), so names
/// come from the cluster the command would talk to.
fn cluster_flags(before: &[String]) -> ClusterArgs {
    let mut c = ClusterArgs::default();
    let mut it = before.iter().peekable();
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (w.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match flag {
            "--context" => c.context = value(),
            "--kubeconfig" => c.kubeconfig = value().map(Into::into),
            "--cluster" => c.cluster = value(),
            "--user" => c.user = value(),
            "--as" => c.as_user = value(),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn offered(before: &[&str], word: &str) -> Vec<String> {
        match want(&w(before), word) {
            Want::Words(c, _) => c.into_iter().map(|(w, _)| w).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn completes_commands_flags_values_and_names() {
        assert_eq!(offered(&[], "st"), ["status"]);
        assert!(offered(&[], "").contains(&"backfill".to_string()));
        assert_eq!(
            want(&w(&["status"]), ""),
            Want::DataJobs { namespace: None }
        );
        assert_eq!(
            want(&w(&["-n", "analytics", "logs"]), "ch"),
            Want::DataJobs {
                namespace: Some("analytics".into())
            }
        );
        assert_eq!(
            want(&w(&["runs", "--namespace", "etl"]), ""),
            Want::DataJobs {
                namespace: Some("etl".into())
            }
        );
        // After the name, nothing more is a DataJob.
        assert_eq!(offered(&["runs", "churn"], ""), Vec::<String>::new());
        assert_eq!(offered(&["status", "-o"], ""), ["json", "yaml", "name"]);
        assert_eq!(offered(&["run", "--engine"], "p"), ["podman"]);
        assert_eq!(want(&w(&["status", "-n"]), ""), Want::Namespaces);
        let f = offered(&["trigger"], "--a");
        assert!(
            f.contains(&"--arg".to_string()) && f.contains(&"--as".to_string()),
            "{f:?}"
        );
        assert_eq!(offered(&["completion"], "z"), ["zsh"]);
        assert!(matches!(
            want(&w(&["plan", "-f"]), ""),
            Want::Words(_, FILES)
        ));
    }

    #[test]
    fn renders_cobras_protocol() {
        assert_eq!(
            render(
                &[
                    ("status".into(), "Show the state\nmore".into()),
                    ("x".into(), String::new())
                ],
                4
            ),
            "status\tShow the state\nx\n:4\n"
        );
        assert_eq!(render(&[], 0), ":0\n");
    }

    #[test]
    fn connection_flags_among_the_words() {
        let c = cluster_flags(&w(&["--context", "prod", "--kubeconfig=/k", "status"]));
        assert_eq!(c.context.as_deref(), Some("prod"));
        assert_eq!(c.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
    }
}
