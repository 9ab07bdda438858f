//! Hostlist ranges (`pi-[01-32]`, `node[1-3,7]`, `rack[1-2]-pi[01-04]`): parsing, expansion in
//! order, folding names back into the compact form, and IPv4 address runs.

use std::fmt;
use std::net::Ipv4Addr;

/// The most hosts one pattern may expand to; a typo like `[1-9999999]` fails fast instead of
/// allocating millions of names.
pub const MAX_EXPANSION: u64 = 100_000;

/// The most hosts one inventory may hold, all entries together (checked before each entry is
/// expanded).
pub const MAX_HOSTS: u64 = 100_000;

/// A malformed pattern, with the byte offset inside the pattern of the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError {
    pub message: String,
    pub help: String,
    /// Byte offset and length within the pattern text.
    pub offset: usize,
    pub len: usize,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.help)
    }
}

impl std::error::Error for RangeError {}

/// `a-b` (or a single `a`) inside brackets. `width` > 0 keeps zero-padding (`01`..`32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: u64,
    end: u64,
    width: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Set(Vec<Run>),
}

/// A parsed hostlist pattern. Without brackets it is a single literal name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<Part>,
}

impl Pattern {
    /// Parse `prefix[ranges]suffix...`; ranges are comma-separated `N` or `N-M`.
    pub fn parse(text: &str) -> Result<Pattern, RangeError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find(['[', ']']) {
            if rest.as_bytes()[open] == b']' {
                return Err(err(
                    "`]` without a matching `[`",
                    "a range is written `name-[01-32]`",
                    offset + open,
                    1,
                ));
            }
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find(']') else {
                return Err(err(
                    "unclosed `[` in range",
                    "close the range with `]`, e.g. `pi-[01-32]`",
                    offset + open,
                    rest.len() - open,
                ));
            };
            let body = &after[..close];
            if let Some(nested) = body.find('[') {
                return Err(err(
                    "nested `[` in range",
                    "ranges cannot nest; write `a[1-2]b[1-3]` for a product",
                    offset + open + 1 + nested,
                    1,
                ));
            }
            let runs = parse_runs(body, offset + open + 1)?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Set(runs));
            let consumed = open + 1 + close + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        let pattern = Pattern { parts };
        let count = pattern.count();
        if count > MAX_EXPANSION {
            return Err(err(
                &format!("range expands to {count} names"),
                &format!("one entry may expand to at most {MAX_EXPANSION} hosts"),
                0,
                text.len(),
            ));
        }
        Ok(pattern)
    }

    /// Whether the pattern has at least one bracket range.
    pub fn is_range(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Set(_)))
    }

    /// How many bracket groups it has.
    pub fn range_groups(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, Part::Set(_)))
            .count()
    }

    /// How many names it expands to (saturating).
    pub fn count(&self) -> u64 {
        self.parts.iter().fold(1u64, |acc, part| match part {
            Part::Text(_) => acc,
            Part::Set(runs) => acc.saturating_mul(runs.iter().map(|r| r.end - r.start + 1).sum()),
        })
    }

    /// The literal text outside brackets, for character checks.
    pub fn literal_text(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            Part::Set(_) => None,
        })
    }

    /// Every name, leftmost range varying slowest, runs in the order written.
    pub fn expand(&self) -> Vec<String> {
        let mut names = vec![String::new()];
        for part in &self.parts {
            match part {
                Part::Text(text) => names.iter_mut().for_each(|n| n.push_str(text)),
                Part::Set(runs) => {
                    let mut next = Vec::with_capacity(names.len() * runs.len());
                    for name in &names {
                        for run in runs {
                            for n in run.start..=run.end {
                                next.push(format!("{name}{n:0width$}", width = run.width));
                            }
                        }
                    }
                    names = next;
                }
            }
        }
        names
    }
}

fn err(message: &str, help: &str, offset: usize, len: usize) -> RangeError {
    RangeError {
        message: message.to_string(),
        help: help.to_string(),
        offset,
        len: len.max(1),
    }
}

/// `body` is the text between brackets; `base` its byte offset in the whole pattern.
fn parse_runs(body: &str, base: usize) -> Result<Vec<Run>, RangeError> {
    if body.trim().is_empty() {
        return Err(err(
            "empty range `[]`",
            "write numbers inside the brackets, e.g. `[01-32]` or `[1,3,5-7]`",
            base.saturating_sub(1),
            2,
        ));
    }
    let mut runs = Vec::new();
    let mut item_offset = base;
    for item in body.split(',') {
        runs.push(parse_run(item, item_offset)?);
        item_offset += item.len() + 1;
    }
    Ok(runs)
}

