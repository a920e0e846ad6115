//! `deputy serve`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpServer};

use super::{load_settings, Cli, CliResult};
use crate::app::AppState;
use crate::clock::{SharedClock, SystemClock};
use crate::config::ensure_writable_dir;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Issuer identifier URL (setting `issuer`).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Listen address host:port (setting `bind`).
    #[arg(long)]
    pub bind: Option<String>,
    /// `text` or `json` (setting `log_format`).
    #[arg(long)]
    pub log_format: Option<String>,
    /// tracing filter (setting `log_level`).
    #[arg(long)]
    pub log_level: Option<String>,
    /// HTTP worker threads, 0 for one per core (setting `workers`).
    #[arg(long)]
    pub workers: Option<String>,
    /// Serve GET /metrics on this host:port, a listener of its own (setting
    /// `metrics_bind`).
    #[arg(long)]
    pub metrics_bind: Option<String>,
    /// Proxies whose X-Forwarded-For is believed, comma-separated addresses
    /// or CIDR blocks (setting `trusted_proxies`).
    #[arg(long)]
    pub trusted_proxies: Option<String>,
}

pub fn run(cli: &Cli, args: &ServeArgs) -> CliResult {
    let settings = load_settings(
        cli,
        &[
            ("issuer", args.issuer.as_deref()),
            ("bind", args.bind.as_deref()),
            ("log_format", args.log_format.as_deref()),
            ("log_level", args.log_level.as_deref()),
            ("workers", args.workers.as_deref()),
            ("metrics_bind", args.metrics_bind.as_deref()),
            ("trusted_proxies", args.trusted_proxies.as_deref()),
        ],
    )?;
    ensure_writable_dir("keys_dir", &settings.keys_dir).map_err(|e| e.to_string())?;
    crate::logging::init(settings.log_format, &settings.log_level)?;
    let addr = settings.bind_addr().map_err(|e| e.to_string())?;
    let workers = if settings.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        settings.workers
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let state = web::Data::new(AppState::open(settings, clock)?);

    let system = actix_web::rt::System::new();
    system.block_on(async move {
        crate::http::metrics::spawn(&state.settings)?;
        spawn_housekeeping(state.clone());
        let data = state.clone();
        let server = HttpServer::new(move || crate::http::app(data.clone()))
            .workers(workers)
            // A slow client cannot hold a connection (slowloris).
            .client_request_timeout(Duration::from_secs(5))
            .client_disconnect_timeout(Duration::from_secs(1))
            .keep_alive(Duration::from_secs(30))
            .bind(addr)
            .map_err(|e| format!("setting `bind`: cannot listen on {addr}: {e}"))?
            .run();
        tracing::info!(issuer = %state.settings.issuer, %addr, "deputy serving");
        let served = server.await.map_err(|e| format!("server failed: {e}"));
        // Bursts of throttled logins still open go to the audit trail now.
        if let Err(e) = state.flush_throttled(i64::MAX).await {
            tracing::warn!(error = %e, "cannot record throttled logins at shutdown");
        }
        served
    })
}

/// Background chores: pick up rotated keys, audit ended bursts of throttled
/// logins, forget expired sessions, assertion ids and quiet failed-login
/// counts.
fn spawn_housekeeping(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(2));
        let mut rounds: u64 = 0;
        loop {
            tick.tick().await;
            rounds += 1;
            if let Err(e) = state.flush_throttled(state.clock.now()).await {
                tracing::warn!(error = %e, "cannot record throttled logins");
            }
            let keys = state.keys.clone();
            match web::block(move || keys.reload_if_changed()).await {
                Ok(Ok(true)) => tracing::info!("signing keys reloaded"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot reload signing keys"),
                Err(e) => tracing::error!(error = %e, "key reload task failed"),
            }
            if rounds % 30 == 0 {
                let cutoff = state.clock.now();
                if let Err(e) = state
                    .store
                    .write(move |c| {
                        crate::store::sessions::purge_expired(c, cutoff)?;
                        crate::store::login_failures::purge(
                            c,
                            cutoff,
                            cutoff - crate::login::throttle::FORGET_AFTER,
                        )?;
                        crate::store::dpop::purge(c, cutoff)?;
                        crate::store::tokens::purge_used_assertions(c, cutoff)
                    })
                    .await
                {
                    tracing::warn!(error = %e, "cannot purge expired records");
                }
            }
        }
    });
}
