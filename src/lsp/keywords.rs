//! What each keyword means, one line each, from docs/reference.md, with the section
//! that says more. Hover shows them; completion offers the statement keywords with them.

/// (keyword, one line, section of docs/reference.md).
pub const KEYWORDS: &[(&str, &str, &str)] = &[
    (
        "policy",
        "`policy \"NAME\" { … }`: one autoscaling policy; names are unique across all files",
        "2-policies-and-their-statements",
    ),
    (
        "target",
        "`target ACTUATOR \"ID\"`: who applies the count (an actuator of the service configuration); required, once",
        "2-policies-and-their-statements",
    ),
    (
        "replicas",
        "`replicas MIN..MAX`: the bounds, 0 ≤ MIN ≤ MAX; required, once. In a schedule: `replicas at least N`, `at most N`, `exactly N`, `MIN..MAX`",
        "2-policies-and-their-statements",
    ),
    (
        "every",
        "`every D`: how often the policy is evaluated, at least 1s (default 15s)",
        "2-policies-and-their-statements",
    ),
    (
        "metric",
        "`metric NAME = SOURCE \"QUERY\"`: an input, fetched every tick",
        "2-policies-and-their-statements",
    ),
    (
        "let",
        "`let NAME = EXPR`: a derived value, usable below it",
        "2-policies-and-their-statements",
    ),
    (
        "current",
        "`current`: the replica count now; `current from NAME` reads it from a metric instead of the actuator",
        "3-expressions",
    ),
    (
        "from",
        "`current from NAME`, or a window `on DAYS from HH:MM to HH:MM` / `from DATE to DATE`",
        "5-schedules",
    ),
    (
        "timezone",
        "`timezone \"ZONE\"`: the default IANA zone of the policy's schedules (default \"UTC\")",
        "2-policies-and-their-statements",
    ),
    (
        "dry-run",
        "`dry-run`: decide, log and export, but never actuate",
        "2-policies-and-their-statements",
    ),
    (
        "track",
        "`track EXPR at T` proposes ceil(current × EXPR / T); `track EXPR per replica T` proposes ceil(EXPR / T)",
        "4-rules",
    ),
    (
        "at",
        "`track EXPR at T`: a utilisation target; in a schedule, `replicas at least N` / `at most N`",
        "4-rules",
    ),
    (
        "per",
        "`track EXPR per replica T`: an average-value target; `limit up N per D`: a rate limit's period",
        "4-rules",
    ),
    (
        "replica",
        "`track EXPR per replica T`: T of EXPR per replica",
        "4-rules",
    ),
    (
        "desired",
        "`desired = EXPR`: proposes ceil(EXPR) replicas",
        "4-rules",
    ),
    (
        "when",
        "`when COND [for D] scale up by N | down by N | to EXPR`: a threshold rule",
        "4-rules",
    ),
    (
        "for",
        "`for D`: the condition must hold at every tick across D, as Prometheus' alert `for:`; in a cron window, its length",
        "4-rules",
    ),
    (
        "scale",
        "`scale up by N`, `scale down by N` (or P%), `scale to EXPR`: what a `when` rule proposes",
        "4-rules",
    ),
    (
        "up",
        "the direction of growth: `scale up by`, `stabilize up`, `limit up`, `cooldown up`",
        "6-from-proposals-to-a-decision",
    ),
    (
        "down",
        "the direction of shrinking: `scale down by`, `stabilize down`, `limit down`, `cooldown down`",
        "6-from-proposals-to-a-decision",
    ),
    (
        "by",
        "`scale up by N` / `scale down by N`: a step of N replicas, or of P% of current (rounded up)",
        "4-rules",
    ),
    (
        "to",
        "`scale to EXPR` proposes ceil(EXPR); in windows, the end of the window",
        "4-rules",
    ),
    (
        "buffer",
        "`buffer P%`: multiply every `track`/`desired` value by 1 + P (default 0%)",
        "2-policies-and-their-statements",
    ),
    (
        "tolerance",
        "`tolerance P%`: a `track` ratio within 1 ± P proposes `current` (default 10%)",
        "2-policies-and-their-statements",
    ),
    (
        "on",
        "`on missing hold | scale to N after K`, or a weekly window `on mon..fri from 08:00 to 18:00`",
        "2-policies-and-their-statements",
    ),
    (
        "missing",
        "`on missing hold` (no scale-down on a tick with missing data, the default) or `on missing scale to N after K`",
        "2-policies-and-their-statements",
    ),
    (
        "hold",
        "`on missing hold`: on a tick with missing data, no scale-down",
        "2-policies-and-their-statements",
    ),
    (
        "after",
        "`on missing scale to N after K`: hold for K-1 ticks with missing data, then recommend N",
        "2-policies-and-their-statements",
    ),
    (
        "stabilize",
        "`stabilize up D` scales up to the lowest recommendation of the last D (default 0s); `stabilize down D` down to the highest (default 5m)",
        "6-from-proposals-to-a-decision",
    ),
    (
        "limit",
        "`limit up|down N per D` or `P% per D`: a rate limit; `select min|max` combines several; `disabled` forbids the direction",
        "6-from-proposals-to-a-decision",
    ),
    (
        "select",
        "`limit up|down select min|max`: the most restrictive (min) or most permissive (max, the default) of several limits",
        "6-from-proposals-to-a-decision",
    ),
    (
        "min",
        "`limit … select min`: the most restrictive limit wins; `min(a, b, …)`: the least argument",
        "6-from-proposals-to-a-decision",
    ),
    (
        "max",
        "`limit … select max`: the most permissive limit wins (the default); `max(a, b, …)`: the greatest argument",
        "6-from-proposals-to-a-decision",
    ),
    (
        "disabled",
        "`limit up|down disabled`: forbid scaling in that direction",
        "6-from-proposals-to-a-decision",
    ),
    (
        "cooldown",
        "`cooldown up|down D`: a move in that direction waits D after the last scale event (default 0s)",
        "6-from-proposals-to-a-decision",
    ),
    (
        "schedule",
        "`schedule \"NAME\" { windows… effect }`: planned capacity in real time zones",
        "5-schedules",
    ),
    (
        "in",
        "`in \"ZONE\"`: the IANA time zone of a window (default: the policy's `timezone`)",
        "5-schedules",
    ),
    (
        "except",
        "`except DATE, …`: local days on which a window that would start is skipped",
        "5-schedules",
    ),
    (
        "cron",
        "`cron \"EXPR\" for D`: windows that start at a crontab(5) time and last D",
        "5-schedules",
    ),
    (
        "exactly",
        "`replicas exactly N`: while the schedule is active, the count is N",
        "5-schedules",
    ),
    (
        "least",
        "`replicas at least N`: while the schedule is active, a floor of N",
        "5-schedules",
    ),
    (
        "most",
        "`replicas at most N`: while the schedule is active, a ceiling of N",
        "5-schedules",
    ),
    (
        "daily",
        "`on daily from … to …`: every day of the week",
        "5-schedules",
    ),
    (
        "and",
        "`a and b`: both conditions (three-valued: `false and missing` is false)",
        "3-expressions",
    ),
    (
        "or",
        "`a or b`: either condition (three-valued: `true or missing` is true)",
        "3-expressions",
    ),
    (
        "not",
        "`not a`: the opposite condition (`not missing` is missing)",
        "3-expressions",
    ),
    ("ceil", "`ceil(x)`: x rounded up", "3-expressions"),
    ("floor", "`floor(x)`: x rounded down", "3-expressions"),
    (
        "round",
        "`round(x)`: x rounded to the nearest integer",
        "3-expressions",
    ),
    ("abs", "`abs(x)`: the absolute value of x", "3-expressions"),
    (
        "clamp",
        "`clamp(x, lo, hi)`: x cut to lo..hi (missing when lo > hi)",
        "3-expressions",
    ),
];

