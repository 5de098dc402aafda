//! Tab completion: spyctl's verbs and the selected process's commands (as read from it with
//! `help --json`) for the first word, variable names (from the region's schema) after `get`,
//! `set` and `watch`, process names after `open`/`use`.

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use shvars::region::{Access, RegionReader};
use shvars::{ProcName, RuntimeDir};

use crate::console::VERBS;

/// The line editor's helper. The console refreshes `selected` and `commands` after every line;
/// variable and process names are read when Tab is pressed, so they are never stale.
#[derive(Debug)]
pub struct Completion {
    dir: RuntimeDir,
    selected: Option<ProcName>,
    commands: Vec<String>,
}

impl Completion {
    pub fn new(dir: RuntimeDir) -> Completion {
        Completion {
            dir,
            selected: None,
            commands: Vec::new(),
        }
    }

    /// What the console knows now: the selected process and its command names.
    pub fn update(&mut self, selected: Option<ProcName>, commands: Vec<String>) {
        self.selected = selected;
        self.commands = commands;
    }

    fn words(&self) -> Vec<String> {
        VERBS
            .iter()
            .map(|(v, _, _)| (*v).to_owned())
            .chain(self.commands.iter().cloned())
            .collect()
    }

    fn var_names(&self, rw_only: bool) -> Vec<String> {
        let Some(name) = &self.selected else {
            return Vec::new();
        };
        let Ok(r) = RegionReader::open(&self.dir, name) else {
            return Vec::new();
        };
        r.specs()
            .iter()
            .filter(|s| !rw_only || s.access == Access::ReadWrite)
            .map(|s| s.name.clone())
            .collect()
    }

    fn process_names(&self) -> Vec<String> {
        self.dir
            .process_names()
            .map(|v| v.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// The candidates for the word being typed, given the words before it.
    fn candidates(&self, before: &[&str], word: &str) -> Vec<String> {
        match before {
            [] => self.words(),
            ["open" | "use"] => self.process_names(),
            ["help"] => self.words(),
            ["set"] => self.var_names(true),
            ["get", ..] => self.var_names(false),
            ["watch", .., "--interval" | "-i" | "--count" | "-c"] => Vec::new(),
            ["watch", ..] if word.starts_with('-') => {
                vec!["--interval".to_owned(), "--count".to_owned()]
            }
            ["watch", ..] => self.var_names(false),
            _ => Vec::new(),
        }
    }
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(char::is_whitespace)
            .map(|i| i + before[i..].chars().next().map_or(1, char::len_utf8))
            .unwrap_or(0);
        let word = &before[start..];
        let prev: Vec<&str> = before[..start].split_whitespace().collect();
        let mut names: Vec<String> = self
            .candidates(&prev, word)
            .into_iter()
            .filter(|c| c.starts_with(word))
            .collect();
        names.sort();
        names.dedup();
        // A trailing space after a unique completion, as a shell does.
        let pairs = names
            .into_iter()
            .map(|n| Pair {
                replacement: format!("{n} "),
                display: n,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for Completion {
    type Hint = String;
}

impl Highlighter for Completion {}

impl Validator for Completion {}

impl Helper for Completion {}
