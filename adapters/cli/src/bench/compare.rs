//! `vserv bench --compare OLD_BINARY ...`: the same benchmark run by an older `vserv` binary
//! and by this one, interleaved round by round (old, new; then new, old; ...) so that a
//! noisy, shared machine weighs on both alike, and every numeric figure of the two JSON
//! reports printed side by side as medians with the ratio new/old. `vserv bench burst
//! --runtimes` pairs this binary's runs against a blocking and a smol server the same way
//! (ratio smol/blocking).
//!
//! Each run is a child process `BINARY bench --json WHAT ARGS...` with this invocation's
//! arguments minus `--compare`, `--rounds`, `--runtimes` and `--json` (and, for the
//! runtimes, minus `--runtime`, which each side sets); a run that fails stops the
//! comparison with its status and standard error.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

/// Whether a bigger value of a figure is better, judged from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Better {
    Higher,
    Lower,
}

/// One figure of both reports.
#[derive(Debug, Serialize)]
struct Figure {
    /// Its path in the report's JSON (`live_saturating.latency.p50_us`).
    name: String,
    /// Median over the first side's rounds (the old binary, or the blocking server).
    old: f64,
    /// Median over the second side's rounds (this binary, or the smol server).
    new: f64,
    /// `new / old` (absent when `old` is 0).
    ratio: Option<f64>,
    /// Which way is better, when the name says.
    better: Option<Better>,
}

/// One side of a comparison: a binary and the arguments added after the shared ones.
#[derive(Debug, Serialize)]
struct Side {
    /// What the side is called in the table (`old`, `new`, `blocking`, `smol`).
    label: String,
    binary: PathBuf,
    extra_args: Vec<String>,
}

/// The comparison report.
#[derive(Debug, Serialize)]
struct Comparison {
    old: Side,
    new: Side,
    rounds: u32,
    args: Vec<String>,
    figures: Vec<Figure>,
}

/// Runs the benchmark named by this process's own arguments `rounds` times with the older
/// binary `old` and with this one, interleaved, and prints the comparison (a table, or one
/// JSON object with `json`).
pub fn run(old: &Path, rounds: u32, json: bool) -> anyhow::Result<()> {
    if !old.is_file() {
        bail!("--compare: {} is not a file", old.display());
    }
    let new = std::env::current_exe().context("finding this binary")?;
    let args = passed_through(std::env::args_os().skip(1), &[])?;
    let side = |label: &str, binary: &Path| Side {
        label: label.to_owned(),
        binary: binary.to_path_buf(),
        extra_args: Vec::new(),
    };
    run_sides(side("old", old), side("new", &new), args, rounds, json)
}

/// Runs the benchmark named by this process's own arguments (`vserv bench burst ...`)
/// `rounds` times against a blocking and against a smol server, interleaved, and prints
/// the comparison, smol being the "new" side.
pub fn run_runtimes(rounds: u32, json: bool) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("finding this binary")?;
    let args = passed_through(std::env::args_os().skip(1), &["--runtime"])?;
    let side = |runtime: &str| Side {
        label: runtime.to_owned(),
        binary: binary.clone(),
        extra_args: vec!["--runtime".to_owned(), runtime.to_owned()],
    };
    run_sides(side("blocking"), side("smol"), args, rounds, json)
}

/// Runs `args` on both sides `rounds` times, interleaved, and prints the comparison.
fn run_sides(
    old: Side,
    new: Side,
    args: Vec<OsString>,
    rounds: u32,
    json: bool,
) -> anyhow::Result<()> {
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut reports: [Vec<BTreeMap<String, f64>>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Alternate which side goes first, so neither always runs on a warmer machine.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let side = if which == 0 { &old } else { &new };
            eprintln!(
                "round {}/{rounds}: {} {} {}",
                round + 1,
                side.label,
                side.binary.display(),
                side.extra_args.join(" ")
            );
            reports[which].push(run_once(&side.binary, &args, &side.extra_args)?);
        }
    }
    let comparison = Comparison {
        old,
        new,
        rounds,
        args: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        figures: figures(&reports[0], &reports[1]),
    };
    if json {
        let text = serde_json::to_string(&comparison).context("encoding the comparison")?;
        println!("{text}");
    } else {
        print!("{}", table(&comparison));
    }
    Ok(())
}

