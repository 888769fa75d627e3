//! One description of a program (its commands, options and prose) rendered
//! as `--help`, a man page (roff) and bash, zsh and fish completions, so
//! that none of them can say something another does not.

use super::settings::wrap;

/// An option: `-s, --long ARG`.
pub struct OptionDoc {
    pub short: Option<char>,
    pub long: String,
    pub arg: Option<String>,
    /// Whether the value names a file or directory.
    pub path: bool,
    pub help: String,
}

/// A command: `put FILE...` and what it does.
pub struct CommandDoc {
    pub usage: String,
    pub help: String,
}

impl CommandDoc {
    /// The word that is typed: the first of `usage`.
    pub fn word(&self) -> &str {
        self.usage.split_whitespace().next().unwrap_or_default()
    }
}

pub struct Manual {
    pub name: String,
    /// Man page section: 1 for a user command, 8 for a daemon.
    pub section: u8,
    pub summary: String,
    pub synopsis: Vec<String>,
    pub commands: Vec<CommandDoc>,
    pub options: Vec<OptionDoc>,
    /// Titled prose. Paragraphs are separated by blank lines; a paragraph
    /// whose lines start with two spaces is kept as it is.
    pub sections: Vec<(String, String)>,
}

const WIDTH: usize = 79;
const COLUMN: usize = 25;

fn flags(opt: &OptionDoc) -> String {
    let mut out = String::new();
    if let Some(short) = opt.short {
        out.push_str(&format!("-{short}, "));
    }
    out.push_str(&format!("--{}", opt.long));
    if let Some(arg) = &opt.arg {
        out.push_str(&format!(" {arg}"));
    }
    out
}

fn two_columns(out: &mut String, left: &str, help: &str) {
    let lines = wrap(help, WIDTH - COLUMN);
    let mut lines = lines.iter();
    if left.len() + 2 < COLUMN - 1 {
        let first = lines.next().map_or("", String::as_str);
        out.push_str(&format!("  {left:<width$}{first}\n", width = COLUMN - 2));
    } else {
        out.push_str(&format!("  {left}\n"));
    }
    for line in lines {
        out.push_str(&format!("{:COLUMN$}{line}\n", ""));
    }
}

