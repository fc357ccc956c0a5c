//! The report page renders in a real browser: headless Chromium (Debian's `chromium`) takes a
//! screenshot of `index.html`, and the screenshot must be mostly drawn, in many colours — an
//! empty page, a broken SVG or a page that needs the network would not be. Skips (with a note)
//! when /usr/bin/chromium is absent; `scripts/check-report-render` runs it on any report.
//!
//! `TRAILSTOP_REPORT_DIR=DIR` checks that report instead of making one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 2400;

/// The screenshot's share of non-white pixels and its number of distinct colours.
fn screenshot(page: &Path, out: &Path) -> (f64, usize) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let status = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            // No network: the page must be self-contained.
            "--proxy-server=127.0.0.1:9",
            &format!("--window-size={WIDTH},{HEIGHT}"),
        ])
        .arg(format!("--screenshot={}", out.display()))
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("chromium runs");
    assert!(status.success(), "chromium failed on {url}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(out).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    let channels = info.line_size / info.width as usize;
    let mut drawn = 0usize;
    let mut colours = HashSet::new();
    for px in buf[..info.buffer_size()].chunks(channels) {
        if px[..3].iter().any(|&c| c < 245) {
            drawn += 1;
        }
        colours.insert((px[0], px[1], px[2]));
    }
    (
        drawn as f64 / (info.width * info.height) as f64,
        colours.len(),
    )
}

#[test]
fn index_html_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("skipped: {CHROMIUM} is absent (apt-get install chromium)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = match std::env::var_os("TRAILSTOP_REPORT_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let d = tmp.path().join("report");
            assert_cmd::Command::cargo_bin("trailstop")
                .unwrap()
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["sweep", "scenarios/quickstart.toml", "--quiet", "--no-band"])
                .args([
                    "--grid",
                    "activation_percent=0,0.3",
                    "--grid",
                    "distance_percent=0.2,0.3",
                ])
                .arg("--out")
                .arg(&d)
                .assert()
                .success();
            d
        }
    };
    // The check itself can fail: a blank page is far below the bar.
    let blank = tmp.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let (blank_share, _) = screenshot(&blank, &tmp.path().join("blank.png"));
    assert!(blank_share < 0.001, "blank page: {blank_share}");

    let shot = tmp.path().join("index.png");
    let (share, colours) = screenshot(&dir.join("index.html"), &shot);
    eprintln!(
        "{}: {:.1} % of the first {WIDTH}x{HEIGHT} px drawn, {colours} colours",
        dir.join("index.html").display(),
        share * 100.0
    );
    assert!(share > 0.10, "too little drawn: {share}");
    assert!(colours > 200, "too few colours: {colours}");
}
