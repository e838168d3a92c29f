//! Figures and the three reports: BENCHMARKS.md (between markers), JSON, and an SVG chart.

use std::path::Path;

use rave::{Error, Result};
use serde::Serialize;

use crate::cli::Sizes;
use crate::machine::Machine;
use crate::stats::Summary;

/// What a target is checked against.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// rave ÷ baseline, run by run.
    Ratio,
    /// rave's own figure.
    Absolute,
    /// rave − baseline, run by run (the baseline is a cost rave cannot avoid).
    Excess,
}

/// A figure's goal.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is compared with `value`.
    pub basis: Basis,
    /// `true`: at most `value`; `false`: at least `value`.
    pub at_most: bool,
    /// The bound.
    pub value: f64,
}

impl Target {
    /// rave ÷ baseline ≤ `value`.
    pub fn ratio_at_most(value: f64) -> Self {
        Target {
            basis: Basis::Ratio,
            at_most: true,
            value,
        }
    }

    /// rave ÷ baseline ≥ `value`.
    pub fn ratio_at_least(value: f64) -> Self {
        Target {
            basis: Basis::Ratio,
            at_most: false,
            value,
        }
    }

    /// rave's figure ≤ `value`.
    pub fn absolute_at_most(value: f64) -> Self {
        Target {
            basis: Basis::Absolute,
            at_most: true,
            value,
        }
    }

    /// rave − baseline ≤ `value`.
    pub fn excess_at_most(value: f64) -> Self {
        Target {
            basis: Basis::Excess,
            at_most: true,
            value,
        }
    }

    fn describe(&self, unit: &str) -> String {
        let op = if self.at_most { "≤" } else { "≥" };
        match self.basis {
            Basis::Ratio => format!("{op} {}×", fmt_num(self.value)),
            Basis::Absolute => format!("{op} {} {unit}", fmt_num(self.value)),
            Basis::Excess => format!("{op} baseline + {} {unit}", fmt_num(self.value)),
        }
    }

    /// How far past the target `checked` is: ≥ 1 when met (for the chart).
    fn score(&self, checked: f64) -> f64 {
        let score = if self.at_most {
            if checked <= 0.0 {
                f64::INFINITY
            } else {
                self.value / checked
            }
        } else if self.value <= 0.0 {
            f64::INFINITY
        } else {
            checked / self.value
        };
        score.clamp(0.01, 100.0)
    }
}

/// One row of the report: rave's figure and its baseline, each run measured back to back.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// P1 to P8; a suffix (`P1·i`) marks a row given for information.
    pub id: String,
    /// What is measured.
    pub name: String,
    /// The unit of both figures.
    pub unit: String,
    /// Whether a larger figure is better (throughput) or worse (latency, memory).
    pub higher_is_better: bool,
    /// What rave's side is.
    pub subject: String,
    /// What the baseline is.
    pub baseline: String,
    /// rave's figure, run by run.
    pub subject_runs: Vec<f64>,
    /// The baseline, run by run.
    pub baseline_runs: Vec<f64>,
    /// The goal, if this row has one.
    pub target: Option<Target>,
    /// Why the row was not measured.
    pub skipped: Option<String>,
    /// What a reader must know to read the row right.
    pub note: Option<String>,
}

impl Figure {
    /// A figure `id` measuring `name` in `unit`; see the setters for the rest.
    pub fn new(id: impl Into<String>, name: impl Into<String>, unit: impl Into<String>) -> Self {
        Figure {
            id: id.into(),
            name: name.into(),
            unit: unit.into(),
            higher_is_better: false,
            subject: String::new(),
            baseline: String::new(),
            subject_runs: Vec::new(),
            baseline_runs: Vec::new(),
            target: None,
            skipped: None,
            note: None,
        }
    }

    /// A larger figure is better.
    pub fn higher_is_better(mut self) -> Self {
        self.higher_is_better = true;
        self
    }

    /// rave's side: what it is and its runs.
    pub fn subject(mut self, what: impl Into<String>, runs: Vec<f64>) -> Self {
        self.subject = what.into();
        self.subject_runs = runs;
        self
    }

    /// The baseline: what it is and its runs.
    pub fn baseline(mut self, what: impl Into<String>, runs: Vec<f64>) -> Self {
        self.baseline = what.into();
        self.baseline_runs = runs;
        self
    }

    /// The goal.
    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// A note shown under the table.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Marks the row as not measured, with the reason.
    pub fn skip(&mut self, why: impl Into<String>) {
        self.skipped = Some(why.into());
    }