impl Manual {
    /// `--help`.
    pub fn help(&self) -> String {
        let mut out = format!("{}: {}\n\n", self.name, self.summary);
        for (i, line) in self.synopsis.iter().enumerate() {
            let lead = if i == 0 { "Usage:" } else { "      " };
            out.push_str(&format!("{lead} {line}\n"));
        }
        if !self.commands.is_empty() {
            out.push_str("\nCommands:\n");
            for command in &self.commands {
                two_columns(&mut out, &command.usage, &command.help);
            }
        }
        out.push_str("\nOptions:\n");
        for opt in &self.options {
            two_columns(&mut out, &flags(opt), &opt.help);
        }
        for (title, body) in &self.sections {
            out.push_str(&format!("\n{title}:\n"));
            for (i, paragraph) in body.trim_end().split("\n\n").enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if paragraph.starts_with("  ") {
                    out.push_str(&format!("{paragraph}\n"));
                } else {
                    for line in wrap(paragraph, WIDTH - 2) {
                        out.push_str(&format!("  {line}\n"));
                    }
                }
            }
        }
        out.trim_end().to_owned()
    }

    /// A man page in roff (man macros).
    pub fn man(&self) -> String {
        let upper = self.name.to_uppercase();
        let mut out = format!(
            ".TH {upper} {} \"\" \"ferry {}\"\n.SH NAME\n{} \\- {}\n.SH SYNOPSIS\n",
            self.section,
            env!("CARGO_PKG_VERSION"),
            self.name,
            roff(&self.summary)
        );
        for line in &self.synopsis {
            out.push_str(&format!(".B {}\n.br\n", roff(line)));
        }
        if !self.commands.is_empty() {
            out.push_str(".SH COMMANDS\n");
            for command in &self.commands {
                out.push_str(&format!(
                    ".TP\n.B {}\n{}\n",
                    roff(&command.usage),
                    roff(&command.help)
                ));
            }
        }
        out.push_str(".SH OPTIONS\n");
        for opt in &self.options {
            let mut head = String::new();
            if let Some(short) = opt.short {
                head.push_str(&format!("\\fB\\-{short}\\fR, "));
            }
            head.push_str(&format!("\\fB{}\\fR", roff(&format!("--{}", opt.long))));
            if let Some(arg) = &opt.arg {
                head.push_str(&format!(" \\fI{}\\fR", roff(arg)));
            }
            out.push_str(&format!(".TP\n{head}\n{}\n", roff(&opt.help)));
        }
        for (title, body) in &self.sections {
            out.push_str(&format!(".SH {}\n", roff(&title.to_uppercase())));
            for paragraph in body.split("\n\n") {
                if paragraph.starts_with("  ") {
                    out.push_str(&format!(".PP\n.nf\n{}\n.fi\n", roff(paragraph)));
                } else {
                    out.push_str(&format!(".PP\n{}\n", roff(paragraph)));
                }
            }
        }
        out
    }

    /// The command words, each once, and the words that may follow each
    /// (`user add`, `generate man`).
    fn words(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for command in &self.commands {
            let word = command.word();
            if word.starts_with('(') {
                continue;
            }
            let next: Vec<String> = command
                .usage
                .split_whitespace()
                .nth(1)
                .map(|second| {
                    second
                        .split('|')
                        .filter(|w| w.bytes().all(|b| b.is_ascii_lowercase()))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            match out.iter_mut().find(|(w, _)| w == word) {
                Some((_, known)) => known.extend(next),
                None => out.push((word.to_owned(), next)),
            }
        }
        out
    }

    /// A bash completion script.
    pub fn bash(&self) -> String {
        let name = &self.name;
        let func = format!("_{}", name.replace('-', "_"));
        let words = self.words();
        let mut options: Vec<String> = Vec::new();
        let mut with_value: Vec<String> = Vec::new();
        let mut with_path: Vec<String> = Vec::new();
        for opt in &self.options {
            let mut spelled = vec![format!("--{}", opt.long)];
            if let Some(short) = opt.short {
                spelled.push(format!("-{short}"));
            }
            if opt.path {
                with_path.extend(spelled.iter().cloned());
            } else if opt.arg.is_some() {
                with_value.extend(spelled.iter().cloned());
            }
            options.extend(spelled);
        }
        let first: Vec<&str> = words.iter().map(|(w, _)| w.as_str()).collect();
        let mut second = String::new();
        for (word, next) in &words {
            if !next.is_empty() {
                second.push_str(&format!(
                    "            {word}) COMPREPLY=($(compgen -W \"{}\" -- \"$cur\")); return ;;\n",
                    next.join(" ")
                ));
            }
        }
        format!(
            "# bash completion for {name}; generated by '{name}' itself\n\
             {func}() {{\n\
             \x20   local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             \x20   local commands=\"{commands}\" command=\"\" i\n\
             \x20   case \"$prev\" in\n\
             \x20       {paths}) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n\
             \x20       {values}) COMPREPLY=(); return ;;\n\
             \x20   esac\n\
             \x20   if [[ \"$cur\" == -* ]]; then\n\
             \x20       COMPREPLY=($(compgen -W \"{options}\" -- \"$cur\")); return\n\
             \x20   fi\n\
             \x20   for ((i = 1; i < COMP_CWORD; i++)); do\n\
             \x20       if [[ \" $commands \" == *\" ${{COMP_WORDS[i]}} \"* ]]; then\n\
             \x20           command=\"${{COMP_WORDS[i]}}\"; break\n\
             \x20       fi\n\
             \x20   done\n\
             \x20   if [[ -z \"$command\" && -n \"$commands\" ]]; then\n\
             \x20       COMPREPLY=($(compgen -W \"$commands\" -- \"$cur\")); return\n\
             \x20   fi\n\
             \x20   if [[ \"$prev\" == \"$command\" ]]; then\n\
             \x20       case \"$command\" in\n\
             {second}\
             \x20       esac\n\
             \x20   fi\n\
             \x20   COMPREPLY=($(compgen -f -- \"$cur\"))\n\
             }}\n\
             complete -F {func} {name}\n",
            commands = first.join(" "),
            paths = or_pattern(&with_path),
            values = or_pattern(&with_value),
            options = options.join(" "),
        )
    }

    /// A zsh completion script (`#compdef`).
    pub fn zsh(&self) -> String {
        let name = &self.name;
        let mut out =
            format!("#compdef {name}\n# zsh completion for {name}; generated by {name} itself\n\n");
        out.push_str(&format!("_{name}() {{\n  _arguments -s \\\n"));
        for opt in &self.options {
            let help = zsh_quote(&first_sentence(&opt.help));
            let action = match (&opt.arg, opt.path) {
                (None, _) => String::new(),
                (Some(arg), true) => format!(":{}:_files", arg.to_lowercase().replace(':', "-")),
                (Some(arg), false) => format!(":{}: ", arg.to_lowercase().replace(':', "-")),
            };
            match opt.short {
                Some(short) => out.push_str(&format!(
                    "    '(-{short} --{long})'{{-{short},--{long}}}'[{help}]{action}' \\\n",
                    long = opt.long
                )),
                None => out.push_str(&format!("    '--{}[{help}]{action}' \\\n", opt.long)),
            }
        }
        if self.commands.is_empty() {
            out.push_str("    '*:file:_files'\n}\n");
        } else {
            out.push_str("    '1:command:->command' \\\n    '*:file:_files'\n");
            out.push_str(
                "  case $state in\n    command)\n      local -a commands\n      commands=(\n",
            );
            for (word, _) in self.words() {
                let help = self
                    .commands
                    .iter()
                    .find(|c| c.word() == word)
                    .map_or("", |c| c.help.as_str());
                out.push_str(&format!(
                    "        '{word}:{}'\n",
                    zsh_quote(&first_sentence(help)).replace(':', "\\:")
                ));
            }
            out.push_str("      )\n      _describe command commands ;;\n  esac\n}\n");
        }
        out.push_str(&format!("\n_{name} \"$@\"\n"));
        out
    }

    /// A fish completion script.
    pub fn fish(&self) -> String {
        let name = &self.name;
        let mut out = format!("# fish completion for {name}; generated by {name} itself\n");
        let words = self.words();
        for command in &self.commands {
            let word = command.word();
            if !words.iter().any(|(w, _)| w == word) || out.contains(&format!(" -a {word} ")) {
                continue;
            }
            out.push_str(&format!(
                "complete -c {name} -n __fish_use_subcommand -f -a {word} -d {}\n",
                fish_quote(&first_sentence(&command.help))
            ));
        }
        for (word, next) in &words {
            if !next.is_empty() {
                out.push_str(&format!(
                    "complete -c {name} -n '__fish_seen_subcommand_from {word}' -f -a '{}'\n",
                    next.join(" ")
                ));
            }
        }
        for opt in &self.options {
            let mut line = format!("complete -c {name} -l {}", opt.long);
            if let Some(short) = opt.short {
                line.push_str(&format!(" -s {short}"));
            }
            match (&opt.arg, opt.path) {
                (Some(_), true) => line.push_str(" -r -F"),
                (Some(_), false) => line.push_str(" -r -f"),
                (None, _) => {}
            }
            line.push_str(&format!(" -d {}\n", fish_quote(&first_sentence(&opt.help))));
            out.push_str(&line);
        }
        out
    }
}

fn or_pattern(items: &[String]) -> String {
    if items.is_empty() {
        // A pattern nothing matches keeps the `case` valid.
        return "--no-such-option--".to_owned();
    }
    items.join("|")
}

/// A short description for a completion menu: the help up to its first
/// aside (`; `, ` (`, ` [`).
fn first_sentence(text: &str) -> String {
    let end = ["; ", " (", " ["]
        .iter()
        .filter_map(|mark| text.find(mark))
        .min()
        .unwrap_or(text.len());
    let text = &text[..end];
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn zsh_quote(text: &str) -> String {
    text.replace('\'', "'\\''")
        .replace('[', "\\[")
        .replace(']', "\\]")
}

fn fish_quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Escapes text for roff: backslashes, hyphens (so they are not broken
/// into hyphenation points) and a leading `.` or `'`.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|line| {
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
