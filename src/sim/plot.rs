//! `simulate --plot`: an SVG with one panel per metric (each on its own scale, with the
//! `track` targets that read it, and its missing samples marked) and a panel of the
//! recommendation and the replica count, on a wall-clock time axis (UTC), with each
//! active schedule shaded and named.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use plotters::prelude::*;

use crate::model::{Expr, Policy, RuleKind};

/// What one tick contributes to the picture.
#[derive(Debug, Clone)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub samples: Vec<Option<f64>>,
    /// Step 5's recommendation.
    pub recommendation: u32,
    /// The count after the tick.
    pub replicas: u32,
    /// Indices of the schedules active at this tick.
    pub schedules: Vec<usize>,
    /// Another autoscaler's count at this tick (`shadow`), drawn beside ours.
    pub other: Option<f64>,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
];
const SHADES: [RGBColor; 3] = [
    RGBColor(255, 236, 179),
    RGBColor(220, 237, 200),
    RGBColor(225, 213, 245),
];
const MISSING: RGBColor = RGBColor(250, 200, 200);
const TARGET: RGBColor = RGBColor(214, 39, 40);

const WIDTH: u32 = 1100;
const METRIC_HEIGHT: u32 = 190;
const REPLICAS_HEIGHT: u32 = 260;
const TITLE_HEIGHT: u32 = 40;

pub fn svg(title: &str, policy: &Policy, points: &[Point]) -> Result<String, String> {
    svg_beside(title, policy, points, None)
}

/// [`svg`], with `Point::other` drawn in the replicas panel under the name `other`.
pub fn svg_beside(
    title: &str,
    policy: &Policy,
    points: &[Point],
    other: Option<&str>,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let height = TITLE_HEIGHT + METRIC_HEIGHT * policy.metrics.len() as u32 + REPLICAS_HEIGHT;
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        draw(&root, title, policy, points, other).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A value with three significant digits and an SI suffix: `900M`, `0.25`, `1.2k`.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if scaled.abs() >= 100.0 || scaled == scaled.trunc() {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else if scaled.abs() >= 0.1 {
        2
    } else {
        4
    };
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// Spans of consecutive ticks where `on` holds, as (from, to) in hours since `start`;
/// a span runs to the next tick.
fn spans(
    points: &[Point],
    x: &dyn Fn(DateTime<Utc>) -> f64,
    on: &dyn Fn(&Point) -> bool,
) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if !on(p) {
            continue;
        }
        let a = x(p.at);
        let b = points.get(i + 1).map_or(a, |n| x(n.at));
        match out.last_mut() {
            Some(span) if (span.1 - a).abs() < 1e-9 => span.1 = b,
            _ => out.push((a, b)),
        }
    }
    out
}

