//! `cargo run --release -p hashwatt-hash --example hashbench -- [BACKEND|all] [THREADS] [SECONDS] [--json]`:
//! the same benchmark as `hashwatt bench hash`, without the host.

fn main() -> Result<(), hashwatt_hash::HashError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let opts = hashwatt_hash::bench::BenchOptions {
        backend: pos.first().map(|s| s.to_string()),
        threads: pos.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
        seconds: pos.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0),
    };
    let report = hashwatt_hash::bench::run(&opts)?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(())
}
