//! The curves drawn: one SVG per curve and engine (`bench/curve-<id>-<engine>.svg`), and the
//! Markdown that shows each with a table of its numbers.
//!
//! The x axis puts the points at equal distances (they grow geometrically: 1, 2, 4 … 64
//! processes, 16 B … 1 MiB) and is labelled with their values. Each series is drawn through
//! its medians, with the runs' minimum and maximum as an error bar; a p99 companion series is
//! dashed, in the colour of its p50.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use rave::{Error, Result};

use crate::curves::{Curve, Series};
use crate::report::{Report, fmt_num};
use crate::stats::Summary;

/// Colours of the series, in order: rave first, then the baselines.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The file a curve of `engine` is drawn into.
pub fn file_name(curve: &Curve, engine: &str) -> String {
    format!("curve-{}-{engine}.svg", curve.slug)
}

/// Writes every curve of `report` into `dir`, one SVG each.
pub fn write_svgs(report: &Report, dir: &Path) -> Result<()> {
    for section in &report.sections {
        for curve in &section.curves {
            let path = dir.join(file_name(curve, &section.engine));
            let svg = svg(curve, &section.engine, report.quick)?;
            std::fs::write(&path, svg)
                .map_err(|e| Error::io(format!("write {}", path.display()), &e))?;
        }
    }
    Ok(())
}

