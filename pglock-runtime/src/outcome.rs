//! How an acquisition ended, as the `outcome` label of the metrics and the
//! `outcome` field of the `pglock.wait` span name it.

/// How an acquisition ended, as the `outcome` label and span field name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acquired,
    Skipped,
    Busy,
    Timeout,
    WouldDeadlock,
    Deadlock,
    Lost,
    Error,
}

impl Outcome {
    /// Every outcome, in the order of their discriminants.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [Outcome; 8] = [
        Outcome::Acquired,
        Outcome::Skipped,
        Outcome::Busy,
        Outcome::Timeout,
        Outcome::WouldDeadlock,
        Outcome::Deadlock,
        Outcome::Lost,
        Outcome::Error,
    ];

    /// The label's value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Outcome::Acquired => "acquired",
            Outcome::Skipped => "skipped",
            Outcome::Busy => "busy",
            Outcome::Timeout => "timeout",
            Outcome::WouldDeadlock => "would_deadlock",
            Outcome::Deadlock => "deadlock",
            Outcome::Lost => "lost",
            Outcome::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    /// The metrics index each outcome's series by its discriminant.
    #[test]
    fn every_outcome_is_listed_at_its_discriminant() {
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, i, "{outcome:?} indexes its series");
        }
    }
}
