//! `cosell-bench`: the load driver for cosell's end-to-end figures (hot swap, webhook intake,
//! end-to-end latency, host memory, PostgreSQL vs SQLite), and the table of every figure saved so far, the criterion
//! benches' included. `make bench` runs everything; docs/benchmarks.md has the last results.

mod driver;
mod table;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cosell_bench::results::{FigureResults, results_dir};
use driver::{backends, backfill, floor, hot_swap, intake, latency, max_rate};

/// Runs cosell's end-to-end benchmarks against the emulators and prints the results table.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Figure 3: deploy → serving, cold and warm, and swaps under load.
    HotSwap(hot_swap::HotSwapArgs),
    /// Figure 4: Partner Center webhooks accepted and stored per second.
    Intake(intake::IntakeArgs),
    /// Figures 5 and 7: end-to-end latency at a fixed rate, and the host's memory.
    Latency(latency::LatencyArgs),
    /// Figure 6: 100,000 referrals into Dataverse at its documented limits, `$batch` vs one
    /// request per record.
    Backfill(backfill::BackfillArgs),
    /// Figure 8: PostgreSQL vs SQLite with one replica, side by side: changes/s landed
    /// saturated, CPU per change (host, emulators, database server) and latency at a moderate
    /// rate. Needs a PostgreSQL server: `COSELL_TEST_POSTGRES_URL`, or PostgreSQL's binaries
    /// installed (a throwaway cluster is started, as for the tests).
    Backends(backends::BackendsArgs),
    /// Figure 9: the highest change rate one host sustains with p99 under a second (rising,
    /// then bisected, open-loop trials), and the CPU per change of host and emulators there.
    MaxRate(max_rate::MaxRateArgs),
    /// Figure 10: the machine's floor: the CPU of one loopback HTTP exchange (each side), one
    /// hand-over to tokio's blocking pool, one SQLite commit with fsync, and a change's skeleton
    /// (only those, as one change needs them) at 100 and 200 changes/s.
    Floor(floor::FloorArgs),
    /// The floor's client process (started by `floor`).
    #[command(hide = true)]
    FloorClient(floor::FloorClientArgs),
    /// The floor's change skeleton process (started by `floor`).
    #[command(hide = true)]
    FloorSkeleton(floor::skeleton::SkeletonArgs),
    /// Every driver figure in turn (with their default settings), then the table.
    All,
    /// Prints the table of every figure saved under target/bench-results.
    Table,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The floor's client measures its own process: no runtime of this function's around it.
    if let Command::FloorClient(args) = &cli.command {
        return floor::client(args);
    }
    if let Command::FloorSkeleton(args) = &cli.command {
        return floor::skeleton::serve(args);
    }
    tokio::runtime::Runtime::new()?.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::HotSwap(args) => {
            hot_swap::run(&args).await?;
        }
        Command::Intake(args) => {
            intake::run(&args).await?;
        }
        Command::Latency(args) => {
            latency::run(&args).await?;
        }
        Command::Backfill(args) => {
            backfill::run(&args).await?;
        }
        Command::Backends(args) => {
            backends::run(&args).await?;
        }
        Command::MaxRate(args) => {
            max_rate::run(&args).await?;
        }
        Command::Floor(args) => {
            floor::run(&args).await?;
        }
        Command::FloorClient(_) | Command::FloorSkeleton(_) => {
            unreachable!("run before the runtime starts")
        }
        Command::All => {
            hot_swap::run(&parse_defaults()).await?;
            intake::run(&parse_defaults()).await?;
            latency::run(&parse_defaults()).await?;
            // And at a rate this machine can carry with the emulators on the same two cores
            // (docs/benchmarks.md, figure 5).
            let mut sustainable: latency::LatencyArgs = parse_defaults();
            sustainable.rate = 100.0;
            latency::run(&sustainable).await?;
            backfill::run(&parse_defaults()).await?;
            backends::run(&parse_defaults()).await?;
            max_rate::run(&parse_defaults()).await?;
            floor::run(&parse_defaults()).await?;
        }
        Command::Table => {}
    }
    let figures = FigureResults::load_all()?;
    if figures.is_empty() {
        eprintln!(
            "no results under {} yet: run `make bench`",
            results_dir().display()
        );
    } else {
        println!("{}", table::markdown(&figures));
        println!("{}", table::methods(&figures));
    }
    Ok(())
}

/// A scenario's arguments at their defaults.
fn parse_defaults<T: clap::Args>() -> T {
    #[derive(Parser)]
    struct Wrapper<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    Wrapper::<T>::parse_from(["cosell-bench"]).args
}