    fn ratio_runs(&self) -> Vec<f64> {
        self.subject_runs
            .iter()
            .zip(&self.baseline_runs)
            // A ratio means nothing unless both sides are positive (a latency measured
            // between two events can be negative).
            .map(|(s, b)| {
                if *b <= 0.0 || *s <= 0.0 {
                    f64::NAN
                } else {
                    s / b
                }
            })
            .filter(|r| r.is_finite())
            .collect()
    }

    fn checked_runs(&self, basis: Basis) -> Vec<f64> {
        match basis {
            Basis::Ratio => self.ratio_runs(),
            Basis::Absolute => self.subject_runs.clone(),
            Basis::Excess => self
                .subject_runs
                .iter()
                .zip(&self.baseline_runs)
                .map(|(s, b)| s - b)
                .collect(),
        }
    }

    /// The figure with its summaries and verdict, as reported.
    pub fn result(&self) -> FigureResult {
        let checked = self
            .target
            .as_ref()
            .map(|t| Summary::of(&self.checked_runs(t.basis)).median);
        let met = match (&self.target, checked, &self.skipped) {
            (Some(t), Some(c), None) => Some(if t.at_most {
                c <= t.value
            } else {
                c >= t.value
            }),
            _ => None,
        };
        FigureResult {
            figure: self.clone(),
            subject_summary: Summary::of(&self.subject_runs),
            baseline_summary: Summary::of(&self.baseline_runs),
            ratio_runs: self.ratio_runs(),
            ratio_summary: Summary::of(&self.ratio_runs()),
            checked,
            met,
        }
    }
}

/// A figure with what was derived from its runs.
#[derive(Clone, Debug, Serialize)]
pub struct FigureResult {
    /// The figure as measured.
    #[serde(flatten)]
    pub figure: Figure,
    /// Median, min and max of rave's runs.
    pub subject_summary: Summary,
    /// Median, min and max of the baseline's runs.
    pub baseline_summary: Summary,
    /// rave ÷ baseline, run by run.
    pub ratio_runs: Vec<f64>,
    /// Median, min and max of the ratios.
    pub ratio_summary: Summary,
    /// The median of what the target checks (ratio, figure or excess).
    pub checked: Option<f64>,
    /// Whether the target is met (`None`: no target, or not measured).
    pub met: Option<bool>,
}

/// The figures of one engine.
#[derive(Clone, Debug)]
pub struct Section {
    /// The engine's name.
    pub engine: String,
    /// Its figures, in order.
    pub figures: Vec<Figure>,
    /// Its curves (C1 to C5), in order.
    pub curves: Vec<crate::curves::Curve>,
}

/// Everything one invocation measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The command that produced it.
    pub command: String,
    /// Whether sizes were the quick ones.
    pub quick: bool,
    /// The sizes used.
    pub sizes: Sizes,
    /// The machine, read at the start.
    pub machine: Machine,
    /// The load average at the end.
    pub load_average_after: String,
    /// Wall time of the whole run.
    pub elapsed_seconds: f64,
    /// One section per engine.
    pub sections: Vec<Section>,
}

#[derive(Serialize)]
struct JsonSection {
    engine: String,
    figures: Vec<FigureResult>,
    curves: Vec<crate::curves::CurveResult>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    command: &'a str,
    quick: bool,
    sizes: &'a Sizes,
    machine: &'a Machine,
    load_average_after: &'a str,
    elapsed_seconds: f64,
    sections: Vec<JsonSection>,
}

/// Writes the Markdown, JSON and SVG reports (creating their directories).
pub fn write_all(report: &Report, markdown: &Path, json: &Path, chart: &Path) -> Result<()> {
    for path in [markdown, json, chart] {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("create {}", parent.display()), &e))?;
        }
    }
    let json_report = JsonReport {
        command: &report.command,
        quick: report.quick,
        sizes: &report.sizes,
        machine: &report.machine,
        load_average_after: &report.load_average_after,
        elapsed_seconds: report.elapsed_seconds,
        sections: report
            .sections
            .iter()
            .map(|s| JsonSection {
                engine: s.engine.clone(),
                figures: s.figures.iter().map(Figure::result).collect(),
                curves: s.curves.iter().map(crate::curves::Curve::result).collect(),
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&json_report)
        .map_err(|e| Error::other(format!("encode the JSON report: {e}")))?;
    write(json, &(text + "\n"))?;
    write(chart, &chart_svg(report)?)?;
    let chart_link = relative_to(chart, markdown);
    // The curves' charts go beside the chart.
    let chart_dir = chart.parent().unwrap_or(Path::new(""));
    crate::curve_chart::write_svgs(report, chart_dir)?;
    let curve_link = |file: &str| relative_to(&chart_dir.join(file), markdown);
    let generated =
        markdown_section(report, &chart_link) + &crate::curve_chart::markdown(report, &curve_link);
    let existing = std::fs::read_to_string(markdown).unwrap_or_default();
    write(markdown, &splice(&existing, &generated))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("write {}", path.display()), &e))
}

