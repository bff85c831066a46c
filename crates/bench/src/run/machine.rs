//! What the numbers were measured on: cores, memory, CPU model, kernel and the versions of everything compared.

use std::process::Command;

use super::process::stdout_of;

/// One `name: value` row per fact, in the order the report shows them.
pub fn describe() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let first_value = |text: &str, key: &str| -> Option<String> {
        text.lines()
            .find(|line| line.split(':').next().is_some_and(|name| name.trim() == key))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim().to_owned())
    };
    let command = |program: &str, args: &[&str]| -> String {
        stdout_of(Command::new(program).args(args)).unwrap_or_else(|error| format!("unknown ({error:#})"))
    };
    let memory = first_value(&meminfo, "MemTotal")
        .and_then(|kib| kib.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown".to_owned());
    let package = |name: &str| command("dpkg-query", &["-W", "-f=${Version}", name]);
    vec![
        ("CPU".to_owned(), first_value(&cpuinfo, "model name").unwrap_or_else(|| "unknown".to_owned())),
        ("Cores (nproc)".to_owned(), command("nproc", &[])),
        ("Memory".to_owned(), memory),
        ("Kernel".to_owned(), read_trimmed("/proc/sys/kernel/osrelease")),
        ("Debian".to_owned(), read_trimmed("/etc/debian_version")),
        ("rustc".to_owned(), command("rustc", &["--version"])),
        ("Postfix".to_owned(), package("postfix")),
        ("Dovecot".to_owned(), command("dovecot", &["--version"])),
        ("PostgreSQL".to_owned(), command("postgres", &["--version"])),
        ("Node.js (runs pouchdb-server)".to_owned(), command("node", &["--version"])),
        ("Load average at the start (1, 5, 15 min)".to_owned(), load_average()),
    ]
}

/// The 1, 5 and 15 minute load averages: the machine may be shared, and a busy one slows every figure.
pub fn load_average() -> String {
    let loadavg = read_trimmed("/proc/loadavg");
    loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(", ")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|text| text.trim().to_owned()).unwrap_or_else(|_| "unknown".to_owned())
}
