//! Benchmark: parse and validate a 5,000-host inventory (ranges plus explicit hosts), several
//! iterations, printing min and median. Run with `cargo bench --bench inventory`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The budget from issue 2: parsing and validating 5,000 hosts stays under this.
const BUDGET: Duration = Duration::from_millis(100);
const ITERATIONS: usize = 30;

/// 3 servers, 40 racks of 100 agents as ranges (4,000 hosts), and 997 explicitly listed boards
/// with labels, taints and per-host SSH overrides: 5,000 hosts in all.
fn inventory_text() -> String {
    let mut text = String::from(
        r#"[cluster]
name = "bench"
version = "v1.31.4+k3s1"
ha = true
token_env = "K3S_TOKEN"
tls_san = ["k3s.example.com"]

[ssh]
user = "edge"
identity_files = []
agent = true
host_key_policy = "accept-new"
connect_timeout = "10s"
concurrency = 200

[groups.racks]
role = "agent"
labels = { "example.com/kind" = "rack" }
taints = ["example.com/rack=true:PreferNoSchedule"]

[groups.boards]
role = "agent"
labels = { "example.com/kind" = "board" }
ssh = { connect_timeout = "30s", command_timeout = "20m" }

[[hosts]]
name = "cp-[1-3]"
address = "10.0.0.[1-3]"
role = "server"
"#,
    );
    for rack in 0..40 {
        let _ = write!(
            text,
            "\n[[hosts]]\nname = \"rack{rack:02}-n[001-100]\"\naddress_start = \"10.{}.{}.1\"\ngroups = [\"racks\"]\n",
            1 + rack / 2,
            (rack % 2) * 100,
        );
    }
    for board in 0..997 {
        let _ = write!(
            text,
            "\n[[hosts]]\nname = \"board-{board:04}\"\naddress = \"10.200.{}.{}\"\ngroups = [\"boards\"]\nlabels = {{ \"example.com/shelf\" = \"s{}\" }}\nssh = {{ port = {} }}\n",
            board / 250,
            board % 250 + 1,
            board % 16,
            2200 + board % 3,
        );
    }
    text
}

fn main() {
    let text = inventory_text();
    let path = Path::new("bench.toml");
    let mut times = Vec::with_capacity(ITERATIONS);
    let mut hosts = 0;
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        let inventory =
            edgeops::inventory::parse(&text, path).expect("benchmark inventory is valid");
        times.push(start.elapsed());
        hosts = std::hint::black_box(inventory).hosts.len();
    }
    assert_eq!(hosts, 5000, "the benchmark inventory must have 5,000 hosts");
    times.sort();
    let (min, median) = (times[0], times[times.len() / 2]);
    println!(
        "inventory parse+validate, {hosts} hosts, {} bytes of TOML, {ITERATIONS} iterations: min {:.2} ms, median {:.2} ms (budget {} ms)",
        text.len(),
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        BUDGET.as_millis(),
    );
    if median > BUDGET {
        eprintln!("over budget: median {median:?} > {BUDGET:?}");
        std::process::exit(1);
    }
}
