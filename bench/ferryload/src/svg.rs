//! Draws the cost curves as SVG line charts, one file per chart: rows
//! `chart system x y` of `curves.tsv` become `<dir>/<chart>.svg`. The x
//! axis is logarithmic; so is y, except for memory, whose y axis starts
//! at 0 so that a flat line looks flat and a growing one grows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

struct Chart {
    title: &'static str,
    x_label: &'static str,
    y_label: &'static str,
    /// The unit of y in a point's tooltip.
    unit: &'static str,
    log_y: bool,
}

fn describe(name: &str) -> Chart {
    match name {
        "size-curve" => Chart {
            title: "Time per operation vs file size",
            x_label: "file size (bytes)",
            y_label: "time per operation (ms)",
            unit: "ms",
            log_y: true,
        },
        "list-curve" => Chart {
            title: "LIST time vs files in the directory",
            x_label: "files in the directory",
            y_label: "LIST time (ms)",
            unit: "ms",
            log_y: true,
        },
        "folder-curve" => Chart {
            title: "Listing a subfolder: time to last byte",
            x_label: "entries in the folder",
            y_label: "time to last byte (ms)",
            unit: "ms",
            log_y: true,
        },
        "folder-memory" => Chart {
            title: "Listing a subfolder: server peak RSS",
            x_label: "entries in the folder",
            y_label: "peak RSS, VmHWM (MiB)",
            unit: "MiB",
            log_y: false,
        },
        _ => Chart {
            title: "",
            x_label: "x",
            y_label: "y",
            unit: "",
            log_y: true,
        },
    }
}

fn si(v: f64) -> String {
    let (d, s) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if x == x.trunc() {
        format!("{x:.0}{s}")
    } else {
        format!("{x}{s}")
    }
}

pub fn main(curves: &str, dir: &str) {
    let text = fs::read_to_string(curves).unwrap_or_else(|e| crate::die(&format!("{curves}: {e}")));
    // chart -> system -> x -> ys (medians of repeated runs)
    let mut data: BTreeMap<&str, BTreeMap<&str, BTreeMap<u64, Vec<f64>>>> = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() != 4 {
            continue;
        }
        let (Ok(x), Ok(y)) = (f[2].parse::<u64>(), f[3].parse::<f64>()) else {
            continue;
        };
        data.entry(f[0])
            .or_default()
            .entry(f[1])
            .or_default()
            .entry(x)
            .or_default()
            .push(y);
    }
    for (name, systems) in &data {
        let series: Vec<(&str, Vec<(f64, f64)>)> = systems
            .iter()
            .map(|(s, pts)| {
                let pts = pts
                    .iter()
                    .map(|(x, ys)| {
                        let mut ys = ys.clone();
                        ys.sort_by(f64::total_cmp);
                        (*x as f64, ys[ys.len() / 2].max(1e-4))
                    })
                    .collect();
                (*s, pts)
            })
            .collect();
        let svg = draw(&describe(name), &series);
        let path = format!("{dir}/{name}.svg");
        fs::write(&path, svg).unwrap_or_else(|e| crate::die(&format!("{path}: {e}")));
        println!("wrote {path}");
    }
}

fn draw(c: &Chart, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    let all = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    // Whole decades on the x axis, and on y when it is logarithmic; a
    // linear y axis runs from 0 to a round number above the highest point.
    let (lx0, lx1) = (
        x0.log10().floor(),
        x1.log10().ceil().max(x0.log10().floor() + 1.0),
    );
    let (ly0, ly1) = (
        y0.log10().floor(),
        y1.log10().ceil().max(y0.log10().floor() + 1.0),
    );
    let step = linear_step(y1);
    let ymax = (y1 / step).ceil().max(1.0) * step;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log10() - lx0) / (lx1 - lx0) * pw;
    let py = |y: f64| {
        if c.log_y {
            TOP + ph - (y.log10() - ly0) / (ly1 - ly0) * ph
        } else {
            TOP + ph - y / ymax * ph
        }
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
        LEFT + pw / 2.0,
        c.title
    );
    for d in lx0 as i32..=lx1 as i32 {
        let x = px(10f64.powi(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            si(10f64.powi(d))
        );
    }
    let y_ticks: Vec<(f64, String)> = if c.log_y {
        (ly0 as i32..=ly1 as i32)
            .map(|d| {
                let v = 10f64.powi(d);
                (v, if d < 0 { format!("{v}") } else { si(v) })
            })
            .collect()
    } else {
        (0..=(ymax / step).round() as u32)
            .map(|k| {
                let v = f64::from(k) * step;
                (v, format!("{v}"))
            })
            .collect()
    };
    for (v, label) in y_ticks {
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{} (log)</text>
<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}{}</text>"##,
        LEFT + pw / 2.0,
        H - 18.0,
        c.x_label,
        TOP + ph / 2.0,
        c.y_label,
        if c.log_y { " (log)" } else { "" }
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let col = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{col}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for &(x, y) in pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{col}"><title>{name}: {} -> {y:.3} {}</title></circle>"#,
                px(x),
                py(y),
                si(x),
                c.unit
            );
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = LEFT + pw + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{col}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A round step (1, 2 or 5 times a power of ten) that splits 0..`max` into
/// at most about six parts.
fn linear_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * p)
}
