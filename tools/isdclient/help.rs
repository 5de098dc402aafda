//! The command list as the seed prints it: the usage in 25 columns, the help beside it,
//! wrapped; a usage too long for its column puts the help on the next line.

use daqproc::framework::CommandInfo;

const COL: usize = 25;
const WIDTH: usize = 75;

/// Formats `help --json` as the seed's `isdclient -c help`.
///
/// # Errors
/// If the text is not a command table.
pub fn seed_format(json: &str) -> Result<String, serde_json::Error> {
    let mut rows: Vec<CommandInfo> = serde_json::from_str(json)?;
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for r in rows.iter().filter(|r| r.name != "isddata") {
        row(&mut out, &r.usage, &r.help);
    }
    row(&mut out, "<nil>", "examine isdData");
    out.pop();
    Ok(out)
}

fn row(out: &mut String, usage: &str, help: &str) {
    let mut line = String::from(usage);
    if usage.len() >= COL {
        out.push_str(&line);
        out.push('\n');
        line.clear();
    }
    let mut first = true;
    for word in help.split_whitespace() {
        let pad = if line.len() < COL {
            COL - line.len()
        } else {
            0
        };
        if !first && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line.clear();
            first = true;
        }
        if first {
            line.push_str(&" ".repeat(if line.len() < COL {
                COL - line.len()
            } else {
                pad
            }));
            first = false;
        } else {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_usages_go_on_a_line_of_their_own() {
        let mut s = String::new();
        super::row(
            &mut s,
            "delete {worker|client} id",
            "deletes a client or worker",
        );
        assert_eq!(
            s,
            "delete {worker|client} id\n                         deletes a client or worker\n"
        );
        let mut s = String::new();
        super::row(
            &mut s,
            "buckets num secs",
            "set the number of buckets to 'num' and the bucket size to 'secs' seconds",
        );
        assert_eq!(
            s,
            "buckets num secs         set the number of buckets to 'num' and the bucket\n                         size to 'secs' seconds\n"
        );
    }
}