fn parse_run(item: &str, offset: usize) -> Result<Run, RangeError> {
    let expected = "each item is a number `7` or an ascending run `01-32`";
    if item.is_empty() {
        return Err(err("empty item in range", expected, offset, 1));
    }
    let (lo, hi) = match item.split_once('-') {
        Some((lo, hi)) => (lo, hi),
        None => (item, item),
    };
    let number = |digits: &str| -> Result<u64, RangeError> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
            return Err(err(
                &format!("`{item}` is not a number or a run of numbers"),
                expected,
                offset,
                item.len(),
            ));
        }
        Ok(digits.parse().expect("checked digits"))
    };
    let (start, end) = (number(lo)?, number(hi)?);
    if start > end {
        return Err(err(
            &format!("reversed range `{item}`"),
            &format!("runs go up: write `{lo_}-{hi_}`", lo_ = hi, hi_ = lo),
            offset,
            item.len(),
        ));
    }
    let padded = |s: &str| s.len() > 1 && s.starts_with('0');
    let width = if padded(lo) || padded(hi) {
        if lo.len() != hi.len() {
            return Err(err(
                &format!("inconsistent zero-padding in `{item}`"),
                &format!(
                    "a padded run has the same number of digits on both sides, e.g. `{:0w$}-{:0w$}`",
                    start,
                    end,
                    w = lo.len().max(hi.len())
                ),
                offset,
                item.len(),
            ));
        }
        lo.len()
    } else {
        0
    };
    Ok(Run { start, end, width })
}

/// `count` consecutive IPv4 addresses from `start`, carrying across octets (…1.255 → …2.0).
/// Errors when the run would pass 255.255.255.255.
pub fn ipv4_run(start: Ipv4Addr, count: usize) -> Result<Vec<String>, String> {
    let first = u32::from(start);
    let last = (first as u64) + (count as u64).saturating_sub(1);
    if last > u32::MAX as u64 {
        return Err(format!(
            "{count} addresses from {start} would go past 255.255.255.255"
        ));
    }
    Ok((0..count as u32)
        .map(|i| Ipv4Addr::from(first + i).to_string())
        .collect())
}

/// Fold names back into compact hostlist form, keeping their order: `pi-01,pi-02,pi-03,pi-07`
/// becomes `pi-[01-03,07]`. Consecutive names fold together while they share prefix, suffix and
/// digit width; anything else is written as is.
pub fn fold<S: AsRef<str>>(names: &[S]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<FoldRun<'_>> = None;
    for name in names {
        let name = name.as_ref();
        let Some(numbered) = split_last_number(name) else {
            if let Some(run) = current.take() {
                out.push(run.render());
            }
            out.push(name.to_string());
            continue;
        };
        match &mut current {
            Some(run) if run.accepts(&numbered) => run.push(numbered.number),
            _ => {
                if let Some(run) = current.take() {
                    out.push(run.render());
                }
                current = Some(FoldRun::new(numbered));
            }
        }
    }
    if let Some(run) = current {
        out.push(run.render());
    }
    out.join(",")
}

/// A name split at its last number: `pi-07b` → (`pi-`, 7 written with width 2, `b`).
struct Numbered<'a> {
    prefix: &'a str,
    suffix: &'a str,
    number: u64,
    /// Digits as written; padded numbers only fold with the same width.
    digits: usize,
    padded: bool,
}

/// Names being folded into one `prefix[runs]suffix`.
struct FoldRun<'a> {
    prefix: &'a str,
    suffix: &'a str,
    /// Zero-padding width, 0 when unpadded.
    width: usize,
    runs: Vec<(u64, u64)>,
}

impl<'a> FoldRun<'a> {
    fn new(first: Numbered<'a>) -> Self {
        FoldRun {
            prefix: first.prefix,
            suffix: first.suffix,
            width: if first.padded { first.digits } else { 0 },
            runs: vec![(first.number, first.number)],
        }
    }

    fn accepts(&self, next: &Numbered) -> bool {
        let width_fits = if self.width == 0 {
            !next.padded
        } else {
            next.digits == self.width
        };
        self.prefix == next.prefix && self.suffix == next.suffix && width_fits
    }

    fn push(&mut self, number: u64) {
        let last = self.runs.last_mut().expect("a run has a first number");
        if number == last.1 + 1 {
            last.1 = number;
        } else {
            self.runs.push((number, number));
        }
    }

