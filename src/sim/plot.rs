//! `simulate --plot`: an SVG with the metrics on top and the recommendation and replica
//! count below, over time, with the spans where a schedule was active shaded.

use chrono::{DateTime, Utc};
use plotters::prelude::*;

/// What one tick contributes to the picture.
#[derive(Debug, Clone)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub samples: Vec<Option<f64>>,
    /// Step 5's recommendation.
    pub recommendation: u32,
    /// The count after the tick.
    pub replicas: u32,
    pub scheduled: bool,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
const SHADE: RGBColor = RGBColor(255, 236, 179);

pub fn svg(title: &str, metrics: &[String], points: &[Point]) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1100, 700)).into_drawing_area();
        draw(&root, title, metrics, points).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw(
    root: &Area<'_>,
    title: &str,
    metrics: &[String],
    points: &[Point],
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Ok(());
    };
    let start = first.at;
    let x = |at: DateTime<Utc>| (at - start).num_milliseconds() as f64 / 3_600_000.0;
    let x_end = x(last.at).max(1e-6);
    let root = root.titled(title, ("sans-serif", 20))?;
    let (top, bottom) = root.split_vertically(380);

    // Spans of ticks with an active schedule, as (from, to) in hours.
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for pair in points.windows(2) {
        if pair[0].scheduled {
            let (a, b) = (x(pair[0].at), x(pair[1].at));
            match spans.last_mut() {
                Some(span) if (span.1 - a).abs() < 1e-9 => span.1 = b,
                _ => spans.push((a, b)),
            }
        }
    }

    let values = points
        .iter()
        .flat_map(|p| p.samples.iter().flatten().copied());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo.min(0.0), if hi > lo { hi * 1.05 } else { lo + 1.0 })
    } else {
        (0.0, 1.0)
    };
    let hours = |v: &f64| format!("{:.1}h", v);

    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .caption("metrics", ("sans-serif", 16))
        .build_cartesian_2d(0f64..x_end, lo..hi)?;
    chart
        .configure_mesh()
        .x_label_formatter(&hours)
        .x_desc("time since start")
        .draw()?;
    for (a, b) in &spans {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(*a, lo), (*b, hi)],
            SHADE.filled(),
        )))?;
    }
    for (i, name) in metrics.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // A missing sample breaks the line.
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
                series.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                });
                labelled = true;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let top_count = points
        .iter()
        .map(|p| p.recommendation.max(p.replicas))
        .max()
        .unwrap_or(1);
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .caption("replicas", ("sans-serif", 16))
        .build_cartesian_2d(0f64..x_end, 0f64..(f64::from(top_count) + 1.0))?;
    chart
        .configure_mesh()
        .x_label_formatter(&hours)
        .x_desc("time since start")
        .draw()?;
    for (a, b) in &spans {
        let shade = Rectangle::new(
            [(*a, 0.0), (*b, f64::from(top_count) + 1.0)],
            SHADE.filled(),
        );
        chart
            .draw_series(std::iter::once(shade))?
            .label("schedule active")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], SHADE.filled()));
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
    let rec = RGBColor(150, 150, 150);
    chart
        .draw_series(LineSeries::new(
            steps(|p| p.recommendation),
            rec.stroke_width(2),
        ))?
        .label("recommendation")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], rec.stroke_width(2)));
    let replicas = COLOURS[3];
    chart
        .draw_series(LineSeries::new(
            steps(|p| p.replicas),
            replicas.stroke_width(3),
        ))?
        .label("replicas")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], replicas.stroke_width(3)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
