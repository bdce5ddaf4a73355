//! The differential test against Prometheus' own rule engine: random traces (with
//! omitted samples, stale markers and gaps longer than the lookback) and random
//! `when COND [for D]` rules, each rule's proposals tick by tick compared with what
//! `promtool test rules` says of the same alerting rule (firing = proposing).
//!
//! Seeded and bounded: `POLICYCTL_DIFF_CASES` (default 60) cases from
//! `POLICYCTL_DIFF_SEED` (default fixed). All cases go to promtool in one run. A
//! failure prints the smallest disagreeing case: its rule, its series, and both
//! engines' answers tick by tick up to the first difference.

// Test code: a setup that fails should panic, with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::Command;

use chrono::{DateTime, Duration as TimeDelta, Utc};
use policyctl::check::{Options, check_text};
use policyctl::engine::Outcome;
use policyctl::sim::{self, scaletest};

mod support;

/// promtool's evaluation interval, and the policy's `every`.
const EVERY_S: i64 = 15;

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
enum Cond {
    Cmp(&'static str, &'static str, u32),
    Both(Box<Cond>, &'static str, Box<Cond>),
}

impl Cond {
    fn random(rng: &mut Rng, depth: u32) -> Cond {
        if depth == 0 || rng.below(3) != 0 {
            let metric = *rng.pick(&["x", "y"]);
            let op = *rng.pick(&[">", ">=", "<", "<="]);
            return Cond::Cmp(metric, op, 10 * rng.below(11) as u32);
        }
        let left = Cond::random(rng, depth - 1);
        let op: &'static str = if rng.below(2) == 0 { "and" } else { "or" };
        Cond::Both(Box::new(left), op, Box::new(Cond::random(rng, depth - 1)))
    }

    /// As policyctl writes it (`case` empty) or as PromQL (series `x3`, `y3`).
    fn text(&self, case: &str) -> String {
        match self {
            Cond::Cmp(m, op, c) => format!("{m}{case} {op} {c}"),
            Cond::Both(l, op, r) => format!("({} {op} {})", l.text(case), r.text(case)),
        }
    }
}

struct Case {
    cond: Cond,
    sustain_s: Option<i64>,
    /// Seconds between two samples of the series.
    interval_s: i64,
    series: BTreeMap<&'static str, String>,
    ticks: i64,
}

impl Case {
    fn random(rng: &mut Rng) -> Case {
        let cond = Cond::random(rng, 2);
        let sustain_s = *rng.pick(&[
            None,
            Some(15),
            Some(30),
            Some(45),
            Some(60),
            Some(120),
            Some(300),
        ]);
        let interval_s = *rng.pick(&[15, 30, 60]);
        let samples = 8 + rng.below(25) as usize;
        let mut series = BTreeMap::new();
        for name in ["x", "y"] {
            let mut tokens = Vec::new();
            let mut level = 10 * rng.below(11) as i64;
            while tokens.len() < samples {
                match rng.below(20) {
                    0 => tokens.push("stale".to_string()),
                    1 | 2 => tokens.push("_".to_string()),
                    // A gap beyond the 5-minute lookback.
                    3 => tokens.extend(std::iter::repeat_n("_".to_string(), 6)),
                    _ => {
                        level = (level + 10 * (rng.below(5) as i64 - 2)).clamp(0, 100);
                        tokens.push(level.to_string());
                    }
                }
            }
            series.insert(name, tokens.join(" "));
        }
        let span = (samples as i64) * interval_s;
        // Past the last sample, until it has gone stale.
        let ticks = span / EVERY_S + 24;
        Case {
            cond,
            sustain_s,
            interval_s,
            series,
            ticks,
        }
    }

    fn policy(&self) -> String {
        let sustain = self
            .sustain_s
            .map(|s| format!(" for {s}s"))
            .unwrap_or_default();
        // `replicas 1..1`: the proposal never becomes a scale event, so no window
        // restarts (Prometheus has no such thing), and each tick shows the rule alone.
        format!(
            "policy \"diff\" {{\n  target test \"t\"\n  replicas 1..1\n  every {EVERY_S}s\n  metric x = prometheus \"x\"\n  metric y = prometheus \"y\"\n  when {}{sustain} scale up by 1\n}}\n",
            self.cond.text("")
        )
    }

    /// policyctl's answer: at each tick, does the rule propose?
    fn policyctl(&self) -> Vec<bool> {
        let checked = check_text(&self.policy(), &Options::at(start()));
        assert_eq!(checked.errors(), 0, "{:#?}", checked.diagnostics);
        let policy = &checked.policies[0].policy;
        let series: BTreeMap<String, String> = self
            .series
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let trace =
            scaletest::series_trace(&series, start(), TimeDelta::seconds(self.interval_s)).unwrap();
        let through = start() + TimeDelta::seconds(EVERY_S * (self.ticks - 1));
        let options = sim::Options {
            initial: Some(1),
            through: Some(through),
            until: Some(through),
            ..sim::Options::default()
        };
        let mut proposes = Vec::new();
        sim::run(policy, &trace, &options, |view| {
            proposes.push(matches!(
                view.tick.explanation.rules[0],
                Outcome::Proposed { .. }
            ));
        })
        .unwrap();
        assert_eq!(proposes.len() as i64, self.ticks);
        proposes
    }

