//! The live view: in a terminal, a progress bar and a line per worker redrawn in
//! place (indicatif); otherwise a plain line per second.
//!
//! The bar and the workers' lines are one bar's message: indicatif redraws on any
//! bar's update, so with a bar per line a frame could pair a fresh "inside:" with
//! stale lines (and seem to show two workers inside).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{Cli, Mode};
use crate::tally::{human, Board, Tally};

pub struct View {
    mode: Mode,
    tasks: bool,
    screen: Screen,
}

enum Screen {
    Live {
        bar: ProgressBar,
    },
    Plain {
        /// The last whole second reported.
        second: u64,
    },
}

impl View {
    pub fn new(cli: &Cli) -> View {
        let screen = if std::io::stdout().is_terminal() {
            live(cli)
        } else {
            Screen::Plain { second: 0 }
        };
        View {
            mode: cli.mode,
            tasks: cli.tasks.is_some(),
            screen,
        }
    }

    /// A line of text above the live view (or just a line).
    pub fn say(&self, line: &str) {
        match &self.screen {
            Screen::Live { bar } => bar.println(line),
            Screen::Plain { .. } => println!("{line}"),
        }
    }

    pub fn render(&mut self, board: &Board, elapsed: Duration) {
        let mut inside = board.inside(self.tasks);
        if self.mode == Mode::Lead {
            inside = format!("{inside}  {}", board.leader());
        }
        match &mut self.screen {
            Screen::Live { bar } => {
                let rows = (0..board.workers.len()).map(|w| line(board, w, self.mode, self.tasks));
                let rows: Vec<String> = rows.collect();
                bar.set_message(format!(
                    "{:.1} s  inside: {inside}\n{}",
                    elapsed.as_secs_f64(),
                    rows.join("\n")
                ));
                bar.set_position(elapsed.as_millis() as u64);
            }
            Screen::Plain { second } => {
                if elapsed.as_secs() <= *second {
                    return;
                }
                *second = elapsed.as_secs();
                println!("[{:>3} s] {}", second, plain(board, &inside));
            }
        }
    }

    /// Takes the live view off the screen, for the summary.
    pub fn finish(&self) {
        if let Screen::Live { bar } = &self.screen {
            bar.finish_and_clear();
        }
    }
}

fn live(cli: &Cli) -> Screen {
    let style = ProgressStyle::with_template("{prefix} [{bar:24.yellow/white}] {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let bar =
        ProgressBar::with_draw_target(Some(cli.duration * 1000), ProgressDrawTarget::stdout())
            .with_style(style);
    bar.set_prefix("goldleader");
    Screen::Live { bar }
}

/// The plain line of a second: `inside: worker 2 | entries 3 4 3 | lost 0 1 0 |
/// busy 0 0 0 | skipped 0 0 0`, and `| worker 1 gone (...)` for each worker that
/// is no more.
fn plain(board: &Board, inside: &str) -> String {
    let column = |f: fn(&Tally) -> u64| {
        let counts: Vec<String> = board.workers.iter().map(|t| f(t).to_string()).collect();
        counts.join(" ")
    };
    let mut line = format!(
        "inside: {inside} | entries {} | lost {} | busy {} | skipped {}",
        column(|t| t.entries),
        column(|t| t.lost),
        column(|t| t.busy),
        column(|t| t.skipped),
    );
    for ending in board.endings() {
        line += &format!(" | {ending}");
    }
    line
}

/// A worker's line: `  worker 2  ▶ task 3   entries   12  wait p50  260 ms  lost 1  busy 40  conns 2`.
fn line(board: &Board, w: usize, mode: Mode, tasks: bool) -> String {
    let tally = &board.workers[w];
    let here = match (board.inside_of(w).next(), tasks) {
        _ if !tally.life.alive() => match tally.life.ending() {
            Some(ending) => format!("✗ {ending}"),
            None => "stopped".into(),
        },
        (None, _) => String::new(),
        (Some(_), false) => "▶ inside".into(),
        (Some(t), true) => format!("▶ task {t}"),
    };
    let p50 = tally.wait_p50().map(human).unwrap_or_else(|| "-".into());
    let refused = match mode {
        Mode::Try => format!("  busy {:>4}", tally.busy),
        Mode::Skip => format!("  skipped {:>4}", tally.skipped),
        Mode::Wait | Mode::Lead | Mode::None => String::new(),
    };
    format!(
        "  worker {w:<2} {here:<10} entries {:>4}  wait p50 {p50:>7}  lost {:>3}{refused}  conns {}",
        tally.entries, tally.lost, tally.connections
    )
}
