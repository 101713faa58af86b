//! Figures, their statistics (median, p99) and the markdown tables the benchmark prints.

/// Which direction of a figure is the good one.
#[derive(Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
}

/// One measured figure of one backend.
pub struct Figure {
    pub name: &'static str,
    /// None when the figure does not apply to this backend.
    pub value: Option<f64>,
    pub decimals: usize,
    pub better: Better,
    /// How it was measured: samples, spread.
    pub detail: String,
    /// The measurement failed; `detail` says why.
    pub failed: bool,
}

impl Figure {
    pub fn new(
        name: &'static str,
        value: f64,
        decimals: usize,
        better: Better,
        detail: String,
    ) -> Figure {
        Figure {
            name,
            value: Some(value),
            decimals,
            better,
            detail,
            failed: false,
        }
    }

    /// A figure that does not apply to this backend.
    pub fn absent(name: &'static str, detail: &str) -> Figure {
        Figure {
            name,
            value: None,
            decimals: 0,
            better: Better::Lower,
            detail: detail.to_string(),
            failed: false,
        }
    }

    pub fn failed(name: &'static str, error: String) -> Figure {
        Figure {
            name,
            value: None,
            decimals: 0,
            better: Better::Lower,
            detail: format!("failed: {error}"),
            failed: true,
        }
    }

    fn value_text(&self) -> String {
        match self.value {
            Some(v) => format!("{v:.prec$}", prec = self.decimals),
            None if self.failed => "**failed**".to_string(),
            None => "–".to_string(),
        }
    }
}

pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The nearest-rank percentile (`p` in 0..=100).
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "median of N (min–max)" for a detail column.
pub fn spread(samples: &[f64], decimals: usize) -> String {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "median of {} (min {min:.decimals$}, max {max:.decimals$})",
        samples.len()
    )
}

pub fn backend_table(title: &str, figures: &[Figure]) -> String {
    let mut out = format!("### {title}\n\n| metric | median | how |\n|---|---|---|\n");
    for figure in figures {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            figure.name,
            figure.value_text(),
            figure.detail
        ));
    }
    out
}

pub fn comparison_table(embedded: &[Figure], etcd: &[Figure]) -> String {
    let mut out = String::from(
        "### embedded / etcd\n\n| metric | embedded | etcd | embedded/etcd | better |\n|---|---|---|---|---|\n",
    );
    for (ours, theirs) in embedded.iter().zip(etcd) {
        let ratio = match (ours.value, theirs.value) {
            (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
            _ => "–".to_string(),
        };
        let better = match ours.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {ratio} | {better} |\n",
            ours.name,
            ours.value_text(),
            theirs.value_text()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentile() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let hundred: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 99.0), 198.0);
        assert_eq!(percentile(&hundred, 50.0), 100.0);
    }
}
