//! A `tracing` subscriber that keeps every event, and every span with its fields and
//! whether it is still open, for tests of what the runtime reports. The runtime logs
//! from tasks of its own, so it is installed for the whole test process, not per
//! thread; tests filter the events and spans by lock name.

#![allow(dead_code)] // each test binary reads a different part

use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event as the subscriber saw it: level, target and every field as text.
#[derive(Clone, Debug)]
pub struct Captured {
    pub level: Level,
    pub target: String,
    pub fields: Vec<(String, String)>,
}

impl Captured {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One span: its name, its fields (those recorded later included), and whether it
/// was closed (its last handle dropped).
#[derive(Clone, Debug)]
pub struct CapturedSpan {
    pub name: String,
    pub fields: Vec<(String, String)>,
    pub closed: bool,
    /// Handles to it still alive (a span closes when this reaches 0).
    handles: usize,
}

impl CapturedSpan {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A subscriber that keeps every event and span: the runtime logs from a task of
/// its own, so it is installed for the whole process, not per thread.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<Captured>>>, Arc<Mutex<Vec<CapturedSpan>>>);

impl Capture {
    pub fn global() -> &'static Capture {
        static CAPTURE: OnceLock<Capture> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            let capture = Capture::default();
            tracing::subscriber::set_global_default(capture.clone())
                .expect("no other subscriber in this test binary");
            capture
        })
    }

    pub fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        span.record(&mut Fields(&mut fields));
        let mut spans = self.1.lock().unwrap();
        spans.push(CapturedSpan {
            name: span.metadata().name().to_string(),
            fields,
            closed: false,
            handles: 1,
        });
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut spans = self.1.lock().unwrap();
        values.record(&mut Fields(&mut spans[index(id)].fields));
    }
    fn clone_span(&self, id: &Id) -> Id {
        self.1.lock().unwrap()[index(id)].handles += 1;
        id.clone()
    }
    fn try_close(&self, id: Id) -> bool {
        let mut spans = self.1.lock().unwrap();
        let span = &mut spans[index(&id)];
        span.handles -= 1;
        span.closed = span.handles == 0;
        span.closed
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Span ids are 1-based positions in the list of spans.
fn index(id: &Id) -> usize {
    (id.into_u64() - 1) as usize
}

impl Capture {
    /// The spans named `span` about the lock `name` (field `name`), oldest first.
    pub fn spans(&self, span: &str, name: &str) -> Vec<CapturedSpan> {
        self.1
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == span && s.field("name") == Some(name))
            .cloned()
            .collect()
    }

    /// The events that name the lock `name` (field `lock`).
    pub fn about(&self, name: &str) -> Vec<Captured> {
        self.events()
            .into_iter()
            .filter(|e| e.field("lock") == Some(name))
            .collect()
    }
}