/// `target`'s path as a link from the directory of `from` (both relative to the same place).
fn relative_to(target: &Path, from: &Path) -> String {
    let from_dir = from.parent().unwrap_or(Path::new(""));
    match target.strip_prefix(from_dir) {
        Ok(rest) => rest.display().to_string(),
        Err(_) => target.display().to_string(),
    }
}

/// The first marker of the generated part of BENCHMARKS.md.
pub const BEGIN: &str = "<!-- BEGIN rave-bench: generated by the harness, do not edit by hand -->";
/// The last marker of the generated part of BENCHMARKS.md.
pub const END: &str = "<!-- END rave-bench -->";

/// Replaces the generated part of `existing` (between the markers) with `generated`; a file
/// without markers gets a title, the generated part, and keeps its text below.
fn splice(existing: &str, generated: &str) -> String {
    let block = format!("{BEGIN}\n{generated}{END}\n");
    if let (Some(start), Some(end)) = (existing.find(BEGIN), existing.find(END))
        && start < end
    {
        let after = &existing[end + END.len()..];
        let after = after.strip_prefix('\n').unwrap_or(after);
        return format!("{}{block}{after}", &existing[..start]);
    }
    if existing.trim().is_empty() {
        format!("# Benchmarks\n\n{block}")
    } else {
        format!("# Benchmarks\n\n{block}\n{existing}")
    }
}

/// A number with a precision that suits its size; thousands separated by thin spaces.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a >= 10_000.0 {
        let digits = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push('\u{202f}');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_summary(s: &crate::stats::Summary, unit: &str, runs: usize) -> String {
    if runs > 1 {
        format!(
            "{} {unit} ({}–{})",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        )
    } else {
        format!("{} {unit}", fmt_num(s.median))
    }
}

