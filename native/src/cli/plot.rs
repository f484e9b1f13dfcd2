//! `bench --plot FILE.svg`: the comparison as an SVG chart, drawn with plotters.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::Report;

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
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)?;
    let names: Vec<&str> = report.results.iter().map(|r| r.backend).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("seconds (pool creation + work + shutdown)")
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i).copied().unwrap_or("").to_owned(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(report.results.iter().enumerate().map(|(i, r)| {
        let color = Palette99::pick(i).mix(0.85);
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), r.median_s),
            ],
            color.filled(),
        );
        bar.set_margin(0, 0, 18, 18);
        bar
    }))?;
    if report.repeat > 1 {
        chart.draw_series(report.results.iter().enumerate().map(|(i, r)| {
            ErrorBar::new_vertical(
                SegmentValue::CenterOf(i),
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
            format!("{:.3} s, {:.2}x", r.median_s, r.speedup_vs_serial),
            (SegmentValue::CenterOf(i), r.max_s + top * 0.02),
            label_style.clone(),
        )
    }))?;
    root.present()?;
    Ok(())
}
