//! Logging: `tracing` to stderr as text or JSON, filtered by `log_level`.
//!
//! One rewrite: actix-http logs `stream error: ...` at ERROR (target
//! `actix_http::h1::dispatcher`) for every connection that sent something it
//! could not read — garbage, a TLS handshake on the plain port, an unknown
//! HTTP version. That is the client's fault, not the server's, and a flood
//! of garbage would flood the error log. Such an event is written instead as
//! one WARN line of target `deputy::http`, "malformed HTTP request" (or "HTTP
//! connection error" for a failed read), with actix's text as `cause`, in
//! the same text or JSON format as every other line. There is at most one per
//! connection, since the connection ends with it. Everything else actix logs
//! at ERROR stays ERROR.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::field::{FieldSet, Value};
use tracing_core::metadata::Kind;
use tracing_core::subscriber::Interest;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Where actix-http logs a connection it gave up on.
const DISPATCHER: &str = "actix_http::h1::dispatcher";
const STREAM_ERROR: &str = "stream error: ";
const PARSE_ERROR: &str = "request parse error: ";
/// The target of the rewritten line.
pub const TARGET: &str = "deputy::http";

/// Start logging for `deputy serve`.
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| format!("setting `log_level`: {e}"))?;
    // The rewritten line is WARN: left out when the filter shows nothing below ERROR.
    let warn = filter
        .max_level_hint()
        .is_none_or(|max| max >= tracing::level_filters::LevelFilter::WARN);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .map_event_format(|inner| ClientStreamErrors { inner, warn })
            .try_init(),
        LogFormat::Text => builder
            .map_event_format(|inner| ClientStreamErrors { inner, warn })
            .try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}

/// The cause of an actix-http "stream error" event, or None for any other event.
fn stream_error_cause(event: &Event<'_>) -> Option<String> {
    let meta = event.metadata();
    if *meta.level() != Level::ERROR || meta.target() != DISPATCHER {
        return None;
    }
    let mut message = MessageText(None);
    event.record(&mut message);
    message.0?.strip_prefix(STREAM_ERROR).map(str::to_string)
}

struct MessageText(Option<String>);

impl Visit for MessageText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // A format string's arguments print as the formatted text.
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// The metadata of the rewritten event (never dispatched, only formatted).
struct RewrittenCallsite;
static REWRITTEN_CALLSITE: RewrittenCallsite = RewrittenCallsite;
static REWRITTEN: Metadata<'static> = Metadata::new(
    "malformed HTTP request",
    TARGET,
    Level::WARN,
    Some(file!()),
    Some(line!()),
    Some(module_path!()),
    FieldSet::new(&["message", "cause"], Identifier(&REWRITTEN_CALLSITE)),
    Kind::EVENT,
);

impl Callsite for RewrittenCallsite {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        &REWRITTEN
    }
}

/// The event formatter: formats actix's "stream error" events as the WARN
/// event described above, every other event as `inner` does.
pub struct ClientStreamErrors<F> {
    inner: F,
    /// Whether WARN lines are shown at all.
    warn: bool,
}

impl<S, N, F> FormatEvent<S, N> for ClientStreamErrors<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(cause) = stream_error_cause(event) else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.warn {
            return Ok(());
        }
        let (message, cause) = match cause.strip_prefix(PARSE_ERROR) {
            Some(parse) => ("malformed HTTP request", parse.to_string()),
            None => ("HTTP connection error", cause),
        };
        let fields = REWRITTEN.fields();
        let (Some(message_field), Some(cause_field)) =
            (fields.field("message"), fields.field("cause"))
        else {
            return self.inner.format_event(ctx, writer, event);
        };
        let cause = cause.as_str();
        let values = [
            (&message_field, Some(&message as &dyn Value)),
            (&cause_field, Some(&cause as &dyn Value)),
        ];
        let values = fields.value_set(&values);
        self.inner
            .format_event(ctx, writer, &Event::new(&REWRITTEN, &values))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit_actix_events() {
        tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}",
            "request parse error: invalid HTTP version specified");
        tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}",
            "I/O error: connection reset by peer");
        tracing::error!(target: "actix_http::h1::dispatcher", "Response payload stream error: boom");
        tracing::error!(target: "deputy::app", "stream error: not actix's");
    }

    fn lines(format: LogFormat, level: &str) -> Vec<String> {
        let out = Captured::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_ansi(false)
            .with_writer(move || sink.clone());
        let warn = level != "error";
        match format {
            LogFormat::Json => tracing::subscriber::with_default(
                builder
                    .json()
                    .map_event_format(|inner| ClientStreamErrors { inner, warn })
                    .finish(),
                emit_actix_events,
            ),
            LogFormat::Text => tracing::subscriber::with_default(
                builder
                    .map_event_format(|inner| ClientStreamErrors { inner, warn })
                    .finish(),
                emit_actix_events,
            ),
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn stream_errors_are_one_warn_line_in_text() {
        let l = lines(LogFormat::Text, "info");
        assert_eq!(l.len(), 4, "{l:#?}");
        assert!(
            l[0].ends_with(
                " WARN deputy::http: malformed HTTP request cause=\"invalid HTTP version specified\""
            ),
            "{}",
            l[0]
        );
        assert!(
            l[1].ends_with(
                " WARN deputy::http: HTTP connection error cause=\"I/O error: connection reset by peer\""
            ),
            "{}",
            l[1]
        );
        assert!(
            l[2].contains("ERROR actix_http::h1::dispatcher: Response payload stream error: boom")
        );
        assert!(l[3].contains("ERROR deputy::app: stream error: not actix's"));
    }

    #[test]
    fn stream_errors_are_one_warn_line_in_json() {
        let l: Vec<serde_json::Value> = lines(LogFormat::Json, "info")
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0]["level"], "WARN");
        assert_eq!(l[0]["target"], TARGET);
        assert_eq!(
            l[0]["fields"],
            serde_json::json!({"message": "malformed HTTP request",
                               "cause": "invalid HTTP version specified"})
        );
        assert_eq!(l[1]["fields"]["message"], "HTTP connection error");
        assert_eq!(l[2]["level"], "ERROR");
        assert_eq!(l[2]["target"], DISPATCHER);
        assert_eq!(l[3]["level"], "ERROR");
    }

    #[test]
    fn with_errors_only_the_warn_line_is_left_out() {
        let l = lines(LogFormat::Text, "error");
        assert_eq!(l.len(), 2, "{l:#?}");
        assert!(l.iter().all(|s| s.contains("ERROR")));
    }
}