/// The arguments after `bench`, without the comparison's own options, `--json` and the
/// options in `set_by_sides` (each with its value).
fn passed_through(
    args: impl Iterator<Item = OsString>,
    set_by_sides: &[&str],
) -> anyhow::Result<Vec<OsString>> {
    let mut args = args.skip_while(|a| a != "bench").skip(1);
    let with_value: Vec<&str> = ["--compare", "--rounds"]
        .into_iter()
        .chain(set_by_sides.iter().copied())
        .collect();
    let mut kept = Vec::new();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if with_value.contains(&text.as_ref()) {
            if args.next().is_none() {
                bail!("{text} needs a value");
            }
        } else if with_value
            .iter()
            .any(|o| text.strip_prefix(o).is_some_and(|v| v.starts_with('=')))
            || text == "--json"
            || text == "--runtimes"
        {
        } else {
            kept.push(arg);
        }
    }
    Ok(kept)
}

/// One run of `binary bench --json ARGS EXTRA`, its report flattened to numeric figures.
fn run_once(
    binary: &Path,
    args: &[OsString],
    extra: &[String],
) -> anyhow::Result<BTreeMap<String, f64>> {
    let output = Command::new(binary)
        .arg("bench")
        .arg("--json")
        .args(args)
        .args(extra)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} bench failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{} printed no report", binary.display()))?;
    let value: Value = serde_json::from_str(line)
        .with_context(|| format!("{} printed a report that is not JSON", binary.display()))?;
    let mut figures = BTreeMap::new();
    flatten("", &value, &mut figures);
    Ok(figures)
}

