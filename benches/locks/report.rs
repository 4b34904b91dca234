//! What a group's numbers say: its members' ratios to the baseline and to the limit
//! (of the medians, and round by round), the verdicts on its targets, and its table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::harness::{Group, Measured, Plan, Shape, Target};
use crate::stats::{median, quantile};

pub struct Report {
    pub group: Group,
    pub plan: Plan,
    pub rows: Vec<Measured>,
    pub elapsed: Duration,
}

/// How a target or check came out.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub group: &'static str,
    pub what: String,
    pub target: String,
    /// Ratio of medians: how the targets are stated.
    pub ratio: f64,
    pub met: bool,
    /// Median of the per-round ratios: the steadier reading on a loaded machine.
    pub paired: f64,
    pub paired_met: bool,
    /// One of the targets (else: shown for information).
    pub counts: bool,
}

/// A member's value over a reference member's: of the medians, and the p10, median
/// and p90 of the ratios of batches of the same round.
#[derive(Clone, Copy, Debug)]
struct Ratios {
    medians: f64,
    p10: f64,
    paired: f64,
    p90: f64,
}

impl Ratios {
    fn of(row: &Measured, reference: &Measured) -> Ratios {
        let per_round: Vec<f64> = row
            .values
            .iter()
            .zip(&reference.values)
            .map(|(v, r)| v / r)
            .collect();
        Ratios {
            medians: median(&row.values) / median(&reference.values),
            p10: quantile(&per_round, 0.1),
            paired: median(&per_round),
            p90: quantile(&per_round, 0.9),
        }
    }

    /// The two table cells: ratio of medians, per-round median (p10–p90).
    fn cells(self) -> (String, String) {
        (
            format!("{:.3}", self.medians),
            format!("{:.3} ({:.3}–{:.3})", self.paired, self.p10, self.p90),
        )
    }
}

/// A target on a member's ratio to a reference member.
struct Bound<'a> {
    row: &'a Measured,
    reference: &'a Measured,
    target: Target,
}

impl Bound<'_> {
    fn verdict(&self, group: &'static str) -> Verdict {
        let r = Ratios::of(self.row, self.reference);
        Verdict {
            group,
            what: format!("{} vs {}", self.row.member.id, self.reference.member.id),
            target: self.target.text(),
            ratio: r.medians,
            met: self.target.met(r.medians),
            paired: r.paired,
            paired_met: self.target.met(r.paired),
            counts: true,
        }
    }

    /// "≤ 0.60 × raw", as the table's target column says it.
    fn text(&self) -> String {
        format!("{} × {}", self.target.text(), self.reference.member.id)
    }
}

impl Report {
    fn row(&self, id: &str) -> Option<&Measured> {
        self.rows
            .iter()
            .find(|r| r.member.id == id && !r.values.is_empty())
    }

    fn baseline(&self) -> &Measured {
        &self.rows[0]
    }

    fn limit(&self) -> Option<&Measured> {
        self.row(self.group.limit?)
    }

