//! Environment files (`env_file = "/etc/default/app"`), in the format
//! systemd documents for `EnvironmentFile=` (systemd.exec(5)):
//!
//! - one `KEY=VALUE` per line; empty lines, lines starting with `#` or `;`,
//!   and lines without `=` are ignored;
//! - unquoted values: leading and trailing whitespace dropped, interior
//!   whitespace kept; a backslash keeps the next character; a backslash at
//!   the end of the line continues the value on the next line;
//! - `'single'` quotes: everything verbatim up to the closing quote, across
//!   lines, no escapes;
//! - `"double"` quotes: across lines; a backslash before `"`, `\`, `` ` ``
//!   or `$` keeps that character, before a newline continues the line, and
//!   before anything else is kept with the character;
//! - whitespace outside the quotes is dropped.
//!
//! One extension: a leading `export ` before the name is accepted (files
//! also sourced by shell scripts use it). Names must be valid variable
//! names (letters, digits, `_`, not starting with a digit); a bad name is an
//! error naming the line, not silently skipped.

/// A parse error: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Parses the text of an environment file into assignments, in order (a
/// later assignment of the same name wins when they are applied).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let start_line = line;
        // One logical line's name part.
        let mut j = i;
        while j < chars.len() && chars[j] != '\n' && chars[j] != '=' {
            j += 1;
        }
        let head: String = chars[i..j].iter().collect();
        let first = head.trim_start().chars().next();
        if j >= chars.len() || chars[j] == '\n' || matches!(first, Some('#') | Some(';')) {
            // Comment, blank, or no `=`: skip the physical line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            i += 1;
            line += 1;
            continue;
        }
        let mut name = head.trim().to_string();
        if let Some(rest) = name.strip_prefix("export") {
            if rest.starts_with([' ', '\t']) {
                name = rest.trim().to_string();
            }
        }
        if !valid_name(&name) {
            return Err(EnvFileError {
                line: start_line,
                message: format!("'{name}' is not a valid variable name"),
            });
        }
        // The value, from after `=` to the end of the logical line.
        i = j + 1;
        let mut value = String::new();
        // Whitespace that may turn out to be interior (kept) or trailing.
        let mut pending = String::new();
        let mut started = false;
        while let Some(&c) = chars.get(i) {
            match c {
                '\n' => {
                    i += 1;
                    line += 1;
                    break;
                }
                ' ' | '\t' | '\r' => {
                    if started {
                        pending.push(c);
                    }
                    i += 1;
                }
                '\\' => {
                    value.push_str(&std::mem::take(&mut pending));
                    match chars.get(i + 1) {
                        Some('\n') => {
                            i += 2;
                            line += 1;
                        }
                        Some(&n) => {
                            value.push(n);
                            started = true;
                            i += 2;
                        }
                        None => i += 1,
                    }
                }
                '\'' | '"' if !started => {
                    let q = c;
                    i += 1;
                    let open_line = line;
                    loop {
                        let Some(&d) = chars.get(i) else {
                            return Err(EnvFileError {
                                line: open_line,
                                message: format!("{name}: the {q} quote is never closed"),
                            });
                        };
                        if d == q {
                            i += 1;
                            break;
                        }
                        if d == '\n' {
                            line += 1;
                        }
                        if q == '"' && d == '\\' {
                            match chars.get(i + 1) {
                                Some(&n) if "\"\\`$".contains(n) => {
                                    value.push(n);
                                    i += 2;
                                    continue;
                                }
                                Some('\n') => {
                                    i += 2;
                                    line += 1;
                                    continue;
                                }
                                _ => {}
                            }
                        }
                        value.push(d);
                        i += 1;
                    }
                    // Only whitespace may follow the closing quote.
                    while let Some(&d) = chars.get(i) {
                        match d {
                            ' ' | '\t' | '\r' => i += 1,
                            '\n' => break,
                            _ => {
                                return Err(EnvFileError {
                                    line,
                                    message: format!(
                                        "{name}: unexpected '{d}' after the closing {q} quote"
                                    ),
                                })
                            }
                        }
                    }
                    started = true;
                    pending.clear();
                }
                _ => {
                    value.push_str(&std::mem::take(&mut pending));
                    value.push(c);
                    started = true;
                    i += 1;
                }
            }
        }
        out.push((name, value));
    }
    Ok(out)
}

/// Reads and parses `spec`: a path, or `-PATH` for a file that may be
/// missing (systemd's spelling). A missing optional file gives nothing.
pub fn load(spec: &str) -> Result<Vec<(String, String)>, String> {
    let (optional, path) = match spec.strip_prefix('-') {
        Some(p) => (true, p),
        None => (false, spec),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map_err(|e| format!("env_file {path}: {e}")),
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("env_file {path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The cases of systemd.exec(5)'s description of the format.
    #[test]
    fn the_documented_format() {
        let text = "# a comment\n; another\n\nPLAIN=value\n  SPACED =  a  b  \nEMPTY=\n\
                    NOEQUALS\nSQ2='a \"b\" \\n c'\nDQ=\"say \\\"hi\\\" \\$HOME \\\\ \\q\"\n\
                    MULTI='line1\nline2'\nCONT=one \\\ntwo\nESC=a\\ b\\\\c\nexport EXPORTED=yes\n\
                    KEEPQ=a'b'\"c\"\nHASH=a#b\nDQNL=\"x\\\ny\"\nPLAIN=again\n";
        let got = parse(text).unwrap();
        assert_eq!(
            got,
            kv(&[
                ("PLAIN", "value"),
                ("SPACED", "a  b"),
                ("EMPTY", ""),
                ("SQ2", "a \"b\" \\n c"),
                ("DQ", "say \"hi\" $HOME \\ \\q"),
                ("MULTI", "line1\nline2"),
                ("CONT", "one two"),
                ("ESC", "a b\\c"),
                ("EXPORTED", "yes"),
                ("KEEPQ", "a'b'\"c\""),
                ("HASH", "a#b"),
                ("DQNL", "xy"),
                ("PLAIN", "again"),
            ])
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("A=1\n2BAD=x\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("2BAD"));
        let e = parse("A=1\nB='open\nstill\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("never closed"));
        let e = parse("A=\"x\" y\n").unwrap_err();
        assert!(e.message.contains("after the closing"));
    }

    #[test]
    fn optional_files_may_be_missing() {
        assert_eq!(load("-/nonexistent/moonlit-env").unwrap(), Vec::new());
        let e = load("/nonexistent/moonlit-env").unwrap_err();
        assert!(e.contains("/nonexistent/moonlit-env"), "{e}");
    }
}
