use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ordercast::app::{shutdown_signal, Application};
use ordercast::auth::DevelopmentTokens;
use ordercast::config::{Cli, Command, PruneConfig, TokenConfig};
use ordercast::{db, graphql, telemetry};
use secrecy::ExposeSecret;
use uuid::Uuid;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ordercast: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(mut config) => {
            config.kafka.add_env_options(std::env::vars_os())?;
            let app = Application::build(*config).await?;
            tracing::info!(address = %app.local_addr(), "serving GraphQL on /graphql");
            app.run_until(shutdown_signal()).await;
            Ok(())
        }
        Command::Migrate(config) => {
            db::probe(&config).await?;
            db::migrate(&config).await.context("applying database migrations")
        }
        Command::Seed(config) => {
            db::probe(&config).await?;
            db::migrate(&config).await.context("applying database migrations")?;
            let pool = db::connect(&config).await.context("connecting to Postgres")?;
            db::seed(&pool).await.context("seeding demo data")?;
            eprintln!(
                "seeded {} customers and {} products",
                db::DEMO_CUSTOMERS.len(),
                db::DEMO_PRODUCTS.len()
            );
            Ok(())
        }
        Command::Token(config) => {
            println!("{}", mint_token(&config).await?);
            Ok(())
        }
        Command::Sdl => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Prune(config) => prune(&config).await,
    }
}

async fn prune(config: &PruneConfig) -> anyhow::Result<()> {
    db::probe(&config.database).await?;
    let mut pruner = db::HistoryPruner::new(config.database.clone(), config.batch);
    let outcome = pruner
        .pass(config.older_than, db::LockWait::Wait(config.lock_timeout))
        .await
        .with_context(|| {
            format!(
                "pruning order history (another instance may have held the prune lock for longer than {})",
                humantime::format_duration(config.lock_timeout)
            )
        })?;
    let db::PassOutcome::Pruned(report) = outcome else {
        anyhow::bail!("another instance held the prune lock");
    };
    println!(
        "removed {} order versions committed before {} (older than {}; each order's latest version is kept) in {} batches, {} ms",
        report.removed,
        report.cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        humantime::format_duration(config.older_than),
        report.batches,
        report.elapsed.as_millis()
    );
    Ok(())
}

/// A development token. With a provider key configured a server would refuse it,
/// so none is minted: sign in at the identity provider instead.
async fn mint_token(config: &TokenConfig) -> anyhow::Result<String> {
    if config.auth.jwt_jwks_url.is_some() || config.auth.jwt_public_key_file.is_some() {
        anyhow::bail!(
            "ordercast token mints development (HS256) tokens, which a server with an identity provider's key \
             refuses; sign in at the provider to get a token"
        );
    }
    db::probe(&config.database).await?;
    let pool = db::connect(&config.database).await.context("connecting to Postgres")?;
    let customer = match Uuid::parse_str(&config.customer) {
        Ok(id) => db::find_customer(&pool, id).await?,
        Err(_) => db::find_customer_by_email(&pool, &config.customer).await?,
    };
    let customer = customer.with_context(|| {
        format!(
            "no customer {:?}; `ordercast seed` creates alice@example.com and bob@example.com",
            config.customer
        )
    })?;
    Ok(DevelopmentTokens::new(config.auth.jwt_secret.expose_secret()).mint(customer.id, config.ttl()))
}
