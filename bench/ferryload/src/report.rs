//! Turns the result rows into `bench/RESULTS.md`: per scenario, a table of
//! medians over the rounds, the ratios ferryd / peer, and the issue's
//! targets checked against the same medians.

use std::collections::HashMap;
use std::fs;

struct Row {
    scenario: String,
    system: String,
    metric: String,
    value: f64,
    unit: String,
}

const TITLES: &[(&str, &str)] = &[
    ("s0-binary", "Binary size and start-up"),
    ("s1-download", "1. Download of a 1 GiB file"),
    ("s2-upload", "2. Upload of a 1 GiB file"),
    (
        "s3-small",
        "3. Small operations: 64 persistent connections fetching a 4 KiB file",
    ),
    ("s4-footprint", "4. Footprint: idle authenticated sessions"),
    (
        "s4-users",
        "4c. Footprint: idle sessions of as many distinct users",
    ),
    (
        "s5-burst",
        "5a. Scale: all sessions connecting and logging in at the same instant",
    ),
    (
        "s5-scale",
        "5b. Scale: concurrent sessions doing LIST/VIEW/GET/PUT of 64 KiB files",
    ),
];

/// What a reader must know to read a scenario's table.
const NOTES: &[(&str, &str)] = &[
    (
        "s1-download",
        "iperf3 is the loopback ceiling: memory-to-memory TCP with no file and no protocol.",
    ),
    (
        "s2-upload",
        "ferryd runs with `--no-fsync` like its peers, which do not sync; the `-fsync` rows are \
         a second ferryd with durability on (fdatasync and directory sync before the reply), \
         storage also on tmpfs, where a sync costs little. nginx keeps its default \
         `client_body_buffer_size`.",
    ),
    (
        "s3-small",
        "Rows without `-wrk` use ferryload's event-driven client (`--engine event`): one \
         thread drives all 64 sessions, each one request at a time, as `wrk` does, so the \
         line protocol and HTTP are compared through the same client (a thread per session \
         saturated the client near 50k req/s). The `-wrk` rows use `wrk -t1 -c64`.",
    ),
    (
        "s4-footprint",
        "per_session = (PSS after - PSS before) / sessions, summed over the server's process \
         tree (nginx: master and worker; vsftpd: the listener and its per-session processes), \
         ferryd and nginx started fresh for the round (vsftpd forks per session, so its listener is as started). PSS is user-space memory: the kernel's \
         socket memory is not in it, for any system. HTTP sessions made one 4 KiB GET each \
         (used keep-alive connections). wakeups = the server's voluntary and involuntary \
         context switches per second while the sessions idle.",
    ),
    (
        "s4-users",
        "Issue 23: every ferryd session logs in as a user of its own (bench0, bench1, ...; \
         a deployment's many users), each an idle line session; nginx's rows are idle \
         keep-alive connections as in 4 (it keeps nothing per user). per_session as in 4; \
         fds_per_session = (descriptors the server's processes hold after - before) / \
         sessions, from /proc/<pid>/fd.",
    ),
    (
        "s5-burst",
        "Not one of the issue's scenarios, but what a scale test meets first: as many \
         threads as the scale scenario has sessions connect at once and log in (HTTP: one \
         4 KiB GET each), each allowed 10 s. failed = sessions not logged in by then; \
         listen_overflows = the kernel's TcpExt ListenOverflows counter during the storm \
         (connections dropped because the listener's accept queue was full; host-wide).",
    ),
    (
        "s5-scale",
        "Each session owns four files and picks LIST 10%, VIEW 20%, GET 40%, PUT 30% at \
         random; 100 users. checksum_errors counts downloads whose SHA-256 (or preview bytes) \
         differ from what that session stored, and upload digests the server reported wrong; \
         session_errors counts sessions that ended with an I/O or protocol error (30 s read \
         timeout). The sessions connect spread over 2 s (see 5a for a storm).",
    ),
];

/// Metrics worth a ferryd / peer ratio.
const RATIO_METRICS: &[&str] = &["throughput", "rate", "p99", "per_session", "ops"];