/// Statements that may start a line inside a policy, as completion offers them.
pub const STATEMENTS: &[(&str, &str)] = &[
    ("target", "target ${1:actuator} \"${2:id}\""),
    ("replicas", "replicas ${1:1}..${2:10}"),
    ("every", "every ${1:15s}"),
    (
        "metric",
        "metric ${1:name} = ${2:prometheus} r#\"${3:query}\"#",
    ),
    ("let", "let ${1:name} = ${2:expr}"),
    ("current", "current from ${1:metric}"),
    ("timezone", "timezone \"${1:UTC}\""),
    ("dry-run", "dry-run"),
    ("track", "track ${1:cpu} at ${2:50%}"),
    ("desired", "desired = ${1:expr}"),
    ("when", "when ${1:cond} for ${2:5m} scale up by ${3:1}"),
    ("buffer", "buffer ${1:20%}"),
    ("tolerance", "tolerance ${1:10%}"),
    ("on", "on missing hold"),
    ("stabilize", "stabilize down ${1:5m}"),
    ("limit", "limit up ${1:4} per ${2:1m}"),
    ("cooldown", "cooldown down ${1:5m}"),
    (
        "schedule",
        "schedule \"${1:name}\" {\n  on ${2:mon..fri} from ${3:08:00} to ${4:18:00}\n  replicas at least ${5:2}\n}",
    ),
];

/// Lines that may start inside a schedule.
pub const SCHEDULE_LINES: &[(&str, &str)] = &[
    ("on", "on ${1:mon..fri} from ${2:08:00} to ${3:18:00}"),
    (
        "from",
        "from ${1:2026-12-24T00:00} to ${2:2026-12-27T00:00}",
    ),
    ("cron", "cron \"${1:0 9 * * 1-5}\" for ${2:8h}"),
    ("replicas", "replicas at least ${1:2}"),
];

/// Units after a number: (suffix, what it means).
pub const UNITS: &[(&str, &str)] = &[
    ("%", "percentage: 45% = 0.45"),
    ("ms", "milliseconds"),
    ("s", "seconds"),
    ("m", "minutes"),
    ("h", "hours"),
    ("d", "days"),
    ("B", "bytes"),
    ("KB", "10^3 bytes"),
    ("MB", "10^6 bytes"),
    ("GB", "10^9 bytes"),
    ("TB", "10^12 bytes"),
    ("KiB", "2^10 bytes"),
    ("MiB", "2^20 bytes"),
    ("GiB", "2^30 bytes"),
    ("TiB", "2^40 bytes"),
    ("k", "thousands: 2k = 2000"),
    ("M", "millions: 1.5M = 1,500,000"),
];

pub fn describe(word: &str) -> Option<(&'static str, &'static str)> {
    KEYWORDS
        .iter()
        .find(|(k, _, _)| *k == word)
        .map(|(_, line, section)| (*line, *section))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reserved_word_is_described() {
        for word in crate::check::RESERVED {
            assert!(describe(word).is_some(), "`{word}` has no hover text");
        }
        for func in crate::model::Func::ALL {
            assert!(
                describe(func.name()).is_some(),
                "`{}` has no hover text",
                func.name()
            );
        }
    }
}