fn markdown_section(report: &Report, chart_link: &str) -> String {
    let m = &report.machine;
    let mut out = String::new();
    let push = |out: &mut String, s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    if report.quick {
        push(
            &mut out,
            "> **Quick mode**: tiny sizes and one run, to keep the harness working. These numbers say nothing about speed.\n",
        );
    }
    push(
        &mut out,
        &format!(
            "Produced by `{}` on {}{}, in {:.0} s. Each figure is the median of {} run(s) \
             (min–max in brackets); rave and its baseline are measured back to back in every run, \
             and the ratio is rave ÷ baseline run by run (its median is reported).\n",
            report.command,
            m.date,
            m.commit
                .as_ref()
                .map(|c| format!(" at commit {c}"))
                .unwrap_or_default(),
            report.elapsed_seconds,
            report.sizes.runs
        ),
    );
    push(&mut out, "**Machine**\n");
    push(&mut out, &format!("- CPU: {} × {}", m.nproc, m.cpu_model));
    push(&mut out, &format!("- Memory: {:.1} GiB", m.memory_gib));
    push(&mut out, &format!("- Kernel: Linux {}", m.kernel));
    push(
        &mut out,
        &format!(
            "- Load average (1, 5, 15 min): {} at the start, {} at the end (the machine is shared: \
             other builds may have run meanwhile)\n",
            m.load_average, report.load_average_after
        ),
    );
    push(
        &mut out,
        &format!("![ratio against target per figure]({chart_link})\n"),
    );
    for section in &report.sections {
        push(&mut out, &format!("### Engine: {}\n", section.engine));
        push(
            &mut out,
            "| # | figure | rave | baseline | rave ÷ baseline | target | met |",
        );
        push(&mut out, "|---|---|---|---|---|---|---|");
        let mut legend: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        for fig in &section.figures {
            let r = fig.result();
            let runs = fig.subject_runs.len();
            if let Some(why) = &fig.skipped {
                push(
                    &mut out,
                    &format!(
                        "| {} | {} | – | – | – | {} | {} |",
                        fig.id,
                        fig.name,
                        fig.target
                            .as_ref()
                            .map_or("–".into(), |t| t.describe(&fig.unit)),
                        why
                    ),
                );
                continue;
            }
            let ratio = if r.ratio_runs.is_empty() {
                "–".to_string()
            } else if runs > 1 {
                format!(
                    "{}× ({}–{})",
                    fmt_num(r.ratio_summary.median),
                    fmt_num(r.ratio_summary.min),
                    fmt_num(r.ratio_summary.max)
                )
            } else {
                format!("{}×", fmt_num(r.ratio_summary.median))
            };
            let met = match r.met {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "(info)",
            };
            let target = match (&fig.target, r.checked) {
                (Some(t), Some(c)) if t.basis == Basis::Excess => {
                    format!(
                        "{} (excess {} {})",
                        t.describe(&fig.unit),
                        fmt_num(c),
                        fig.unit
                    )
                }
                (Some(t), _) => t.describe(&fig.unit),
                (None, _) => "–".into(),
            };
            push(
                &mut out,
                &format!(
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    fig.id,
                    fig.name,
                    fmt_summary(&r.subject_summary, &fig.unit, runs),
                    fmt_summary(&r.baseline_summary, &fig.unit, runs),
                    ratio,
                    target,
                    met
                ),
            );
            // Rows that compare the same two things share one line.
            let compared = format!("rave = {}; baseline = {}.", fig.subject, fig.baseline);
            match legend.iter_mut().find(|(c, _, _)| *c == compared) {
                Some((_, names, notes)) => {
                    names.push(format!("{} {}", fig.id, fig.name));
                    notes.extend(fig.note.clone());
                }
                None => legend.push((
                    compared,
                    vec![format!("{} {}", fig.id, fig.name)],
                    fig.note.iter().cloned().collect::<Vec<_>>(),
                )),
            }
        }
        push(&mut out, "\nWhat each row compares:\n");
        for (compared, names, notes) in legend {
            let mut line = format!("- **{}**: {compared}", names.join("; "));
            for note in notes {
                line.push(' ');
                line.push_str(&note);
            }
            push(&mut out, &line);
        }
        push(&mut out, "");
    }
    let s = &report.sizes;
    push(
        &mut out,
        &format!(
            "Sizes: {} keys of 16 B with {} B values; {} sequential gets and {} pipelined gets per run; \
             P4 {} gets and {} puts; P5 {} processes × {} writers for {} s; P6 {} failovers and {} \
             engine opens per run; P7 {} entries of 12 B + 16 B; P8 {} followers; W1 {} puts \
             one at a time per pass; W2 {} s per measurement, {} in flight, 1 and {} watchers.",
            s.keys,
            s.value_size,
            s.latency_ops,
            s.pipelined_ops,
            s.leader_gets,
            s.leader_puts,
            s.writer_processes,
            s.writers_per_process,
            s.durable_seconds,
            s.failovers,
            s.engine_opens,
            s.scan_entries,
            s.followers,
            s.watch_puts,
            s.watch_seconds,
            s.watch_in_flight,
            s.watchers
        ),
    );
    out
}