fn fmt(v: f64) -> String {
    let a = v.abs();
    if v.is_nan() {
        "n/a".into()
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn ordered<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    for s in it {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

pub fn main(results: &str, machine: &str, evidence: &str) {
    let text =
        fs::read_to_string(results).unwrap_or_else(|e| crate::die(&format!("{results}: {e}")));
    let rows: Vec<Row> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 5).then(|| Row {
                scenario: f[0].into(),
                system: f[1].into(),
                metric: f[2].into(),
                value: f[3].parse().unwrap_or(f64::NAN),
                unit: f[4].into(),
            })
        })
        .collect();
    let mut values: HashMap<(&str, &str, &str), Vec<f64>> = HashMap::new();
    let mut units: HashMap<&str, &str> = HashMap::new();
    for r in &rows {
        values
            .entry((&r.scenario, &r.system, &r.metric))
            .or_default()
            .push(r.value);
        units.insert(&r.metric, &r.unit);
    }
    let med = |s: &str, sys: &str, m: &str| values.get(&(s, sys, m)).map(|v| median(v.clone()));

    let mut out = String::new();
    out.push_str("# Benchmark results\n\n");
    out.push_str(
        "Written by `bench/run` (see README, *Measuring*). Every number is the median over \
         the rounds shown; the systems ran alternately (A B A B ...) on loopback with \
         storage on tmpfs, driven by the same client (`bench/ferryload`, or `wrk` where \
         named). Ratios are ferryd / peer: above 1 is better for rates and \
         throughputs, below 1 is better for latencies and memory.\n\n",
    );
    if let Ok(m) = fs::read_to_string(machine) {
        out.push_str(&m);
        out.push('\n');
    }

    let scenarios = ordered(rows.iter().map(|r| r.scenario.as_str()));
    for s in &scenarios {
        let title = TITLES
            .iter()
            .find(|t| t.0 == *s)
            .map_or(s.to_string(), |t| t.1.to_string());
        out.push_str(&format!("## {title}\n\n"));
        if let Some(n) = NOTES.iter().find(|n| n.0 == *s) {
            out.push_str(n.1);
            out.push_str("\n\n");
        }
        let systems = ordered(
            rows.iter()
                .filter(|r| r.scenario == *s)
                .map(|r| r.system.as_str()),
        );
        let metrics = ordered(
            rows.iter()
                .filter(|r| r.scenario == *s)
                .map(|r| r.metric.as_str()),
        );
        out.push_str("| system |");
        for m in &metrics {
            out.push_str(&format!(" {m} ({}) |", units.get(m).unwrap_or(&"")));
        }
        out.push_str(" rounds |\n|---|");
        for _ in &metrics {
            out.push_str("---:|");
        }
        out.push_str("---:|\n");
        for sys in &systems {
            out.push_str(&format!("| {sys} |"));
            let mut rounds = 0;
            for m in &metrics {
                match values.get(&(*s, *sys, *m)) {
                    Some(v) => {
                        rounds = rounds.max(v.len());
                        out.push_str(&format!(" {} |", fmt(median(v.clone()))));
                    }
                    None => out.push_str(" |"),
                }
            }
            out.push_str(&format!(" {rounds} |\n"));
        }
        out.push('\n');
        let ferry: Vec<&str> = systems
            .iter()
            .copied()
            .filter(|x| x.starts_with("ferryd"))
            .collect();
        let peers: Vec<&str> = systems
            .iter()
            .copied()
            .filter(|x| !x.starts_with("ferryd"))
            .collect();
        let mut ratio_lines = Vec::new();
        for m in metrics.iter().filter(|m| RATIO_METRICS.contains(m)) {
            for f in &ferry {
                let Some(fv) = med(s, f, m) else { continue };
                let parts: Vec<String> = peers
                    .iter()
                    .filter_map(|p| med(s, p, m).map(|pv| format!("{:.2}x {p}", fv / pv)))
                    .collect();
                if !parts.is_empty() {
                    ratio_lines.push(format!("- {m}, {f}: {}", parts.join(", ")));
                }
            }
        }
        if !ratio_lines.is_empty() {
            out.push_str("Ratios ferryd / peer:\n\n");
            out.push_str(&ratio_lines.join("\n"));
            out.push_str("\n\n");
        }
    }

    out.push_str("## 6. Cost curves\n\n");
    out.push_str(
        "Time per operation as the file grows (ferryd line protocol and nginx HTTP, \
                  same client, one persistent session, median of several operations):\n\n\
                  ![time per operation](size-curve.svg)\n\n\
                  LIST time as the directory grows (ferryd `LIST`, nginx `autoindex` JSON):\n\n\
                  ![LIST time](list-curve.svg)\n\n\
                  The points are in `curves.tsv` next to this file.\n\n",
    );

    // The targets, checked against the same medians.
    out.push_str("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    let mut target = |name: String, measured: Option<(f64, String)>, pass: &dyn Fn(f64) -> bool| {
        let (m, v) = match measured {
            Some((x, shown)) if !x.is_nan() => (shown, if pass(x) { "met" } else { "**MISSED**" }),
            _ => ("not measured".into(), "n/a"),
        };
        out.push_str(&format!("| {name} | {m} | {v} |\n"));
    };
    let ratio = |s: &str, a: &str, b: &str, m: &str| -> Option<(f64, String)> {
        let r = med(s, a, m)? / med(s, b, m)?;
        Some((r, format!("{r:.2}x")))
    };
    for f in ["ferryd-line", "ferryd-http"] {
        target(
            format!("download {f} >= 1.0x nginx"),
            ratio("s1-download", f, "nginx", "throughput"),
            &|r| r >= 1.0,
        );
        target(
            format!("download {f} >= 0.9x iperf3 loopback"),
            ratio("s1-download", f, "iperf3", "throughput"),
            &|r| r >= 0.9,
        );
        for p in ["nginx", "vsftpd"] {
            target(
                format!("upload {f} (--no-fsync) >= 1.0x {p}"),
                ratio("s2-upload", f, p, "throughput"),
                &|r| r >= 1.0,
            );
        }
    }
    target(
        "small ops: ferryd HTTP req/s >= 1.0x nginx (wrk)".into(),
        ratio("s3-small", "ferryd-http-wrk", "nginx-wrk", "rate"),
        &|r| r >= 1.0,
    );
    target(
        "small ops: ferryd HTTP req/s >= 1.0x nginx (ferryload)".into(),
        ratio("s3-small", "ferryd-http", "nginx", "rate"),
        &|r| r >= 1.0,
    );
    target(
        "small ops: line GET faster than ferryd HTTP (same client)".into(),
        ratio("s3-small", "ferryd-line-GET", "ferryd-http", "rate"),
        &|r| r > 1.0,
    );
    for f in ["ferryd-line", "ferryd-http"] {
        target(
            format!("footprint {f} <= 1024 B per idle session"),
            med("s4-footprint", f, "per_session").map(|v| (v, format!("{} B", fmt(v)))),
            &|v| v <= 1024.0,
        );
        target(
            format!("footprint {f} <= nginx per keep-alive connection"),
            ratio("s4-footprint", f, "nginx", "per_session"),
            &|r| r <= 1.0,
        );
        target(
            format!("{f}: zero wake-ups per second while idle"),
            med("s4-footprint", f, "wakeups").map(|v| (v, format!("{} /s", fmt(v)))),
            &|v| v == 0.0,
        );
    }
    target(
        "distinct users: 10,000 sessions of as many users logged in".into(),
        med("s4-users", "ferryd-line", "sessions").map(|v| (v, format!("{} sessions", fmt(v)))),
        &|v| v >= 10_000.0,
    );
    target(
        "distinct users: ferryd-line <= 1024 B per idle session".into(),
        med("s4-users", "ferryd-line", "per_session").map(|v| (v, format!("{} B", fmt(v)))),
        &|v| v <= 1024.0,
    );
    target(
        "distinct users: ferryd-line <= 1.1 descriptors per idle session".into(),
        med("s4-users", "ferryd-line", "fds_per_session").map(|v| (v, fmt(v))),
        &|v| v <= 1.1,
    );
    for f in ["ferryd-line", "ferryd-http"] {
        target(
            format!("scale {f}: zero checksum errors"),
            med("s5-scale", f, "checksum_errors").map(|v| (v, fmt(v))),
            &|v| v == 0.0,
        );
        target(
            format!("scale {f}: no session fails (not in the issue's list)"),
            med("s5-scale", f, "session_errors").map(|v| (v, fmt(v))),
            &|v| v == 0.0,
        );
        target(
            format!("storm {f}: every session logged in within 10 s (not in the issue's list)"),
            med("s5-burst", f, "failed").map(|v| (v, format!("{} failed", fmt(v)))),
            &|v| v == 0.0,
        );
    }
    target(
        "stripped release binary < 2 MB".into(),
        med("s0-binary", "ferryd", "stripped_size").map(|v| (v, format!("{} bytes", fmt(v)))),
        &|v| v < 2_000_000.0,
    );
    target(
        "start-up to listening < 10 ms".into(),
        med("s0-binary", "ferryd", "startup").map(|v| (v, format!("{} ms", fmt(v)))),
        &|v| v < 10.0,
    );
    out.push('\n');
    if let Ok(e) = fs::read_to_string(evidence) {
        out.push_str(&e);
    }
    print!("{out}");
}