    fn describe(&self, index: usize, ours: &[bool], theirs: &[bool]) -> String {
        let mut out = format!(
            "case {index}: when {}{} (samples every {}s, evaluated every {EVERY_S}s)\n",
            self.cond.text(""),
            self.sustain_s
                .map(|s| format!(" for {s}s"))
                .unwrap_or_default(),
            self.interval_s
        );
        for (name, values) in &self.series {
            let _ = writeln!(out, "  {name}: \"{values}\"");
        }
        out.push_str("  tick   time  policyctl  promtool\n");
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            let mark = if a == b { "" } else { "   <- differs" };
            let _ = writeln!(
                out,
                "  {i:>4} {:>5}s  {a:>9}  {b:>8}{mark}",
                i as i64 * EVERY_S
            );
            if a != b {
                break;
            }
        }
        out
    }
}

fn start() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// Run promtool on every case at once; the set of (case, tick) where its answer is
/// not the one expected (`expected[case][tick]`, firing or not).
fn promtool(cases: &[Case], expected: &[Vec<bool>]) -> BTreeSet<(usize, i64)> {
    let dir = support::scratch("promtool-diff");
    let mut rules = String::from("groups:\n");
    let mut tests = format!("rule_files: [rules.yml]\nevaluation_interval: {EVERY_S}s\ntests:\n");
    for (i, case) in cases.iter().enumerate() {
        let _ = write!(
            rules,
            "  - name: g{i}\n    interval: {EVERY_S}s\n    rules:\n      - alert: A{i}\n        expr: '{}'\n",
            case.cond.text(&i.to_string())
        );
        if let Some(s) = case.sustain_s {
            let _ = writeln!(rules, "        for: {s}s");
        }
        let _ = write!(
            tests,
            "  - interval: {}s\n    input_series:\n",
            case.interval_s
        );
        for (name, values) in &case.series {
            let _ = write!(
                tests,
                "      - series: '{name}{i}'\n        values: '{values}'\n"
            );
        }
        tests.push_str("    alert_rule_test:\n");
        for (t, firing) in expected[i].iter().enumerate() {
            let alerts = if *firing {
                "\n          - exp_labels: {}"
            } else {
                " []"
            };
            let _ = write!(
                tests,
                "      - eval_time: {}s\n        alertname: A{i}\n        exp_alerts:{alerts}\n",
                t as i64 * EVERY_S
            );
        }
    }
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    std::fs::write(dir.join("tests.yml"), tests).unwrap();
    let output = Command::new("promtool")
        .args(["test", "rules", "tests.yml"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool (Debian's `prometheus` package, installed by .ci/run) cannot run: {e}")
        });
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    // Failures read `alertname: A3, time: 90s,`.
    let mut differ = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("alertname: A") else {
            continue;
        };
        let (case, rest) = rest
            .split_once(", time: ")
            .unwrap_or_else(|| panic!("{line}"));
        let time = rest.trim_end_matches(',').trim();
        let seconds = parse_go_duration(time).unwrap_or_else(|| panic!("time `{time}` in {line}"));
        differ.insert((case.parse().unwrap(), seconds / EVERY_S));
    }
    assert!(
        output.status.success() || !differ.is_empty(),
        "promtool failed without naming a failing alert:\n{text}"
    );
    differ
}

/// `1m30s`, `45s`, `2m`, `0s` as Go prints a duration.
fn parse_go_duration(text: &str) -> Option<i64> {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: i64 = number.parse().ok()?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => return None,
        }
    }
    number.is_empty().then_some(total)
}

#[test]
fn when_rules_fire_exactly_as_prometheus_alerts_do() {
    let count: usize = std::env::var("POLICYCTL_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("POLICYCTL_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x005e_ed0f_d1ff);
    let mut rng = Rng(seed | 1);
    let cases: Vec<Case> = (0..count).map(|_| Case::random(&mut rng)).collect();
    let ours: Vec<Vec<bool>> = cases.iter().map(Case::policyctl).collect();
    let differ = promtool(&cases, &ours);
    if differ.is_empty() {
        // The comparison can fail: every case had ticks both firing and not, in total.
        let firing = ours.iter().flatten().filter(|f| **f).count();
        let quiet = ours.iter().flatten().filter(|f| !**f).count();
        assert!(
            firing > 0 && quiet > 0,
            "{firing} firing, {quiet} quiet ticks"
        );
        return;
    }
    // promtool's answer is the opposite of ours where it differs.
    let mut first: BTreeMap<usize, i64> = BTreeMap::new();
    for (case, tick) in &differ {
        first.entry(*case).or_insert(*tick);
    }
    let (&smallest, _) = first
        .iter()
        .min_by_key(|(case, tick)| {
            (
                **tick,
                cases[**case]
                    .series
                    .values()
                    .map(String::len)
                    .sum::<usize>(),
            )
        })
        .unwrap();
    let theirs: Vec<bool> = ours[smallest]
        .iter()
        .enumerate()
        .map(|(t, f)| f ^ differ.contains(&(smallest, t as i64)))
        .collect();
    panic!(
        "{} of {count} cases disagree with promtool (seed {seed}); the smallest:\n{}",
        first.len(),
        cases[smallest].describe(smallest, &ours[smallest], &theirs)
    );
}