    /// Every target of `row`: to the baseline, to the limit, then to other members.
    fn bounds<'a>(&'a self, row: &'a Measured) -> Vec<Bound<'a>> {
        let mut out = Vec::new();
        if row.values.is_empty() || std::ptr::eq(row, self.baseline()) {
            return out;
        }
        if let Some(target) = row.member.target {
            let reference = self.baseline();
            out.push(Bound {
                row,
                reference,
                target,
            });
        }
        if let Some(reference) = self.limit() {
            for (_, target) in self
                .group
                .limit_targets
                .iter()
                .filter(|(id, _)| *id == row.member.id)
            {
                out.push(Bound {
                    row,
                    reference,
                    target: *target,
                });
            }
        }
        for (_, reference, target) in self
            .group
            .versus
            .iter()
            .filter(|(id, _, _)| *id == row.member.id)
        {
            if let Some(reference) = self.row(reference) {
                out.push(Bound {
                    row,
                    reference,
                    target: *target,
                });
            }
        }
        out
    }

    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut out: Vec<Verdict> = self
            .rows
            .iter()
            .flat_map(|row| self.bounds(row))
            .map(|b| b.verdict(self.group.name))
            .collect();
        out.extend(self.check_verdicts());
        out
    }

    /// The verdicts of the group's targets on a member other than the baseline.
    fn versus_verdicts(&self) -> Vec<Verdict> {
        self.group
            .versus
            .iter()
            .filter_map(|(id, reference, target)| {
                Some(
                    Bound {
                        row: self.row(id)?,
                        reference: self.row(reference)?,
                        target: *target,
                    }
                    .verdict(self.group.name),
                )
            })
            .collect()
    }

    /// The group's "`faster` is at least `factor`× faster than `slower`" checks.
    fn check_verdicts(&self) -> Vec<Verdict> {
        let mut out = Vec::new();
        for check in &self.group.checks {
            let (Some(fast), Some(slow)) = (self.row(check.faster), self.row(check.slower)) else {
                continue;
            };
            let r = Ratios::of(slow, fast);
            out.push(Verdict {
                group: self.group.name,
                what: format!(
                    "{} faster than {}{}",
                    check.faster,
                    check.slower,
                    if check.target { "" } else { " (info)" }
                ),
                target: format!("≥ {:.2}×", check.factor),
                ratio: r.medians,
                met: r.medians >= check.factor,
                paired: r.paired,
                paired_met: r.paired >= check.factor,
                counts: check.target,
            });
        }
        out
    }

    /// The group's table, in Markdown.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let g = &self.group;
        let _ = writeln!(s, "### `{}`: {}\n", g.name, g.what);
        let _ = writeln!(s, "{}", self.header());
        for row in &self.rows {
            let _ = writeln!(s, "{}", self.line(row));
        }
        let _ = writeln!(s);
        for row in &self.rows {
            let _ = writeln!(s, "- `{}`: {}", row.member.id, row.member.what);
        }
        if !g.checks.is_empty() {
            let _ = writeln!(s);
            for v in self.check_verdicts() {
                let _ = writeln!(
                    s,
                    "- {}: **{:.2}×** (per-round median {:.2}×; target {}){}",
                    v.what,
                    v.ratio,
                    v.paired,
                    v.target,
                    match (self.plan.judge, v.met) {
                        (false, _) => "",
                        (true, true) => ": met",
                        (true, false) => ": **MISSED**",
                    }
                );
            }
        }
        if !g.versus.is_empty() {
            let _ = writeln!(s);
            for v in self.versus_verdicts() {
                let _ = writeln!(
                    s,
                    "- {}: **{:.3}** (per-round median {:.3}; target {}){}",
                    v.what,
                    v.ratio,
                    v.paired,
                    v.target,
                    match (self.plan.judge, v.met) {
                        (false, _) => "",
                        (true, true) => ": met",
                        (true, false) => ": **MISSED**",
                    }
                );
            }
        }
        let _ = writeln!(
            s,
            "\n{} rounds after {} warm-up; {}; {:.1} s.\n",
            self.rows[0].values.len(),
            self.plan.warmup,
            match g.shape {
                Shape::Latency => format!("{} calls per batch", self.plan.calls),
                Shape::Throughput => format!("{} ms per batch", self.plan.window.as_millis()),
            },
            self.elapsed.as_secs_f64()
        );
        s
    }

    /// The table's header and alignment rows.
    fn header(&self) -> String {
        let (unit, spread, ratio) = match self.group.shape {
            Shape::Latency => ("median µs/call", "p10–p90 µs", "time"),
            Shape::Throughput => ("median calls/s", "p10–p90 calls/s", "rate"),
        };
        let base = self.baseline().member.id;
        let mut head = format!(
            "| scenario | {unit} | {spread} | {ratio} ÷ `{base}` (medians) | ÷ `{base}` per round: median (p10–p90) |"
        );
        let mut align = String::from("|---|---:|---:|---:|---:|");
        if let Some(limit) = self.limit() {
            let limit = limit.member.id;
            let _ = write!(
                head,
                " {ratio} ÷ `{limit}` (medians) | ÷ `{limit}` per round: median (p10–p90) |"
            );
            align.push_str("---:|---:|");
        }
        head.push_str(" target | | client CPU µs/call | calls |");
        align.push_str("---:|---|---:|---:|");
        format!("{head}\n{align}")
    }

    /// One member's row of the table.
    fn line(&self, row: &Measured) -> String {
        let show = |v: f64| match self.group.shape {
            Shape::Latency => format!("{:.1}", v * 1e6),
            Shape::Throughput => format!("{v:.0}"),
        };
        let mut s = format!(
            "| `{}` | {} | {}–{} |",
            row.member.id,
            show(median(&row.values)),
            show(quantile(&row.values, 0.1)),
            show(quantile(&row.values, 0.9)),
        );
        let mut references = vec![(self.baseline(), "1 (baseline)")];
        references.extend(self.limit().map(|limit| (limit, "1 (limit)")));
        for (reference, itself) in references {
            let (medians, paired) = if std::ptr::eq(row, reference) {
                (itself.to_string(), "—".to_string())
            } else if row.values.is_empty() {
                ("—".to_string(), "—".to_string())
            } else {
                Ratios::of(row, reference).cells()
            };
            let _ = write!(s, " {medians} | {paired} |");
        }
        let bounds = self.bounds(row);
        let targets: Vec<String> = bounds.iter().map(Bound::text).collect();
        let met = bounds.iter().all(|b| b.verdict(self.group.name).met);
        let verdict = match (bounds.is_empty(), self.plan.judge, met) {
            (true, _, _) if std::ptr::eq(row, self.baseline()) => "",
            (true, _, _) => "info",
            (false, false, _) => "(not judged)",
            (false, true, true) => "met",
            (false, true, false) => "**MISSED**",
        };
        let _ = write!(
            s,
            " {} | {verdict} | {:.1} | {} |",
            targets.join("; "),
            row.cpu * 1e6 / row.calls.max(1) as f64,
            row.calls
        );
        s
    }
}
