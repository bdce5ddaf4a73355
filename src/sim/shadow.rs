//! Shadow comparisons: a policy's count beside the count another autoscaler wanted (for
//! an HPA or a KEDA ScaledObject, kube-state-metrics'
//! `kube_horizontalpodautoscaler_status_desired_replicas`), tick by tick. `policyctl
//! shadow` feeds it a replay; `serve` exports the same two numbers live.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Where the two counts stood at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub ours: u32,
    /// The other's desired count; `None` where its series has no sample.
    pub theirs: Option<f64>,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The largest difference, and when.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gap {
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub ours: u32,
    pub theirs: f64,
    /// `ours - theirs`.
    pub difference: f64,
}

/// What a comparison adds up to. Each tick's counts hold until the next tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Divergence {
    pub ticks: usize,
    /// Ticks where the other's count was known.
    pub compared: usize,
    pub hours_above: f64,
    pub hours_below: f64,
    pub hours_equal: f64,
    pub replica_hours_ours: f64,
    /// Over the compared ticks only.
    pub replica_hours_theirs: f64,
    pub events_ours: usize,
    pub events_theirs: usize,
    pub largest_gap: Option<Gap>,
}

/// Add up `pairs`, one per tick of `step_seconds`.
pub fn divergence(pairs: &[Pair], step_seconds: f64) -> Divergence {
    let h = step_seconds / 3600.0;
    let mut d = Divergence {
        ticks: pairs.len(),
        ..Divergence::default()
    };
    let mut last_theirs: Option<f64> = None;
    for (i, p) in pairs.iter().enumerate() {
        d.replica_hours_ours += f64::from(p.ours) * h;
        if i > 0 && pairs[i - 1].ours != p.ours {
            d.events_ours += 1;
        }
        let Some(theirs) = p.theirs else { continue };
        d.compared += 1;
        d.replica_hours_theirs += theirs * h;
        if last_theirs.is_some_and(|l| l != theirs) {
            d.events_theirs += 1;
        }
        last_theirs = Some(theirs);
        let difference = f64::from(p.ours) - theirs;
        match difference.partial_cmp(&0.0) {
            Some(std::cmp::Ordering::Greater) => d.hours_above += h,
            Some(std::cmp::Ordering::Less) => d.hours_below += h,
            _ => d.hours_equal += h,
        }
        if d.largest_gap
            .is_none_or(|g| difference.abs() > g.difference.abs())
        {
            d.largest_gap = Some(Gap {
                at: p.at,
                ours: p.ours,
                theirs,
                difference,
            });
        }
    }
    d
}

/// The other's count at `at`: its last sample at or before, if not older than `stale`.
pub fn value_at(
    series: &[(DateTime<Utc>, Option<f64>)],
    at: DateTime<Utc>,
    stale: chrono::Duration,
) -> Option<f64> {
    let i = series.partition_point(|(t, _)| *t <= at);
    let (t, v) = series.get(i.checked_sub(1)?)?;
    (at - *t <= stale).then_some(*v).flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn time_above_and_below_replica_hours_events_and_the_largest_gap() {
        let pairs = [
            Pair {
                at: at(0),
                ours: 2,
                theirs: Some(2.0),
            },
            Pair {
                at: at(900),
                ours: 4,
                theirs: Some(2.0),
            },
            Pair {
                at: at(1800),
                ours: 4,
                theirs: Some(7.0),
            },
            Pair {
                at: at(2700),
                ours: 3,
                theirs: None,
            },
        ];
        let d = divergence(&pairs, 900.0);
        assert_eq!((d.ticks, d.compared), (4, 3));
        assert_eq!(
            (d.hours_above, d.hours_below, d.hours_equal),
            (0.25, 0.25, 0.25)
        );
        assert_eq!(d.replica_hours_ours, (2.0 + 4.0 + 4.0 + 3.0) * 0.25);
        assert_eq!(d.replica_hours_theirs, (2.0 + 2.0 + 7.0) * 0.25);
        assert_eq!((d.events_ours, d.events_theirs), (2, 1));
        let gap = d.largest_gap.unwrap();
        assert_eq!((gap.at, gap.difference), (at(1800), -3.0));
    }

    #[test]
    fn the_other_count_is_its_last_fresh_sample() {
        let series = vec![(at(0), Some(3.0)), (at(60), None), (at(120), Some(5.0))];
        let five = chrono::Duration::minutes(5);
        assert_eq!(value_at(&series, at(30), five), Some(3.0));
        assert_eq!(value_at(&series, at(90), five), None);
        assert_eq!(value_at(&series, at(-1), five), None);
        assert_eq!(value_at(&series, at(120 + 301), five), None);
    }
}
