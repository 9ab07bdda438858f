//! Hostlist ranges (`pi-[01-32]`, `node[1-3,7]`, `rack[1-2]-pi[01-04]`): parsing, expansion in
//! order, folding names back into the compact form, and IPv4 address runs.

use std::fmt;
use std::net::Ipv4Addr;

/// The most hosts one pattern may expand to; a typo like `[1-9999999]` fails fast instead of
/// allocating millions of names.
pub const MAX_EXPANSION: u64 = 100_000;

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
/// becomes `pi-[01-03,07]`. Names are grouped while consecutive names share prefix, suffix and
/// digit width.
pub fn fold<S: AsRef<str>>(names: &[S]) -> String {
    struct Group<'a> {
        prefix: &'a str,
        suffix: &'a str,
        width: usize,
        runs: Vec<(u64, u64)>,
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let flush = |group: Group, out: &mut Vec<String>| {
        let numbers: Vec<String> = group
            .runs
            .iter()
            .map(|&(a, b)| {
                let w = group.width;
                if a == b {
                    format!("{a:0w$}")
                } else {
                    format!("{a:0w$}-{b:0w$}")
                }
            })
            .collect();
        let single = group.runs.len() == 1 && group.runs[0].0 == group.runs[0].1;
        if single {
            out.push(format!("{}{}{}", group.prefix, numbers[0], group.suffix));
        } else {
            out.push(format!(
                "{}[{}]{}",
                group.prefix,
                numbers.join(","),
                group.suffix
            ));
        }
    };
    for name in names {
        let name = name.as_ref();
        let Some((prefix, digits, suffix)) = split_last_number(name) else {
            if let Some(group) = groups.pop() {
                flush(group, &mut out);
            }
            out.push(name.to_string());
            continue;
        };
        let Ok(n) = digits.parse::<u64>() else {
            out.push(name.to_string());
            continue;
        };
        // Unpadded numbers fold with any width; padded ones only with the same width.
        let width = if digits.len() > 1 && digits.starts_with('0') {
            digits.len()
        } else {
            0
        };
        if let Some(group) = groups.last_mut() {
            let same_width = group.width == width
                || (width == 0 && digits.len() == group.width)
                || (group.width == 0 && width == 0);
            if group.prefix == prefix && group.suffix == suffix && same_width {
                let last = group.runs.last_mut().expect("groups have a run");
                if n == last.1 + 1 {
                    last.1 = n;
                } else {
                    group.runs.push((n, n));
                }
                continue;
            }
            let done = groups.pop().expect("just checked");
            flush(done, &mut out);
        }
        groups.push(Group {
            prefix,
            suffix,
            width,
            runs: vec![(n, n)],
        });
    }
    if let Some(group) = groups.pop() {
        flush(group, &mut out);
    }
    out.join(",")
}

/// Split `pi-07b` into (`pi-`, `07`, `b`) at the last run of digits.
fn split_last_number(name: &str) -> Option<(&str, &str, &str)> {
    let bytes = name.as_bytes();
    let end = bytes.iter().rposition(|b| b.is_ascii_digit())? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    if end - start > 18 {
        return None;
    }
    Some((&name[..start], &name[start..end], &name[end..]))
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
    }
}