/// The chart of one curve of `engine`, as an SVG document.
pub fn svg(curve: &Curve, engine: &str, quick: bool) -> Result<String> {
    let shown: Vec<(usize, &Series)> = colours(curve)
        .into_iter()
        .zip(&curve.series)
        .filter(|(_, s)| s.measured())
        .collect();
    let values: Vec<f64> = shown
        .iter()
        .flat_map(|(_, s)| s.summaries())
        .flat_map(|s| [s.min, s.max])
        .filter(|v| v.is_finite() && (!curve.log_y || *v > 0.0))
        .collect();
    let hi = values.iter().copied().fold(f64::MIN, f64::max);
    let lo = values.iter().copied().fold(f64::MAX, f64::min);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let title = format!(
            "{} {engine}: {}{}",
            curve.id,
            curve.name,
            if quick {
                " (quick mode: not a measurement)"
            } else {
                ""
            }
        );
        if curve.log_y {
            let (lo, hi) = if values.is_empty() {
                (1.0, 10.0)
            } else {
                (lo / 1.5, hi * 1.5)
            };
            draw(&root, curve, &shown, &title, (lo..hi).log_scale())?;
        } else {
            let hi = if values.is_empty() { 1.0 } else { hi * 1.1 };
            draw(&root, curve, &shown, &title, 0.0..hi)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::other(format!("draw a curve: {e}"))
}

/// The colour index of each series: primaries in order; a secondary (p99) takes the colour of
/// the primary of the same rank.
fn colours(curve: &Curve) -> Vec<usize> {
    let (mut primary, mut secondary) = (0, 0);
    curve
        .series
        .iter()
        .map(|s| {
            let counter = if s.secondary {
                &mut secondary
            } else {
                &mut primary
            };
            *counter += 1;
            (*counter - 1) % PALETTE.len()
        })
        .collect()
}

fn draw<'a, Y>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    curve: &Curve,
    shown: &[(usize, &Series)],
    title: &str,
    y: Y,
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let points = curve.x.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..points as i32 - 1).into_segmented(), y)
        .map_err(draw_error)?;
    let labels = &curve.x_labels;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(points)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| if *v == 0.0 { "0".into() } else { fmt_num(*v) })
        .x_desc(curve.x_name.as_str())
        .y_desc(curve.unit.as_str())
        .draw()
        .map_err(draw_error)?;
    for &(colour, series) in shown {
        let colour = PALETTE[colour];
        let medians: Vec<(SegmentValue<i32>, f64)> = series
            .summaries()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.median.is_finite() && (s.median > 0.0 || !curve.log_y))
            .filter(|(i, _)| !series.runs[*i].is_empty())
            .map(|(i, s)| (SegmentValue::CenterOf(i as i32), s.median))
            .collect();
        if series.secondary {
            chart
                .draw_series(DashedLineSeries::new(
                    medians.clone(),
                    6,
                    4,
                    colour.stroke_width(1),
                ))
                .map_err(draw_error)?
                .label(series.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)], colour)
                });
            continue;
        }
        let width = if series.baseline { 2 } else { 3 };
        chart
            .draw_series(LineSeries::new(medians.clone(), colour.stroke_width(width)))
            .map_err(draw_error)?
            .label(series.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(width))
            });
        chart
            .draw_series(
                medians
                    .iter()
                    .map(|p| Circle::new(p.clone(), 3, colour.filled())),
            )
            .map_err(draw_error)?;
        let bars = series
            .summaries()
            .into_iter()
            .enumerate()
            .filter(|(i, s)| series.runs[*i].len() > 1 && (s.min > 0.0 || !curve.log_y))
            .map(|(i, s)| {
                ErrorBar::new_vertical(
                    SegmentValue::CenterOf(i as i32),
                    s.min,
                    s.median,
                    s.max,
                    colour.stroke_width(1),
                    8,
                )
            });
        chart.draw_series(bars).map_err(draw_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// `median (min–max)` of one point, or just the median for one run; `–` when not measured.
fn cell(runs: &[f64], summary: &Summary, unit: &str) -> String {
    match runs.len() {
        0 => "–".into(),
        1 => format!("{} {unit}", fmt_num(summary.median)),
        _ => format!(
            "{} {unit} ({}–{})",
            fmt_num(summary.median),
            fmt_num(summary.min),
            fmt_num(summary.max)
        ),
    }
}

/// The first measured primary series that is rave's and the first that is a baseline: the
/// pair the table's ratio column compares.
fn ratio_pair(curve: &Curve) -> Option<(&Series, &Series)> {
    let primary = |baseline: bool| {
        curve
            .series
            .iter()
            .find(|s| !s.secondary && s.baseline == baseline && s.measured())
    };
    Some((primary(false)?, primary(true)?))
}

/// The median of the run-by-run ratios at point `i`.
fn ratio_at(subject: &Series, baseline: &Series, i: usize) -> Option<Summary> {
    let ratios: Vec<f64> = subject.runs[i]
        .iter()
        .zip(&baseline.runs[i])
        .filter(|(s, b)| **s > 0.0 && **b > 0.0)
        .map(|(s, b)| s / b)
        .collect();
    (!ratios.is_empty()).then(|| Summary::of(&ratios))
}

/// The generated Markdown of every curve in `report`, grouped by curve with one chart and one
/// table per engine; `link` turns a chart's file name into the link to put in the Markdown.
pub fn markdown(report: &Report, link: &dyn Fn(&str) -> String) -> String {
    let mut slugs: Vec<&str> = Vec::new();
    for section in &report.sections {
        for curve in &section.curves {
            if !slugs.contains(&curve.slug.as_str()) {
                slugs.push(&curve.slug);
            }
        }
    }
    if slugs.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n### How cost grows: curves\n\nEach point is the median of its runs (min–max in \
         brackets; error bars on the charts); rave and its baselines are measured back to back \
         at every point. Curves take fewer runs and shorter windows than the figures above (see \
         the note under each). The points are equally spaced on the charts' x axes. The ratio \
         column is the median of the run-by-run ratios of the two series it names.\n",
    );
    for slug in slugs {
        let mut first = true;
        for section in &report.sections {
            let Some(curve) = section.curves.iter().find(|c| c.slug == slug) else {
                continue;
            };
            if first {
                out.push_str(&format!("\n#### {} · {}\n", curve.id, curve.name));
                first = false;
            }
            out.push_str(&curve_markdown(curve, &section.engine, link));
        }
    }
    out
}

