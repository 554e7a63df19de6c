//! The SVG loss / accuracy curve of a run, drawn from its JSONL metrics.

use std::path::Path;

use plotters::prelude::*;

use crate::{Error, Result};

/// Training loss per step (and a moving average) and dev accuracy, read from `metrics`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Curves {
    pub loss: Vec<(u64, f64)>,
    pub dev_accuracy: Vec<(u64, f64)>,
}

/// Parses the metrics lines the training loop writes (a resumed run appends; a later line
/// for the same step replaces an earlier one).
pub fn read_curves(metrics: &Path) -> Result<Curves> {
    let text = std::fs::read_to_string(metrics).map_err(|e| Error::io(metrics, e))?;
    let mut loss = std::collections::BTreeMap::new();
    let mut dev = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::format(metrics, format!("line {}: {e}", i + 1)))?;
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        match v.get("type").and_then(|t| t.as_str()) {
            Some("step") => {
                if let (Some(s), Some(l)) = (num("step"), num("loss")) {
                    if l.is_finite() {
                        loss.insert(s as u64, l);
                    }
                }
            }
            Some("eval") => {
                if let (Some(a), Some(acc)) = (num("after"), num("accuracy")) {
                    dev.insert(a as u64, acc);
                }
            }
            _ => {}
        }
    }
    Ok(Curves {
        loss: loss.into_iter().collect(),
        dev_accuracy: dev.into_iter().collect(),
    })
}

/// Trailing moving average over `w` points.
fn smooth(points: &[(u64, f64)], w: usize) -> Vec<(u64, f64)> {
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(s, l))| {
            sum += l;
            if i >= w {
                sum -= points[i - w].1;
            }
            (s, sum / (i + 1).min(w) as f64)
        })
        .collect()
}

/// Writes the curve of `metrics` to `svg`.
pub fn write_curve(metrics: &Path, svg: &Path) -> Result<()> {
    let c = read_curves(metrics)?;
    draw(&c, svg).map_err(|e| Error::format(svg, format!("drawing the curve failed: {e}")))
}

fn draw(c: &Curves, svg: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(svg, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let max_step = c
        .loss
        .last()
        .map(|p| p.0)
        .max(c.dev_accuracy.last().map(|p| p.0))
        .unwrap_or(1)
        .max(1);
    let (lo, hi) = c
        .loss
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0u64..max_step, lo..hi)?;
    chart.configure_mesh().x_desc("step").draw()?;
    chart.draw_series(LineSeries::new(
        c.loss.iter().copied(),
        RGBColor(180, 180, 220),
    ))?;
    let w = (c.loss.len() / 20).max(1);
    chart.draw_series(LineSeries::new(smooth(&c.loss, w), BLUE.stroke_width(2)))?;

    let mut chart = ChartBuilder::on(&right)
        .caption("dev accuracy", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0u64..max_step, 0f64..1f64)?;
    chart.configure_mesh().x_desc("steps done").draw()?;
    chart.draw_series(LineSeries::new(c.dev_accuracy.iter().copied(), RED))?;
    chart.draw_series(
        c.dev_accuracy
            .iter()
            .map(|&p| Circle::new(p, 3, RED.filled())),
    )?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_uses_trailing_window() {
        let p = [(0, 1.0), (1, 3.0), (2, 5.0)];
        assert_eq!(smooth(&p, 2), vec![(0, 1.0), (1, 2.0), (2, 4.0)]);
    }
}
