//! The SVG chart of the scaling section: one panel per axis, µs per call against a
//! logarithmic x axis, a line per series. Drawn with plotters' SVG backend alone,
//! which writes text as SVG `<text>` elements: no font files, no system libraries.

use std::path::Path;

use plotters::prelude::*;

use crate::scaling::{Axis, Scaling};

type Failure = Box<dyn std::error::Error>;

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

/// Writes the chart of `scaling` to `path`, headed by `title`.
pub fn write(path: &Path, title: &str, scaling: &Scaling) -> Result<(), Failure> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let panels = root.split_evenly((1, 2));
    for (area, axis) in panels.iter().zip([&scaling.held, &scaling.tasks]) {
        panel(area, axis)?;
    }
    root.present()?;
    Ok(())
}

/// One axis of the section, drawn on `area`.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    axis: &Axis,
) -> Result<(), Failure> {
    let points = || axis.series.iter().flat_map(|s| &s.points);
    let x_max = points().map(|p| p.x).max().unwrap_or(1) as f64;
    let y_max = points().map(|p| p.micros).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(short_title(axis), ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0.8..x_max * 1.25).log_scale(), 0.0..y_max * 1.15)?;
    chart
        .configure_mesh()
        .x_desc(axis.x_label)
        .y_desc("µs per call")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (line, color) in axis.series.iter().zip(COLORS.iter().cycle()) {
        let xy = || line.points.iter().map(|p| (p.x as f64, p.micros));
        chart
            .draw_series(LineSeries::new(xy(), color.stroke_width(2)))?
            .label(line.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(xy().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The axis' title up to its parenthesis (the panel is narrow).
fn short_title(axis: &Axis) -> &str {
    axis.title.split(" (").next().unwrap_or(axis.title)
}
