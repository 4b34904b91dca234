//! One connection to the database named by `--database-url` / `DATABASE_URL`, plain or
//! over TLS as the URL's `sslmode` asks.

use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

use crate::cli::Connection;
use crate::error::CliError;
use crate::tls;

/// How long to wait for the server before saying it cannot be reached, unless the URL
/// sets `connect_timeout` itself.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects, with `application_name` `pglock` unless the URL sets one (so the
/// command's own session is easy to tell apart in `pg_stat_activity`).
pub async fn connect(connection: &Connection) -> Result<Client, CliError> {
    let url = connection
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .ok_or(CliError::NoDatabaseUrl)?;
    let mut config: Config = url.parse().map_err(CliError::BadUrl)?;
    if config.get_application_name().is_none() {
        config.application_name("pglock");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_ssl_mode() == SslMode::Disable {
        let (client, conn) = config.connect(NoTls).await.map_err(CliError::Connect)?;
        // The connection's own error, if it fails later, is what every later query on
        // `client` returns: it is reported there.
        tokio::spawn(conn);
        Ok(client)
    } else {
        let tls = tls::connector(connection.ca_file.as_deref())?;
        let (client, conn) = config.connect(tls).await.map_err(CliError::Connect)?;
        tokio::spawn(conn);
        Ok(client)
    }
}
