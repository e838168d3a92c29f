//! The harness end to end in quick mode: every figure is produced and all three reports are
//! written (with or without Redis installed).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn quick_mode_writes_every_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("BENCHMARKS.md");
    // Hand-written text outside the markers must survive a run.
    std::fs::write(&out, "# Benchmarks\n\n## Analysis\n\nkept\n").unwrap();
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_rave-bench"))
        .args(["--quick", "--backend", "memory,redb", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(300));

    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("## Analysis\n\nkept"), "{md}");
    assert!(md.contains("<!-- BEGIN rave-bench"));
    assert!(md.contains("Quick mode"));
    for id in [
        "| P1 ", "| P2 ", "| P3 ", "| P4 ", "| P5 ", "| P6 ", "| P7 ", "| P8 ", "| W1 ", "| W2 ",
        "| R1 ", "| R2 ", "| R3 ",
    ] {
        assert!(md.contains(id), "{id} missing from\n{md}");
    }
    assert!(md.contains("### Engine: memory") && md.contains("### Engine: redb"));
    for heading in [
        "#### C1 ·",
        "#### C2 ·",
        "#### C3 ·",
        "#### C4 ·",
        "#### C5 ·",
    ] {
        assert!(md.contains(heading), "{heading} missing from\n{md}");
    }
    for chart in [
        "curve-c1-redb.svg",
        "curve-c3-put-memory.svg",
        "curve-c5-redb.svg",
    ] {
        let svg = std::fs::read_to_string(tmp.path().join("bench").join(chart)).unwrap();
        assert!(svg.starts_with("<svg"), "{chart}");
        assert!(
            md.contains(&format!("(bench/{chart})")),
            "{chart} not linked from\n{md}"
        );
    }

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("bench/results.json")).unwrap(),
    )
    .unwrap();
    let sections = json["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 2);
    for section in sections {
        let figures = section["figures"].as_array().unwrap();
        assert!(figures.len() >= 15, "{section}");
        // Every curve (C3 is two: get and put) with a run at each point of rave's series.
        let curves = section["curves"].as_array().unwrap();
        assert_eq!(curves.len(), 6, "{section}");
        for c in curves {
            let points = c["x"].as_array().unwrap().len();
            assert!(points >= 1, "{c}");
            let runs = c["series"][0]["runs"].as_array().unwrap();
            assert_eq!(runs.len(), points, "{c}");
            assert!(runs.iter().all(|r| r.as_array().unwrap().len() == 1), "{c}");
            assert_eq!(
                c["series"][0]["points"].as_array().unwrap().len(),
                points,
                "{c}"
            );
        }
        // Every measured row has rave's and the baseline's runs.
        for f in figures.iter().filter(|f| f["skipped"].is_null()) {
            assert_eq!(f["subject_runs"].as_array().unwrap().len(), 1, "{f}");
            assert_eq!(f["baseline_runs"].as_array().unwrap().len(), 1, "{f}");
        }
    }
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);

    let svg = std::fs::read_to_string(tmp.path().join("bench/chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("P5"));
}