/// The chart: for every row with a target, how far past (right of 1) or short of (left of 1)
/// its target it is, on a log scale, green when met and red when not.
fn chart_svg(report: &Report) -> Result<String> {
    use plotters::prelude::*;

    struct Bar {
        label: String,
        score: f64,
        met: bool,
        text: String,
    }
    let mut bars = Vec::new();
    for section in &report.sections {
        for fig in &section.figures {
            let r = fig.result();
            let (Some(target), Some(checked), Some(met)) = (&fig.target, r.checked, r.met) else {
                continue;
            };
            let shown = match target.basis {
                Basis::Ratio => format!("{}×", fmt_num(checked)),
                Basis::Absolute => format!("{} {}", fmt_num(checked), fig.unit),
                Basis::Excess => format!("+{} {}", fmt_num(checked), fig.unit),
            };
            bars.push(Bar {
                label: format!("{} {} {}", section.engine, fig.id, short_name(&fig.name)),
                score: target.score(checked),
                met,
                text: format!("{shown} (target {})", target.describe(&fig.unit)),
            });
        }
    }
    let rows = bars.len().max(1);
    let height = 90 + 26 * rows as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (980, height)).into_drawing_area();
        let err =
            |e: DrawingAreaErrorKind<std::io::Error>| Error::other(format!("draw the chart: {e}"));
        root.fill(&WHITE).map_err(err)?;
        let title = if report.quick {
            "rave vs target (quick mode: not a measurement)"
        } else {
            "rave vs target: right of 1 = target met (log scale)"
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(300)
            .build_cartesian_2d((0.05f64..20.0f64).log_scale(), 0f64..rows as f64)
            .map_err(err)?;
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows * 2 + 1)
            .y_label_formatter(&|y| {
                // Labels sit at the middle of each row (k + 0.5); rows run top to bottom.
                let k = (*y - 0.5).round();
                if (*y - 0.5 - k).abs() > 1e-6 || k < 0.0 {
                    return String::new();
                }
                let i = rows - 1 - k as usize;
                labels.get(i).cloned().unwrap_or_default()
            })
            .x_desc("score: achieved ÷ target (≥ 1 met)")
            .draw()
            .map_err(err)?;
        for (i, bar) in bars.iter().enumerate() {
            let y = (rows - 1 - i) as f64;
            let color = if bar.met {
                RGBColor(46, 160, 67)
            } else {
                RGBColor(207, 34, 46)
            };
            let x = bar.score.clamp(0.05, 20.0);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.05, y + 0.2), (x, y + 0.8)],
                    color.filled(),
                )))
                .map_err(err)?;
            // A long (met) bar carries its label inside, in white; a short one beside it.
            let (at, style) = if x >= 1.0 {
                (0.055, ("sans-serif", 12).into_font().color(&WHITE))
            } else {
                (x * 1.08, ("sans-serif", 12).into_font().color(&BLACK))
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    bar.text.clone(),
                    (at, y + 0.65),
                    style,
                )))
                .map_err(err)?;
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(1.0, 0.0), (1.0, rows as f64)],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The figure's name without its details (the part before a comma).
fn short_name(name: &str) -> &str {
    name.split(" (").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splicing_keeps_the_hand_written_text() {
        let first = splice("", "table\n");
        assert!(first.starts_with("# Benchmarks"));
        assert!(first.contains("table"));
        let edited = format!("{first}\n## Analysis\nmine\n");
        let second = splice(&edited, "new table\n");
        assert!(second.contains("new table"));
        assert!(!second.contains("\ntable\n"));
        assert!(second.contains("## Analysis\nmine"));
        let plain = splice("notes\n", "t\n");
        assert!(plain.contains("notes") && plain.contains(BEGIN));
    }

    #[test]
    fn verdicts_follow_the_target() {
        let fig = Figure::new("P2", "x", "ops/s")
            .higher_is_better()
            .subject("rave", vec![90.0, 110.0, 100.0])
            .baseline("redis", vec![100.0, 100.0, 100.0])
            .target(Target::ratio_at_least(1.0));
        let r = fig.result();
        assert_eq!(r.ratio_summary.median, 1.0);
        assert_eq!(r.met, Some(true));
        let fig = Figure::new("P6", "x", "ms")
            .subject("rave", vec![30.0, 31.0])
            .baseline("open", vec![15.0, 15.0])
            .target(Target::excess_at_most(10.0));
        assert_eq!(fig.result().met, Some(false));
        let mut fig = fig;
        fig.skip("absent");
        assert_eq!(fig.result().met, None);
    }

    #[test]
    fn ratios_need_two_positive_sides() {
        let fig = Figure::new("W1", "x", "µs")
            .subject("rave", vec![-5.0, 10.0, 4.0])
            .baseline("redis", vec![5.0, 5.0, -1.0]);
        assert_eq!(fig.result().ratio_runs, vec![2.0]);
    }

    #[test]
    fn numbers_are_readable() {
        assert_eq!(fmt_num(26232.9), "26\u{202f}233");
        assert_eq!(fmt_num(1234.4), "1234");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.1234), "0.123");
    }

    #[test]
    fn the_chart_renders_text_without_system_fonts() {
        let report = Report {
            command: "rave-bench".into(),
            quick: true,
            sizes: crate::cli::Sizes::new(true, None),
            machine: Machine::read(),
            load_average_after: "0 0 0".into(),
            elapsed_seconds: 1.0,
            sections: vec![Section {
                engine: "redb".into(),
                figures: vec![
                    Figure::new("P2", "throughput", "ops/s")
                        .subject("rave", vec![90.0])
                        .baseline("redis", vec![100.0])
                        .target(Target::ratio_at_least(1.0)),
                ],
                curves: vec![],
            }],
        };
        let svg = chart_svg(&report).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("redb P2 throughput"), "{svg}");
        assert!(svg.contains("0.900×"));
    }
}
