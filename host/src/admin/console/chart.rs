//! Line charts of the last hour as inline SVG: the numbers are turned into `points` of
//! `<polyline>`s here, the template draws them. No script, no style attribute (the console's
//! Content-Security-Policy allows neither): colours come from the vendored stylesheet by class.

use super::history::WINDOW;

/// Drawing size in SVG user units (the stylesheet scales the SVG to the page).
pub(super) const WIDTH: f64 = 600.0;
pub(super) const HEIGHT: f64 = 120.0;

/// One line of a chart.
pub(super) struct Line {
    pub name: &'static str,
    /// CSS class (`line-a`, `line-b`) that gives it its colour.
    pub class: &'static str,
    /// `x,y x,y …`
    pub points: String,
}

/// One series to draw: its name, its CSS class, its (unix seconds, value) points.
pub(super) type Series = (&'static str, &'static str, Vec<(f64, f64)>);

/// A chart of the last hour (or of the time since the host started, when that is shorter).
pub(super) struct Chart {
    pub title: &'static str,
    /// The time the chart spans, for its caption: `last hour`, `last 5 min`.
    pub span: String,
    /// The value at the top edge, as shown.
    pub top: String,
    pub lines: Vec<Line>,
    /// Whether there is anything to draw (fewer than two readings yet).
    pub empty: bool,
}

impl Chart {
    /// A chart of `series` ((name, class, (unix seconds, value) points)) ending at `now`.
    pub(super) fn new(title: &'static str, now: f64, series: Vec<Series>) -> Self {
        let max = series
            .iter()
            .flat_map(|(_, _, points)| points.iter().map(|p| p.1))
            .fold(0.0_f64, f64::max);
        // A flat zero line sits at the bottom with a top of 1, not a division by zero.
        let top = if max > 0.0 { max * 1.1 } else { 1.0 };
        // Until the host has run an hour, the chart spans the time it has readings for (at
        // least a minute), so the first minutes are not a sliver at the right edge.
        let window = WINDOW.as_secs_f64();
        let earliest = series
            .iter()
            .flat_map(|(_, _, points)| points.iter().map(|p| p.0))
            .fold(now, f64::min);
        let width = (now - earliest).clamp(60.0, window);
        let start = now - width;
        let empty = series.iter().all(|(_, _, points)| points.len() < 2);
        let lines = series
            .into_iter()
            .map(|(name, class, points)| Line {
                name,
                class,
                points: points
                    .iter()
                    .filter(|(t, _)| *t >= start)
                    .map(|(t, v)| {
                        let x = (t - start) / width * WIDTH;
                        let y = HEIGHT - v / top * HEIGHT;
                        format!("{x:.1},{y:.1}")
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect();
        let span = if width >= window {
            "last hour".to_owned()
        } else {
            format!("last {:.0} min", (width / 60.0).ceil())
        };
        Self {
            title,
            span,
            top: format_number(top),
            lines,
            empty,
        }
    }
}

/// A number for people: whole numbers without decimals, others with one.
pub(super) fn format_number(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_span_the_hour_and_the_height() {
        let now = 10_000.0;
        let chart = Chart::new(
            "t",
            now,
            vec![(
                "a",
                "line-a",
                vec![(now - 3600.0, 0.0), (now, 10.0), (now - 7200.0, 5.0)],
            )],
        );
        assert_eq!(chart.lines[0].points, "0.0,120.0 600.0,10.9");
        assert_eq!(chart.top, "11");
        assert_eq!(chart.span, "last hour");
        assert!(!chart.empty);
        // Ten minutes of readings span the whole width.
        let chart = Chart::new(
            "t",
            now,
            vec![("a", "line-a", vec![(now - 600.0, 1.0), (now, 1.0)])],
        );
        assert_eq!(chart.lines[0].points, "0.0,10.9 600.0,10.9");
        assert_eq!(chart.span, "last 10 min");
    }
}