    fn render(&self) -> String {
        let w = self.width;
        if let [(a, b)] = self.runs[..]
            && a == b
        {
            return format!("{}{a:0w$}{}", self.prefix, self.suffix);
        }
        let runs: Vec<String> = self
            .runs
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    format!("{a:0w$}")
                } else {
                    format!("{a:0w$}-{b:0w$}")
                }
            })
            .collect();
        format!("{}[{}]{}", self.prefix, runs.join(","), self.suffix)
    }
}

/// Split a name at its last run of digits; `None` when it has none (or too many to be a number).
fn split_last_number(name: &str) -> Option<Numbered<'_>> {
    let bytes = name.as_bytes();
    let end = bytes.iter().rposition(|b| b.is_ascii_digit())? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let digits = &name[start..end];
    Some(Numbered {
        prefix: &name[..start],
        suffix: &name[end..],
        number: digits.parse().ok().filter(|_| digits.len() <= 18)?,
        digits: digits.len(),
        padded: digits.len() > 1 && digits.starts_with('0'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str) -> Vec<String> {
        Pattern::parse(text).unwrap().expand()
    }

    #[test]
    fn literal_names_expand_to_themselves() {
        assert_eq!(expand("server-1"), ["server-1"]);
        assert!(!Pattern::parse("server-1").unwrap().is_range());
    }

    #[test]
    fn table_of_expansions() {
        let cases: &[(&str, &[&str])] = &[
            ("pi-[01-03]", &["pi-01", "pi-02", "pi-03"]),
            ("node[1-3,7]", &["node1", "node2", "node3", "node7"]),
            ("n[8-11]", &["n8", "n9", "n10", "n11"]),
            ("n[5]", &["n5"]),
            ("r[1-2]-pi[1-2]", &["r1-pi1", "r1-pi2", "r2-pi1", "r2-pi2"]),
            ("[1-2].lan", &["1.lan", "2.lan"]),
            ("x[009-011]", &["x009", "x010", "x011"]),
            ("a[3,1]", &["a3", "a1"]),
        ];
        for (pattern, names) in cases {
            assert_eq!(expand(pattern), *names, "{pattern}");
            assert_eq!(Pattern::parse(pattern).unwrap().count(), names.len() as u64);
        }
    }

    #[test]
    fn table_of_malformed_ranges() {
        let cases: &[(&str, &str, usize)] = &[
            ("pi-[10-01]", "reversed range `10-01`", 4),
            ("pi-[]", "empty range", 3),
            ("pi-[01-100]", "inconsistent zero-padding", 4),
            ("pi-[1-05]", "inconsistent zero-padding", 4),
            ("pi-[01-03", "unclosed `[`", 3),
            ("pi-01]", "`]` without", 5),
            ("pi-[a-c]", "`a-c` is not a number", 4),
            ("pi-[1-3,,5]", "empty item", 8),
            ("pi-[1-[2]]", "nested `[`", 6),
            ("pi-[1-2-3]", "`1-2-3` is not a number", 4),
            ("pi-[0-999999]", "expands to 1000000 names", 0),
        ];
        for (pattern, message, offset) in cases {
            let e = Pattern::parse(pattern).unwrap_err();
            assert!(e.message.contains(message), "{pattern}: {}", e.message);
            assert_eq!(e.offset, *offset, "{pattern}");
        }
    }

    #[test]
    fn ipv4_runs_carry_across_octets() {
        let run = ipv4_run("10.0.0.254".parse().unwrap(), 4).unwrap();
        assert_eq!(run, ["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]);
        assert!(ipv4_run("255.255.255.254".parse().unwrap(), 3).is_err());
        assert_eq!(
            ipv4_run("255.255.255.254".parse().unwrap(), 2)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn folds_names_back_into_ranges() {
        assert_eq!(fold(&["pi-01", "pi-02", "pi-03", "pi-07"]), "pi-[01-03,07]");
        assert_eq!(fold(&["server-1"]), "server-1");
        assert_eq!(fold(&["a", "n1", "n2", "b"]), "a,n[1-2],b");
        assert_eq!(fold(&["n9", "n10", "n11"]), "n[9-11]");
        assert_eq!(fold::<&str>(&[]), "");
        assert_eq!(fold(&["pi-09", "pi-10", "pi-1"]), "pi-[09-10],pi-1");
        assert_eq!(fold(&["n1", "n3", "x", "n4"]), "n[1,3],x,n4");
    }
}