fn draw(
    root: &Area<'_>,
    title: &str,
    policy: &Policy,
    points: &[Point],
    other: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Ok(());
    };
    let start = first.at;
    let x = |at: DateTime<Utc>| (at - start).num_milliseconds() as f64 / 3_600_000.0;
    let x_end = x(last.at).max(1e-6);
    let long = last.at - start > TimeDelta::hours(36);
    let clock = move |h: &f64| {
        let at = start + TimeDelta::milliseconds((h * 3_600_000.0) as i64);
        at.format(if long { "%m-%d %H:%M" } else { "%H:%M" })
            .to_string()
    };
    let root = root.titled(title, ("sans-serif", 20))?;
    let mut heights: Vec<u32> = vec![METRIC_HEIGHT; policy.metrics.len()];
    heights.push(REPLICAS_HEIGHT);
    let mut rest = root;
    let mut panels = Vec::new();
    for h in &heights[..heights.len() - 1] {
        let (top, bottom) = rest.split_vertically(*h);
        panels.push(top);
        rest = bottom;
    }
    panels.push(rest);

    for (i, (m, area)) in policy.metrics.iter().zip(&panels).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // `track M at T` draws T on M's panel; `track M per replica T` draws T × count.
        let mut fixed = Vec::new();
        let mut per_replica = Vec::new();
        for r in &policy.rules {
            match &r.kind {
                RuleKind::TrackAt {
                    value: Expr::Metric(j),
                    target,
                } if *j == i => fixed.push(*target),
                RuleKind::TrackPerReplica {
                    value: Expr::Metric(j),
                    target,
                } if *j == i => per_replica.push(*target),
                _ => {}
            }
        }
        let values = points
            .iter()
            .filter_map(|p| p.samples.get(i).copied().flatten())
            .chain(fixed.iter().copied())
            .chain(
                per_replica
                    .iter()
                    .flat_map(|t| points.iter().map(move |p| t * f64::from(p.replicas.max(1)))),
            );
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() {
            let lo = lo.min(0.0);
            (
                lo,
                if hi > lo {
                    hi + (hi - lo) * 0.08
                } else {
                    lo + 1.0
                },
            )
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(area)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(70)
            .caption(
                format!("{}  ({} \"{}\")", m.name, m.source, shorten(&m.query, 70)),
                ("sans-serif", 14),
            )
            .build_cartesian_2d(0f64..x_end, lo..hi)?;
        chart
            .configure_mesh()
            .x_label_formatter(&clock)
            .y_label_formatter(&|v| si(*v))
            .y_labels(5)
            .draw()?;
        let missing = spans(points, &x, &|p| {
            p.samples.get(i).copied().flatten().is_none()
        });
        for (n, (a, b)) in missing.iter().enumerate() {
            let s = chart.draw_series(std::iter::once(Rectangle::new(
                [(*a, lo), (b.max(a + x_end / 400.0), hi)],
                MISSING.filled(),
            )))?;
            if n == 0 {
                s.label("missing").legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], MISSING.filled())
                });
            }
        }
        let mut segment: Vec<(f64, f64)> = Vec::new();
        let mut segments = Vec::new();
        for p in points {
            match p.samples.get(i).copied().flatten() {
                Some(v) => segment.push((x(p.at), v)),
                None if !segment.is_empty() => segments.push(std::mem::take(&mut segment)),
                None => {}
            }
        }
        segments.push(segment);
        let mut labelled = false;
        for s in segments.into_iter().filter(|s| !s.is_empty()) {
            let series = chart.draw_series(LineSeries::new(s, colour.stroke_width(2)))?;
            if !labelled {
                series.label(m.name.as_str()).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                });
                labelled = true;
            }
        }
        for t in fixed {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, t), (x_end, t)],
                    6,
                    4,
                    TARGET.stroke_width(2),
                ))?
                .label(format!("target {}", si(t)))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TARGET.stroke_width(2)));
        }
        for t in per_replica {
            let line: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (x(p.at), t * f64::from(p.replicas.max(1))))
                .collect();
            chart
                .draw_series(DashedLineSeries::new(line, 6, 4, TARGET.stroke_width(2)))?
                .label(format!("target {} per replica × count", si(t)))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TARGET.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }

    let Some(area) = panels.last() else {
        return Ok(());
    };
    let top_count = points
        .iter()
        .map(|p| {
            p.recommendation
                .max(p.replicas)
                .max(p.other.map_or(0, |o| o.clamp(0.0, 1e6) as u32))
        })
        .chain([policy.max.min(10_000)])
        .max()
        .unwrap_or(1);
    let y_top = f64::from(top_count) * 1.1 + 1.0;
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .caption(
            format!("replicas  (bounds {}..{})", policy.min, policy.max),
            ("sans-serif", 14),
        )
        .build_cartesian_2d(0f64..x_end, 0f64..y_top)?;
    chart
        .configure_mesh()
        .x_label_formatter(&clock)
        .x_desc("time (UTC)")
        .y_desc("replicas")
        .y_labels(((y_top.floor() as usize) + 1).clamp(2, 11))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (k, schedule) in policy.schedules.iter().enumerate() {
        let shade = SHADES[k % SHADES.len()];
        let active = spans(points, &x, &|p| p.schedules.contains(&k));
        for (n, (a, b)) in active.iter().enumerate() {
            let s = chart.draw_series(std::iter::once(Rectangle::new(
                [(*a, 0.0), (*b, y_top)],
                shade.filled(),
            )))?;
            if n == 0 {
                s.label(format!("schedule {}", schedule.name))
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade.filled())
                    });
            }
            chart.draw_series(std::iter::once(Text::new(
                schedule.name.clone(),
                (*a + x_end / 300.0, y_top * (0.96 - 0.06 * k as f64)),
                ("sans-serif", 12).into_font().color(&BLACK.mix(0.7)),
            )))?;
        }
    }
    for bound in [policy.min, policy.max] {
        if f64::from(bound) < y_top {
            chart.draw_series(DashedLineSeries::new(
                [(0.0, f64::from(bound)), (x_end, f64::from(bound))],
                3,
                5,
                BLACK.mix(0.35).stroke_width(1),
            ))?;
        }
    }
    let steps = |value: fn(&Point) -> u32| {
        let mut line = Vec::with_capacity(points.len() * 2);
        for pair in points.windows(2) {
            line.push((x(pair[0].at), f64::from(value(&pair[0]))));
            line.push((x(pair[1].at), f64::from(value(&pair[0]))));
        }
        if let Some(p) = points.last() {
            line.push((x(p.at), f64::from(value(p))));
        }
        line
    };
    let rec = RGBColor(255, 127, 14);
    chart
        .draw_series(LineSeries::new(
            steps(|p| p.recommendation),
            rec.stroke_width(2),
        ))?
        .label("recommendation (step 5)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], rec.stroke_width(2)));
    let replicas = COLOURS[0];
    chart
        .draw_series(LineSeries::new(
            steps(|p| p.replicas),
            replicas.stroke_width(3),
        ))?
        .label("replicas")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], replicas.stroke_width(3)));
    if let Some(name) = other {
        // Its own steps, broken where it has no sample.
        let colour = RGBColor(214, 39, 40);
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for pair in points.windows(2) {
            match pair[0].other {
                Some(v) => {
                    let seg = segments.last_mut().ok_or("no segment")?;
                    seg.push((x(pair[0].at), v));
                    seg.push((x(pair[1].at), v));
                }
                None => segments.push(Vec::new()),
            }
        }
        let mut labelled = false;
        for seg in segments.into_iter().filter(|s| !s.is_empty()) {
            let series =
                chart.draw_series(DashedLineSeries::new(seg, 8, 4, colour.stroke_width(2)))?;
            if !labelled {
                series.label(name.to_string()).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                });
                labelled = true;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        one_line.chars().take(max - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::si;

    #[test]
    fn labels_are_short_and_exact() {
        assert_eq!(si(900_000_000.0), "900M");
        assert_eq!(si(0.25), "0.25");
        assert_eq!(si(1_250.0), "1250");
        assert_eq!(si(12_500.0), "12.5k");
        assert_eq!(si(0.0), "0");
        assert_eq!(si(2.5e9), "2.5G");
    }
}