/// Every number in `value` under its dotted path, leaving out the machine description and
/// the targets (fixed numbers, not measurements).
fn flatten(path: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
    let last = path.rsplit('.').next().unwrap_or(path);
    if path == "machine" || last.starts_with("target") {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(path.to_owned(), x);
            }
        }
        Value::Object(map) => {
            for (key, v) in map {
                flatten(&join(key), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&join(&i.to_string()), v, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// The figures found in every round of both binaries, as medians and ratios.
fn figures(old: &[BTreeMap<String, f64>], new: &[BTreeMap<String, f64>]) -> Vec<Figure> {
    let Some(first) = old.first() else {
        return Vec::new();
    };
    first
        .keys()
        .filter_map(|name| {
            let old = median(old.iter().map(|r| r.get(name).copied()).collect())?;
            let new = median(new.iter().map(|r| r.get(name).copied()).collect())?;
            Some(Figure {
                name: name.clone(),
                old,
                new,
                ratio: (old != 0.0).then(|| new / old),
                better: better(name),
            })
        })
        .collect()
}

/// The median of `values`, if every round reported one.
fn median(values: Vec<Option<f64>>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().collect::<Option<_>>()?;
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Rates are better higher; latencies, times and memory lower; anything else unjudged.
fn better(name: &str) -> Option<Better> {
    let last = name.rsplit('.').next().unwrap_or(name);
    if ["per_s", "mb_s", "_per_sec"]
        .iter()
        .any(|s| last.ends_with(s))
        || last == "completed"
    {
        Some(Better::Higher)
    } else if [
        "_us", "_ms", "_kib", "_mib", "rss", "failures", "refused", "_ns",
    ]
    .iter()
    .any(|s| last.ends_with(s))
        || last.contains("_us_per_")
    {
        Some(Better::Lower)
    } else {
        None
    }
}

fn table(c: &Comparison) -> String {
    let side = |s: &Side| {
        format!(
            "{}: {} {}\n",
            s.label,
            s.binary.display(),
            s.extra_args.join(" ")
        )
    };
    let mut out = format!(
        "{}{}bench {} ({} rounds each, interleaved; medians)\n",
        side(&c.old),
        side(&c.new),
        c.args.join(" "),
        c.rounds
    );
    let width = c.figures.iter().map(|f| f.name.len()).max().unwrap_or(6);
    out.push_str(&format!(
        "{:<width$}  {:>14}  {:>14}  {:>13}\n",
        "figure",
        c.old.label,
        c.new.label,
        format!("{}/{}", c.new.label, c.old.label)
    ));
    for f in &c.figures {
        let ratio = f
            .ratio
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"));
        let verdict = match (f.better, f.ratio) {
            (Some(Better::Higher), Some(r)) if r > 1.0 => "  better",
            (Some(Better::Higher), Some(r)) if r < 1.0 => "  worse",
            (Some(Better::Lower), Some(r)) if r < 1.0 => "  better",
            (Some(Better::Lower), Some(r)) if r > 1.0 => "  worse",
            _ => "",
        };
        out.push_str(&format!(
            "{:<width$}  {:>14.3}  {:>14.3}  {:>13}{verdict}\n",
            f.name, f.old, f.new, ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_comparison_options_are_not_passed_on() {
        let kept = passed_through(
            os(&[
                "bench",
                "--compare",
                "/old/vserv",
                "--rounds=5",
                "rtt",
                "--json",
                "--seconds",
                "2",
            ])
            .into_iter(),
            &[],
        )
        .unwrap();
        assert_eq!(kept, os(&["rtt", "--seconds", "2"]));
        assert!(passed_through(os(&["bench", "rtt", "--rounds"]).into_iter(), &[]).is_err());
    }

    #[test]
    fn the_runtimes_comparison_leaves_the_runtime_to_each_side() {
        let args = |a: &[&str]| passed_through(os(a).into_iter(), &["--runtime"]).unwrap();
        assert_eq!(
            args(&[
                "bench",
                "burst",
                "--runtimes",
                "--runtime",
                "smol",
                "--sessions",
                "9"
            ]),
            os(&["burst", "--sessions", "9"])
        );
        assert_eq!(
            args(&[
                "bench",
                "--rounds",
                "2",
                "burst",
                "--runtime=smol",
                "--runtimes"
            ]),
            os(&["burst"])
        );
        // An option that only starts like one of them is passed on.
        assert_eq!(
            args(&["bench", "burst", "--runtimes", "--runtime-x=1"]),
            os(&["burst", "--runtime-x=1"])
        );
    }

    #[test]
    fn figures_are_medians_of_every_round_with_ratios() {
        let report = |p50: f64, rate: f64| {
            let v: Value = serde_json::json!({
                "machine": {"cpus": 2},
                "ping": {"p50_us": p50, "samples": 10},
                "handshakes_per_s": rate,
                "target_per_s": 1000,
                "mode": "blocking",
            });
            let mut m = BTreeMap::new();
            flatten("", &v, &mut m);
            m
        };
        let old = vec![
            report(20.0, 100.0),
            report(30.0, 300.0),
            report(25.0, 200.0),
        ];
        let new = vec![
            report(10.0, 400.0),
            report(12.0, 400.0),
            report(11.0, 400.0),
        ];
        let figures = figures(&old, &new);
        let names: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["handshakes_per_s", "ping.p50_us", "ping.samples"]);
        assert_eq!(figures[0].old, 200.0);
        assert_eq!(figures[0].ratio, Some(2.0));
        assert_eq!(figures[0].better, Some(Better::Higher));
        assert_eq!(figures[1].old, 25.0);
        assert_eq!(figures[1].new, 11.0);
        assert_eq!(figures[1].better, Some(Better::Lower));
        assert_eq!(figures[2].better, None);
        assert_eq!(better("cpu_us_per_session"), Some(Better::Lower));
        assert_eq!(better("seal_mb_s"), Some(Better::Higher));
        assert_eq!(better("open_s"), None);
        assert!(
            table(&Comparison {
                old: Side {
                    label: "old".into(),
                    binary: "o".into(),
                    extra_args: Vec::new(),
                },
                new: Side {
                    label: "new".into(),
                    binary: "n".into(),
                    extra_args: Vec::new(),
                },
                rounds: 3,
                args: vec!["rtt".into()],
                figures,
            })
            .contains("ping.p50_us")
        );
    }

    #[test]
    fn a_figure_missing_from_a_round_is_left_out() {
        assert_eq!(median(vec![Some(1.0), None]), None);
        assert_eq!(median(vec![Some(3.0), Some(1.0)]), Some(2.0));
    }
}
