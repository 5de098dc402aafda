//! Tests of the configuration file's parsing.

use super::*;

fn try_parse(text: &str) -> Result<Specs, String> {
    let dir = RuntimeDir::at(std::env::temp_dir());
    parse(
        Path::new("checks.conf"),
        text,
        &Defaults::with_interval(10_000),
        &dir,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn a_good_file() {
    let s = try_parse(
        r#"
[defaults]
rise = 1
connect_timeout = "250ms"

[check.web]
type = "http"
url = "http://127.0.0.1:8080/health?full=1"
status = [200, "3xx", "401-403"]
body = "OK"
fall = 5

[check.ssh]
type = "banner"
address = "127.0.0.1:22"
expect = "SSH-2.0-"

[check.spy]
type = "framework"
process = "spy1"
condition = ["no_conn == 0", "rate >= 1.5"]
"#,
    )
    .unwrap();
    assert_eq!(s.checks.len(), 3);
    let names: Vec<&str> = s.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["spy", "ssh", "web"]);
    let web = &s.checks[2];
    assert_eq!(web.d.thresholds.rise, 1);
    assert_eq!(web.d.thresholds.fall, 5);
    assert_eq!(web.d.connect_timeout_ms, 250);
    match &web.probe {
        Probe::Http {
            request, expect, ..
        } => {
            let r = std::str::from_utf8(request).unwrap();
            assert!(r.starts_with("GET /health?full=1 HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n"));
            assert!(expect.status.contains(302) && expect.status.contains(402));
            assert!(!expect.status.contains(404));
        }
        _ => panic!("not http"),
    }
}

#[test]
fn bad_files_name_line_and_reason() {
    let cases = [
        (
            "[check.a]\ntype = \"tcp\"\naddress = \"10.0.0.1\"\n",
            "checks.conf:3: check a: address: \"10.0.0.1\" has no port",
        ),
        (
            "[check.a]\ntype = \"smtp\"\n",
            "checks.conf:2: check a: type \"smtp\" is not one of",
        ),
        (
            "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nbogus = 1\n",
            "checks.conf:",
        ),
        (
            "\n\n[check.a]\ntype = \"http\"\nurl = \"https://x/\"\n",
            "checks.conf:5: check a: url: https://x/: https is not supported",
        ),
        (
            "[check.a]\ntype = \"http\"\nurl = \"http://127.0.0.1/\"\nbody_regex = \"(\"\n",
            "checks.conf:4: check a: bad pattern",
        ),
        (
            "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nbody = \"x\"\n",
            "checks.conf:4: check a: body does not apply to a tcp check",
        ),
        (
            "[check.a]\ntype = \"framework\"\nprocess = \"p\"\ncondition = \"x = 1\"\n",
            "checks.conf:4: check a: condition \"x = 1\": write VARIABLE OP NUMBER",
        ),
        (
            "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nrise = 0\n",
            "checks.conf:4: check a: rise: 0 is outside 1 to 1000",
        ),
        (
            "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\ninterval = \"soon\"\n",
            "checks.conf:4: check a: interval: \"soon\" is not a duration",
        ),
        (
            "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nnotify = \"/nonexistent/x\"\n",
            "checks.conf:4: check a: notify: /nonexistent/x: no such executable",
        ),
        (
            "[check.\"a b\"]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\n",
            "checks.conf:1: check a b: the name must be",
        ),
        (
            "[check.a]\ntype = \"tcp\"\n",
            "checks.conf:2: check a: a tcp check needs address",
        ),
        ("[check.a\ntype = \"tcp\"\n", "checks.conf:1: "),
    ];
    for (text, want) in cases {
        let e = try_parse(text).expect_err(text);
        assert!(e.starts_with(want), "for {text:?}:\n got {e}\nwant {want}");
    }
}

#[test]
fn the_documented_example_parses() {
    let text = include_str!("../../../../docs/examples/lvsmon.conf")
        .replace("/usr/local/bin/lvsmon-notify", "/bin/true")
        .replace("/sbin/ipvsadm", "/bin/true")
        // No DNS query from a test: the one name the example resolves becomes an address.
        .replace("mail.example.org", "127.0.0.1");
    let s = try_parse(&text).unwrap();
    assert_eq!(s.checks.len(), 7);
}

#[test]
fn durations() {
    assert_eq!(parse_duration_ms("10s"), Some(10_000));
    assert_eq!(parse_duration_ms("1.5s"), Some(1500));
    assert_eq!(parse_duration_ms("250ms"), Some(250));
    assert_eq!(parse_duration_ms("5m"), Some(300_000));
    assert_eq!(parse_duration_ms("10"), Some(10_000));
    assert_eq!(parse_duration_ms("10 parsecs"), None);
}