fn curve_markdown(curve: &Curve, engine: &str, link: &dyn Fn(&str) -> String) -> String {
    let mut out = format!(
        "\n**{engine}**\n\n![{} {engine}: {}]({})\n\n",
        curve.id,
        curve.name,
        link(&file_name(curve, engine))
    );
    let pair = ratio_pair(curve);
    let mut header = format!("| {} |", curve.x_name);
    let mut rule = String::from("|---|");
    for s in &curve.series {
        header.push_str(&format!(" {} |", s.name));
        rule.push_str("---|");
    }
    if let Some((s, b)) = pair {
        header.push_str(&format!(" {} ÷ {} |", s.name, b.name));
        rule.push_str("---|");
    }
    out.push_str(&header);
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for (i, label) in curve.x_labels.iter().enumerate() {
        let mut row = format!("| {label} |");
        for s in &curve.series {
            let text = if s.skipped.is_some() {
                "skipped".to_string()
            } else {
                cell(&s.runs[i], &Summary::of(&s.runs[i]), &curve.unit)
            };
            row.push_str(&format!(" {text} |"));
        }
        if let Some((s, b)) = pair {
            let text = match ratio_at(s, b, i) {
                Some(r) if s.runs[i].len() > 1 => format!(
                    "{}× ({}–{})",
                    fmt_num(r.median),
                    fmt_num(r.min),
                    fmt_num(r.max)
                ),
                Some(r) => format!("{}×", fmt_num(r.median)),
                None => "–".into(),
            };
            row.push_str(&format!(" {text} |"));
        }
        out.push_str(&row);
        out.push('\n');
    }
    out.push('\n');
    let mut described: Vec<&str> = Vec::new();
    for s in &curve.series {
        // A p99 series shares its p50's description.
        if described.contains(&s.what.as_str()) {
            continue;
        }
        described.push(&s.what);
        let name = s.name.trim_end_matches(" p50");
        match &s.skipped {
            Some(why) => out.push_str(&format!("- **{name}**: {} Skipped: {why}.\n", s.what)),
            None => out.push_str(&format!("- **{name}**: {}.\n", s.what)),
        }
    }
    out.push_str(&format!("\n{}\n", curve.note));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve() -> Curve {
        let mut curve = Curve::new(
            "C3",
            "follower get latency against value size",
            "value size",
            vec![16.0, 4096.0],
            vec!["16 B".into(), "4 KiB".into()],
            "µs",
        );
        curve.log_y = true;
        let mut rave = Series::new("rave follower get p50", "a follower", 2);
        rave.runs = vec![vec![40.0, 45.0, 50.0], vec![60.0, 62.0, 70.0]];
        let mut p99 = Series::new("rave follower get p99", "a follower", 2);
        p99.secondary = true;
        p99.runs = vec![vec![80.0, 90.0, 95.0], vec![120.0, 130.0, 150.0]];
        let mut redis = Series::new("Redis GET p50", "redis-benchmark", 2).baseline();
        redis.runs = vec![vec![30.0, 31.0, 33.0], vec![40.0, 42.0, 44.0]];
        let mut absent = Series::new("Absent", "not here", 2).baseline();
        absent.skipped = Some("not installed".into());
        curve.series = vec![rave, redis, p99, absent];
        curve
    }

    #[test]
    fn a_curve_renders_with_its_series_and_points() {
        let svg = svg(&curve(), "redb", false).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "rave follower get p50",
            "rave follower get p99",
            "Redis GET p50",
            "16 B",
            "4 KiB",
            "C3 redb",
        ] {
            assert!(svg.contains(text), "{text} missing from {svg}");
        }
        // A skipped series is neither drawn nor in the legend.
        assert!(!svg.contains("Absent"));
        // A linear axis renders too, and an empty curve does not fail.
        let mut linear = curve();
        linear.log_y = false;
        assert!(svg_ok(&linear));
        let mut empty = curve();
        empty.series.clear();
        assert!(svg_ok(&empty));
    }

    fn svg_ok(curve: &Curve) -> bool {
        svg(curve, "leveldb", true).is_ok_and(|s| s.contains("quick mode"))
    }

    #[test]
    fn the_table_has_every_point_and_the_ratio() {
        let text = curve_markdown(&curve(), "redb", &|f| format!("bench/{f}"));
        assert!(text.contains("(bench/curve-c3-redb.svg)"), "{text}");
        assert!(
            text.contains("| 16 B | 45.0 µs (40.0–50.0) | 31.0 µs (30.0–33.0) |"),
            "{text}"
        );
        assert!(
            text.contains("rave follower get p50 ÷ Redis GET p50"),
            "{text}"
        );
        assert!(text.contains("skipped"), "{text}");
        assert!(text.contains("Skipped: not installed"), "{text}");
    }
}
