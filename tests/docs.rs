//! The documents stay true to the programs: every `xvrd` and `xvrctl`
//! command line that README.md, CONTRIBUTING.md, CHANGELOG.md or
//! docs/*.md shows (in
//! code blocks and inline code) uses only flags and subcommands that the
//! programs' own `--help` lists. And no file of the repository cites a
//! design note outside it.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const XVRD: &str = env!("CARGO_BIN_EXE_xvrd");
const XVRCTL: &str = env!("CARGO_BIN_EXE_xvrctl");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let top = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"];
    let mut docs: Vec<PathBuf> = top.iter().map(|f| root().join(f)).collect();
    let dir = std::fs::read_dir(root().join("docs")).unwrap();
    docs.extend(
        dir.map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    docs
}

/// The code in a Markdown text: each line of a fenced block (lines ending
/// in `\` joined with the next) and each inline code span.
fn code(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            match line.trim_end().strip_suffix('\\') {
                Some(head) => pending.push_str(head),
                None => out.push(std::mem::take(&mut pending) + line),
            }
        } else {
            out.extend(line.split('`').skip(1).step_by(2).map(String::from));
        }
    }
    out
}

/// The words after `program` on each code line that runs it (up to a
/// `#` comment), with brackets and `=value` taken off.
fn invocations(code: &[String], program: &str) -> Vec<Vec<String>> {
    code.iter()
        .filter_map(|line| {
            let line = line.split(" #").next().unwrap_or_default();
            let mut words = line.split_whitespace();
            // The program by name or by path (`target/release/xvrd`).
            let suffix = format!("/{program}");
            words.find(|w| *w == program || w.ends_with(&suffix))?;
            let words = words.map(|w| {
                let w = w.trim_matches(|c| matches!(c, '[' | ']' | ',' | '.' | ';' | ':'));
                w.split('=').next().unwrap_or_default().to_string()
            });
            Some(words.filter(|w| !w.is_empty()).collect())
        })
        .collect()
}

/// What a program's help lists: its flags (and whether each takes a
/// value) and its subcommands.
struct Help {
    flags: Vec<(String, bool)>,
    commands: BTreeSet<String>,
}

fn help(program: &str, sub: Option<&str>) -> Help {
    let out = Command::new(program)
        .args(sub)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} {sub:?} --help");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = Vec::new();
    let mut commands = BTreeSet::new();
    let mut in_commands = false;
    for line in text.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_commands = false;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if in_commands {
            commands.extend(words.first().map(|w| w.to_string()));
        }
        for (i, w) in words.iter().enumerate() {
            if let Some(flag) = w.strip_prefix("--") {
                let flag = format!("--{}", flag.trim_end_matches(','));
                let takes_value = words.get(i + 1).is_some_and(|v| v.starts_with('<'));
                flags.push((flag, takes_value));
            }
        }
    }
    Help { flags, commands }
}

impl Help {
    fn flag(&self, flag: &str) -> Option<bool> {
        self.flags.iter().find(|(f, _)| f == flag).map(|&(_, v)| v)
    }
}

/// Checks one shown invocation of `program` (its path); returns what is
/// wrong with it.
fn check(program: &str, top: &Help, words: &[String]) -> Vec<String> {
    let name = Path::new(program).file_name().unwrap().to_string_lossy();
    let mut wrong = Vec::new();
    // The subcommand's help; one for each alternative shown.
    let mut subs: Option<Vec<Help>> = None;
    let mut value_next = false;
    for word in words {
        if std::mem::take(&mut value_next) {
            continue;
        }
        if word.starts_with("--") {
            let in_sub = subs.iter().flatten().find_map(|h| h.flag(word));
            match in_sub.or_else(|| top.flag(word)) {
                Some(takes_value) => value_next = takes_value,
                None => wrong.push(format!("{name}: no flag {word}")),
            }
        } else if subs.is_none() && !top.commands.is_empty() {
            // The subcommand, or alternatives such as `stats|dump`.
            let names: Vec<&str> = word.split('|').collect();
            if !names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase()))
            {
                continue;
            }
            for sub in &names {
                if !top.commands.contains(*sub) {
                    wrong.push(format!("{name}: no subcommand {sub}"));
                }
            }
            let known = names.iter().filter(|n| top.commands.contains(**n));
            subs = Some(known.map(|n| help(program, Some(n))).collect());
        }
    }
    wrong
}

#[test]
fn every_flag_and_subcommand_the_docs_show_exists() {
    let programs = [("xvrd", XVRD), ("xvrctl", XVRCTL)];
    let helps: Vec<Help> = programs.iter().map(|(_, p)| help(p, None)).collect();
    assert!(helps[1].commands.contains("stats"), "parsed xvrctl's help");
    assert_eq!(helps[0].flag("--config"), Some(true), "parsed xvrd's help");
    let mut wrong = Vec::new();
    let mut shown = 0;
    for doc in documents() {
        let code = code(&std::fs::read_to_string(&doc).unwrap());
        for ((name, path), help) in programs.iter().zip(&helps) {
            for words in invocations(&code, name) {
                shown += 1;
                for w in check(path, help, &words) {
                    wrong.push(format!(
                        "{}: {w} in `{name} {}`",
                        doc.display(),
                        words.join(" ")
                    ));
                }
            }
        }
    }
    assert!(shown > 10, "found only {shown} command lines in the docs");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_finds_a_flag_that_does_not_exist() {
    let top = help(XVRCTL, None);
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert!(check(XVRCTL, &top, &words("--json stats --watch 2")).is_empty());
    assert_eq!(check(XVRCTL, &top, &words("stats --wtach")).len(), 1);
    assert_eq!(check(XVRCTL, &top, &words("statz")).len(), 1);
}

/// Text files of the repository (not build output, not git's own).
fn repository_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "pcaps") {
                repository_files(&path, out);
            }
        } else if std::fs::read_to_string(&path).is_ok() {
            out.push(path);
        }
    }
}

#[test]
fn no_file_cites_a_note_outside_the_repository() {
    // Spelt in pieces, so that this file does not cite them itself.
    let outside = [["DESIGN", ".md"].concat(), ["../", "shared"].concat()];
    let mut files = Vec::new();
    repository_files(root(), &mut files);
    assert!(files.len() > 50, "walked the repository: {}", files.len());
    let citing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            outside.iter().any(|o| text.contains(o.as_str()))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        citing.is_empty(),
        "cite notes outside the repository: {citing:?}"
    );
}
