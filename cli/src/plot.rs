//! `bench --plot FILE.svg`: the comparison as an SVG chart, drawn with plotters.

use std::path::Path;

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{times, Report};

/// Draws one bar per backend (median seconds, shorter is faster) with a min-max whisker when
/// there were repetitions, labelled with the speedup over serial, and writes it to `path`.
pub fn write_svg(report: &Report, path: &Path) -> Result<(), String> {
    draw(report, path).map_err(|e| format!("cannot write the chart to {}: {e}", path.display()))
}

fn draw(report: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = report.results.len();
    let top = report
        .results
        .iter()
        .map(|r| r.max_s)
        .fold(0.0_f64, f64::max)
        .max(1e-6)
        * 1.2;
    let caption = format!(
        "{} workload, {}..{}, {} mode, {} workers ({} CPUs, {})",
        report.workload,
        report.values.start,
        report.values.end,
        report.mode,
        report.workers,
        report.machine.cpus,
        report.machine.os
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(Slots(n), 0.0..top)?;
    let names: Vec<&str> = report.results.iter().map(|r| r.backend.as_str()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .y_desc("seconds (pool creation + work + shutdown)")
        .x_label_formatter(&|x| names.get(*x as usize).copied().unwrap_or("").to_owned())
        .draw()?;
    chart.draw_series(report.results.iter().enumerate().map(|(i, r)| {
        let color = Palette99::pick(i).mix(0.85);
        let x = i as f64;
        Rectangle::new([(x + 0.12, 0.0), (x + 0.88, r.median_s)], color.filled())
    }))?;
    if report.repeat > 1 {
        chart.draw_series(report.results.iter().enumerate().map(|(i, r)| {
            ErrorBar::new_vertical(
                i as f64 + 0.5,
                r.min_s,
                r.median_s,
                r.max_s,
                BLACK.stroke_width(2),
                12,
            )
        }))?;
    }
    let label_style = TextStyle::from(("sans-serif", 15).into_font())
        .pos(Pos::new(HPos::Center, VPos::Bottom))
        .color(&BLACK);
    chart.draw_series(report.results.iter().enumerate().map(|(i, r)| {
        Text::new(
            format!("{:.3} s, {}", r.median_s, times(r.speedup_vs_serial)),
            (i as f64 + 0.5, r.max_s + top * 0.02),
            label_style.clone(),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// The x axis: backend `i` owns the interval `i..i+1`, labelled at its centre. (plotters'
/// segmented integer axis adds an empty slot after the last value.)
struct Slots(usize);

impl Ranged for Slots {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let width = f64::from(limit.1 - limit.0);
        limit.0 + (value / self.0.max(1) as f64 * width).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> Range<f64> {
        0.0..self.0.max(1) as f64
    }
}
