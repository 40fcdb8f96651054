//! The results table: every saved figure as one Markdown table, in figure order, the form
//! docs/benchmarks.md records.

use cosell_bench::results::FigureResults;

/// The Markdown table of `figures`, with a `met` column (✅ / ❌ / blank).
pub fn markdown(figures: &[FigureResults]) -> String {
    let mut out = String::from(
        "| # | figure | measure | value | spread | target | met |\n|---|---|---|---|---|---|---|\n",
    );
    for figure in figures {
        for row in &figure.rows {
            let met = match row.met {
                Some(true) => "✅",
                Some(false) => "❌",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {met} |\n",
                figure.figure, figure.title, row.measure, row.value, row.spread, row.target
            ));
        }
    }
    out
}

/// How each figure was measured, one line each.
pub fn methods(figures: &[FigureResults]) -> String {
    figures
        .iter()
        .map(|f| format!("- **{} {}**: {}\n", f.figure, f.title, f.method))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cosell_bench::results::Row;

    #[test]
    fn rows_show_their_verdicts() {
        let figure = FigureResults {
            figure: 4,
            title: "Webhook intake".into(),
            method: "m".into(),
            rows: vec![
                Row::judged("rate", "6000 /s", "", "≥ 5,000 /s", true),
                Row::judged("p99", "60 ms", "", "< 50 ms", false),
                Row::info("rss", "40 MiB", ""),
            ],
        };
        let table = markdown(&[figure]);
        assert!(table.contains("| 4 | Webhook intake | rate | 6000 /s |  | ≥ 5,000 /s | ✅ |"));
        assert!(table.contains("| p99 | 60 ms |  | < 50 ms | ❌ |"));
        assert!(table.contains("| rss | 40 MiB |  |  |  |"));
    }
}
