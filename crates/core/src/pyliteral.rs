//! Python literals, as barman writes them into `backup.info` (`repr()` output) and
//! reads them back (`ast.literal_eval`).
//!
//! [`parse`] accepts what `ast.literal_eval` accepts for the value kinds of
//! [`PyValue`]; [`PyValue::to_python`] renders exactly what Python's `repr()` prints;
//! [`PyValue::to_json_text`] renders exactly what Python's `json.dumps()` prints with
//! its default settings (`ensure_ascii=True`, separators `", "` and `": "`), which is
//! how the barman-cloud tools print their `--format json` output.

use std::fmt::Write as _;

/// A Python literal value. Dicts keep their insertion order, like Python's.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None` (JSON `null`).
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer; Python's are unbounded, barman's fit in `i64`.
    Int(i64),
    /// A float, rendered with Python's shortest round-trip `repr()`.
    Float(f64),
    /// A text string (not bytes).
    Str(String),
    /// `[a, b]`.
    List(Vec<PyValue>),
    /// `(a, b)`; a JSON array when rendered as JSON.
    Tuple(Vec<PyValue>),
    /// `{k: v}`, as (key, value) pairs in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
}

/// A text that is not a Python literal this module understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Python literal at byte {pos}: {msg}")]
pub struct PyLiteralError {
    /// Byte offset in the parsed text.
    pub pos: usize,
    /// What was expected there or what is wrong.
    pub msg: String,
}

/// Parse a Python literal (the subset of `ast.literal_eval` covered by [`PyValue`]).
///
/// Accepted: `None`, `True`, `False`; ints (decimal, `0x`/`0o`/`0b`, underscores,
/// unary `+`/`-`); floats (`1.5`, `.5`, `5.`, `1e-05`, underscores); strings with
/// either quote style, triple quotes, `r`/`u` prefixes, implicit concatenation of
/// adjacent literals and every Python escape except `\N{…}`; lists, tuples (`()`,
/// `(x,)`, and a bare top-level `1, 2`), dicts; trailing commas; whitespace and
/// newlines between tokens. Sets, bytes, complex numbers and ints outside `i64`
/// are rejected.
pub fn parse(text: &str) -> Result<PyValue, PyLiteralError> {
    let mut p = Parser {
        s: text,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let first = p.value()?;
    p.skip_ws();
    let value = if p.peek() == Some(',') {
        // A bare tuple: `1, 2`.
        let mut items = vec![first];
        while p.eat(',') {
            p.skip_ws();
            if p.at_end() {
                break;
            }
            items.push(p.value()?);
            p.skip_ws();
        }
        PyValue::Tuple(items)
    } else {
        first
    };
    p.skip_ws();
    if !p.at_end() {
        return Err(p.err("unexpected trailing characters"));
    }
    Ok(value)
}

impl PyValue {
    /// Python's `repr()` of the value.
    pub fn to_python(&self) -> String {
        let mut out = String::new();
        self.write_python(&mut out);
        out
    }

    fn write_python(&self, out: &mut String) {
        match self {
            PyValue::None => out.push_str("None"),
            PyValue::Bool(true) => out.push_str("True"),
            PyValue::Bool(false) => out.push_str("False"),
            PyValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            // Python's repr writes `inf`, which no literal parser (neither
            // `ast.literal_eval` nor ours) reads back; `1e999` reads back as the
            // same infinity in both.
            PyValue::Float(f) if f.is_infinite() => {
                out.push_str(if *f > 0.0 { "1e999" } else { "-1e999" })
            }
            PyValue::Float(f) => out.push_str(&float_repr(*f)),
            PyValue::Str(s) => out.push_str(&str_repr(s)),
            PyValue::List(items) => {
                out.push('[');
                write_seq_python(items, out);
                out.push(']');
            }
            PyValue::Tuple(items) => {
                out.push('(');
                write_seq_python(items, out);
                if items.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            PyValue::Dict(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write_python(out);
                    out.push_str(": ");
                    v.write_python(out);
                }
                out.push('}');
            }
        }
    }

    /// The value as a `serde_json::Value`: tuples and lists become arrays, dicts
    /// become objects whose keys are converted as `json.dumps` does (`1` → `"1"`,
    /// `True` → `"true"`, `None` → `"null"`). Non-finite floats become `null`.
    ///
    /// Note: `serde_json::Map` may not keep the insertion order; use
    /// [`PyValue::to_json_text`] for byte-exact output.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            PyValue::None => Value::Null,
            PyValue::Bool(b) => Value::Bool(*b),
            PyValue::Int(i) => Value::from(*i),
            PyValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            PyValue::Str(s) => Value::String(s.clone()),
            PyValue::List(items) | PyValue::Tuple(items) => {
                Value::Array(items.iter().map(PyValue::to_json).collect())
            }
            PyValue::Dict(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (json_key(k), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The text Python's `json.dumps(value)` prints (default settings: ASCII only,
    /// `", "` and `": "` separators, floats as `repr`, `Infinity`/`NaN`).
    pub fn to_json_text(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            PyValue::None => out.push_str("null"),
            PyValue::Bool(true) => out.push_str("true"),
            PyValue::Bool(false) => out.push_str("false"),
            PyValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            PyValue::Float(f) => {
                if f.is_nan() {
                    out.push_str("NaN")
                } else if f.is_infinite() {
                    out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
                } else {
                    out.push_str(&float_repr(*f))
                }
            }
            PyValue::Str(s) => json_str(s, out),
            PyValue::List(items) | PyValue::Tuple(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            PyValue::Dict(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    json_str(&json_key(k), out);
                    out.push_str(": ");
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// Python truthiness (`bool(value)`): `None`, `False`, `0`, `0.0`, `''` and empty
    /// containers are false.
    pub fn is_truthy(&self) -> bool {
        match self {
            PyValue::None => false,
            PyValue::Bool(b) => *b,
            PyValue::Int(i) => *i != 0,
            PyValue::Float(f) => *f != 0.0,
            PyValue::Str(s) => !s.is_empty(),
            PyValue::List(v) | PyValue::Tuple(v) => !v.is_empty(),
            PyValue::Dict(v) => !v.is_empty(),
        }
    }

    /// The text of a [`PyValue::Str`]; `None` for any other kind.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a [`PyValue::Int`]; `None` for any other kind (floats
    /// included).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            PyValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Ints and floats as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Int(i) => Some(*i as f64),
            PyValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The items of a list or a tuple.
    pub fn as_seq(&self) -> Option<&[PyValue]> {
        match self {
            PyValue::List(v) | PyValue::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// The value under a string key of a dict.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl From<&str> for PyValue {
    fn from(s: &str) -> Self {
        PyValue::Str(s.to_owned())
    }
}

impl From<String> for PyValue {
    fn from(s: String) -> Self {
        PyValue::Str(s)
    }
}

impl From<i64> for PyValue {
    fn from(i: i64) -> Self {
        PyValue::Int(i)
    }
}

impl From<f64> for PyValue {
    fn from(f: f64) -> Self {
        PyValue::Float(f)
    }
}

impl From<bool> for PyValue {
    fn from(b: bool) -> Self {
        PyValue::Bool(b)
    }
}

fn write_seq_python(items: &[PyValue], out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        item.write_python(out);
    }
}

/// How `json.dumps` turns a dict key into a string.
fn json_key(k: &PyValue) -> String {
    match k {
        PyValue::Str(s) => s.clone(),
        PyValue::Int(i) => i.to_string(),
        PyValue::Float(f) => {
            if f.is_nan() {
                "NaN".into()
            } else if f.is_infinite() {
                if *f > 0.0 { "Infinity" } else { "-Infinity" }.into()
            } else {
                float_repr(*f)
            }
        }
        PyValue::Bool(b) => if *b { "true" } else { "false" }.into(),
        PyValue::None => "null".into(),
        // json.dumps would raise TypeError; keep something readable.
        other => other.to_python(),
    }
}

/// A JSON string literal as `json.dumps` (ensure_ascii=True) writes it.
fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr()` of a float: the shortest digits that round-trip, in fixed
/// notation when the decimal exponent is in `-4 <= exp < 16`, else scientific with
/// a signed exponent of at least two digits (`1e-05`, `1e+16`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest digits that round-trip ("-1.2345e-7"), but
    // when two such digit strings exist it does not always pick the one nearest to
    // the exact value as Python (David Gay's dtoa) does. The correctly rounded
    // (ties-to-even) value with the same number of digits is the nearest one; use
    // it whenever it round-trips.
    let shortest = format!("{:e}", f);
    let ndigits = shortest
        .split_once('e')
        .map(|(m, _)| m.chars().filter(char::is_ascii_digit).count())
        .unwrap_or(1);
    let nearest = format!("{:.*e}", ndigits.saturating_sub(1), f);
    let sci = if nearest.parse::<f64>() == Ok(f) {
        nearest
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an int");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        // Fixed notation; decimal point after `exp + 1` digits.
        let point = exp + 1;
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..(-point) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// Python's `repr()` of a str.
pub(crate) fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => {
                let cp = c as u32;
                if cp < 0x100 {
                    let _ = write!(out, "\\x{:02x}", cp);
                } else if cp < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", cp);
                } else {
                    let _ = write!(out, "\\U{:08x}", cp);
                }
            }
        }
    }
    out.push(quote);
    out
}

/// An approximation of Python's `str.isprintable()` for one character: false for
/// the categories Cc, Cf, Co, Zl, Zp, Zs (except the ASCII space) and for
/// noncharacters. Unassigned code points (Cn) are treated as printable, as no
/// Unicode tables are bundled; they never occur in barman's metadata in practice.
fn is_printable(c: char) -> bool {
    let cp = c as u32;
    match cp {
        0x20..=0x7e => true,
        0..=0x1f | 0x7f..=0xa0 | 0xad => false,
        // Zs
        0x1680 | 0x2000..=0x200a | 0x202f | 0x205f | 0x3000 => false,
        // Zl, Zp
        0x2028 | 0x2029 => false,
        // Cf
        0x600..=0x605
        | 0x61c
        | 0x6dd
        | 0x70f
        | 0x890
        | 0x891
        | 0x8e2
        | 0x180e
        | 0x200b..=0x200f
        | 0x202a..=0x202e
        | 0x2060..=0x2064
        | 0x2066..=0x206f
        | 0xfeff
        | 0xfff9..=0xfffb
        | 0x110bd
        | 0x110cd
        | 0x13430..=0x1343f
        | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a
        | 0xe0001
        | 0xe0020..=0xe007f => false,
        // Co
        0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd => false,
        // Noncharacters (Cn)
        0xfdd0..=0xfdef => false,
        _ if cp & 0xfffe == 0xfffe => false,
        _ => true,
    }
}

/// How deep lists, tuples and dicts may nest: CPython's own parser refuses more
/// than 200 nested brackets. A `backup.info` from a bucket must never exhaust the
/// stack (an abort, not an error) with `[[[[…`.
const MAX_NESTING: usize = 200;

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    /// Open brackets around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, msg: impl Into<String>) -> PyLiteralError {
        PyLiteralError {
            pos: self.pos,
            msg: msg.into(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n' | '\r' | '\x0c') => self.pos += 1,
                // Explicit line joining.
                Some('\\') if self.rest()[1..].starts_with('\n') => self.pos += 2,
                Some('\\') if self.rest()[1..].starts_with("\r\n") => self.pos += 3,
                _ => break,
            }
        }
    }

    fn expect(&mut self, c: char) -> Result<(), PyLiteralError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(format!("expected '{c}'")))
        }
    }

    fn value(&mut self) -> Result<PyValue, PyLiteralError> {
        let c = self
            .peek()
            .ok_or_else(|| self.err("unexpected end of input"))?;
        if matches!(c, '[' | '(' | '{') {
            if self.depth >= MAX_NESTING {
                return Err(self.err(format!("more than {MAX_NESTING} nested brackets")));
            }
            self.depth += 1;
            let v = self.container(c);
            self.depth -= 1;
            return v;
        }
        self.scalar(c)
    }

    /// A list, tuple or dict opened by `open`.
    fn container(&mut self, open: char) -> Result<PyValue, PyLiteralError> {
        match open {
            '[' => {
                self.pos += 1;
                Ok(PyValue::List(self.seq(']')?.0))
            }
            '(' => {
                self.pos += 1;
                let (items, trailing_comma) = self.seq(')')?;
                if items.len() == 1 && !trailing_comma {
                    // A parenthesized expression, not a tuple.
                    Ok(items.into_iter().next().expect("one item"))
                } else {
                    Ok(PyValue::Tuple(items))
                }
            }
            _ => {
                self.pos += 1;
                self.dict()
            }
        }
    }

    /// Anything but a container, starting with `c`.
    fn scalar(&mut self, c: char) -> Result<PyValue, PyLiteralError> {
        match c {
            '-' | '+' => {
                self.pos += 1;
                self.skip_ws();
                match self.peek() {
                    Some(d) if d.is_ascii_digit() || d == '.' => self.number(c == '-'),
                    _ => Err(self.err("expected a number after a sign")),
                }
            }
            '0'..='9' | '.' => self.number(false),
            '\'' | '"' => self.strings(),
            c if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                let ident_len = self
                    .rest()
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(self.rest().len());
                let ident = &self.s[start..start + ident_len];
                let after = self.s[start + ident_len..].chars().next();
                if matches!(after, Some('\'' | '"')) {
                    return self.strings();
                }
                self.pos += ident_len;
                match ident {
                    "None" => Ok(PyValue::None),
                    "True" => Ok(PyValue::Bool(true)),
                    "False" => Ok(PyValue::Bool(false)),
                    _ => Err(PyLiteralError {
                        pos: start,
                        msg: format!("unsupported name '{ident}'"),
                    }),
                }
            }
            _ => Err(self.err(format!("unexpected character {c:?}"))),
        }
    }

    /// Items up to `close`; returns them and whether a trailing comma was seen.
    fn seq(&mut self, close: char) -> Result<(Vec<PyValue>, bool), PyLiteralError> {
        let mut items = Vec::new();
        let mut trailing_comma = false;
        loop {
            self.skip_ws();
            if self.eat(close) {
                return Ok((items, trailing_comma));
            }
            items.push(self.value()?);
            self.skip_ws();
            if self.eat(',') {
                trailing_comma = true;
            } else {
                self.expect(close)?;
                return Ok((items, false));
            }
        }
    }

    fn dict(&mut self) -> Result<PyValue, PyLiteralError> {
        let mut pairs: Vec<(PyValue, PyValue)> = Vec::new();
        loop {
            self.skip_ws();
            if self.eat('}') {
                return Ok(PyValue::Dict(pairs));
            }
            let key = self.value()?;
            self.skip_ws();
            if !self.eat(':') {
                return Err(self.err("expected ':' (sets are not supported)"));
            }
            self.skip_ws();
            let value = self.value()?;
            // Like Python: a repeated key keeps its first position, last value.
            match pairs.iter_mut().find(|(k, _)| *k == key) {
                Some(pair) => pair.1 = value,
                None => pairs.push((key, value)),
            }
            self.skip_ws();
            if !self.eat(',') {
                self.skip_ws();
                self.expect('}')?;
                return Ok(PyValue::Dict(pairs));
            }
        }
    }

    fn number(&mut self, neg: bool) -> Result<PyValue, PyLiteralError> {
        let start = self.pos;
        let rest = self.rest();
        let lower = rest.get(..2).map(|p| p.to_ascii_lowercase());
        let radix = match lower.as_deref() {
            Some("0x") => 16,
            Some("0o") => 8,
            Some("0b") => 2,
            _ => 10,
        };
        if radix != 10 {
            let body_len = rest[2..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - 2);
            let body = &rest[2..2 + body_len];
            self.pos += 2 + body_len;
            let digits = clean_underscores(body).ok_or_else(|| PyLiteralError {
                pos: start,
                msg: "invalid number".into(),
            })?;
            let magnitude = i128::from_str_radix(&digits, radix).map_err(|e| PyLiteralError {
                pos: start,
                msg: format!("invalid integer: {e}"),
            })?;
            return signed_int(magnitude, neg, start);
        }
        // Decimal int or float.
        let bytes = rest.as_bytes();
        let mut i = 0;
        let mut is_float = false;
        let digits = |i: &mut usize| {
            while *i < bytes.len() && (bytes[*i].is_ascii_digit() || bytes[*i] == b'_') {
                *i += 1;
            }
        };
        digits(&mut i);
        if i < bytes.len() && bytes[i] == b'.' {
            is_float = true;
            i += 1;
            digits(&mut i);
        }
        if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
            let mut j = i + 1;
            if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                j += 1;
            }
            if j < bytes.len() && bytes[j].is_ascii_digit() {
                is_float = true;
                i = j;
                digits(&mut i);
            }
        }
        if i < bytes.len() && (bytes[i] == b'j' || bytes[i] == b'J') {
            return Err(self.err("complex numbers are not supported"));
        }
        let text = &rest[..i];
        self.pos += i;
        let bad = || PyLiteralError {
            pos: start,
            msg: format!("invalid number {text:?}"),
        };
        let clean = clean_underscores(text).ok_or_else(bad)?;
        if clean == "." || clean.is_empty() {
            return Err(bad());
        }
        if is_float {
            let f = clean.parse::<f64>().map_err(|_| bad())?;
            Ok(PyValue::Float(if neg { -f } else { f }))
        } else {
            if clean.len() > 1 && clean.starts_with('0') && clean.bytes().any(|b| b != b'0') {
                return Err(PyLiteralError {
                    pos: start,
                    msg: "leading zeros in a decimal integer are not allowed".into(),
                });
            }
            let magnitude = clean.parse::<i128>().map_err(|_| PyLiteralError {
                pos: start,
                msg: format!("integer out of range: {text}"),
            })?;
            signed_int(magnitude, neg, start)
        }
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> Result<PyValue, PyLiteralError> {
        let mut out = String::new();
        loop {
            self.string(&mut out)?;
            let save = self.pos;
            self.skip_ws();
            let rest = self.rest();
            let prefix_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            if prefix_len <= 2 && matches!(rest[prefix_len..].chars().next(), Some('\'' | '"')) {
                continue;
            }
            self.pos = save;
            return Ok(PyValue::Str(out));
        }
    }

    fn string(&mut self, out: &mut String) -> Result<(), PyLiteralError> {
        let start = self.pos;
        let mut raw = false;
        while let Some(c) = self.peek() {
            match c {
                'r' | 'R' => raw = true,
                'u' | 'U' => {}
                'b' | 'B' => return Err(self.err("bytes literals are not supported")),
                'f' | 'F' => return Err(self.err("f-strings are not literals")),
                '\'' | '"' => break,
                _ => return Err(self.err(format!("invalid string prefix {c:?}"))),
            }
            self.pos += 1;
        }
        let quote = self
            .bump()
            .ok_or_else(|| self.err("unexpected end of input"))?;
        let triple = if self.rest().starts_with(quote) && self.rest()[1..].starts_with(quote) {
            self.pos += 2;
            true
        } else {
            false
        };
        loop {
            let c = self.bump().ok_or_else(|| PyLiteralError {
                pos: start,
                msg: "unterminated string".into(),
            })?;
            if c == quote {
                if !triple {
                    return Ok(());
                }
                let q2: String = [quote, quote].iter().collect();
                if self.rest().starts_with(&q2) {
                    self.pos += 2;
                    return Ok(());
                }
                out.push(c);
                continue;
            }
            if (c == '\n' || c == '\r') && !triple {
                return Err(PyLiteralError {
                    pos: start,
                    msg: "unterminated string (newline)".into(),
                });
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let esc_pos = self.pos - 1;
            let e = self.bump().ok_or_else(|| PyLiteralError {
                pos: start,
                msg: "unterminated string".into(),
            })?;
            if raw {
                // In raw strings a backslash only protects the next char.
                if e != '\n' || triple {
                    out.push('\\');
                }
                out.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\r' => {
                    self.eat('\n');
                }
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\u{b}'),
                '0'..='7' => {
                    let mut v = e.to_digit(8).expect("octal digit");
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(v).expect("octal escape < 0x200"));
                }
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex = self
                        .rest()
                        .get(..n)
                        .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
                    let hex = hex.ok_or_else(|| PyLiteralError {
                        pos: esc_pos,
                        msg: format!("truncated \\{e} escape"),
                    })?;
                    let v = u32::from_str_radix(hex, 16).expect("hex digits");
                    self.pos += n;
                    let ch = char::from_u32(v).ok_or_else(|| PyLiteralError {
                        pos: esc_pos,
                        msg: format!("invalid code point \\{e}{hex}"),
                    })?;
                    out.push(ch);
                }
                'N' => {
                    return Err(PyLiteralError {
                        pos: esc_pos,
                        msg: "\\N{...} escapes are not supported".into(),
                    })
                }
                other => {
                    // Unknown escapes are kept verbatim (with a warning in Python).
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }
}

fn signed_int(magnitude: i128, neg: bool, pos: usize) -> Result<PyValue, PyLiteralError> {
    let v = if neg { -magnitude } else { magnitude };
    i64::try_from(v)
        .map(PyValue::Int)
        .map_err(|_| PyLiteralError {
            pos,
            msg: format!("integer out of range: {v}"),
        })
}

/// Remove underscores that sit between digits; `None` when misplaced.
fn clean_underscores(s: &str) -> Option<String> {
    if !s.contains('_') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let before = i > 0 && b[i - 1].is_ascii_alphanumeric();
            let after = i + 1 < b.len() && b[i + 1].is_ascii_alphanumeric();
            if !(before && after) {
                return None;
            }
        }
    }
    Some(s.replace('_', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> PyValue {
        PyValue::Str(x.into())
    }

    #[test]
    fn scalars() {
        assert_eq!(parse("None").unwrap(), PyValue::None);
        assert_eq!(parse(" True ").unwrap(), PyValue::Bool(true));
        assert_eq!(parse("False").unwrap(), PyValue::Bool(false));
        assert_eq!(parse("42").unwrap(), PyValue::Int(42));
        assert_eq!(parse("-42").unwrap(), PyValue::Int(-42));
        assert_eq!(parse("+7").unwrap(), PyValue::Int(7));
        assert_eq!(parse("- 7").unwrap(), PyValue::Int(-7));
        assert_eq!(parse("0").unwrap(), PyValue::Int(0));
        assert_eq!(parse("000").unwrap(), PyValue::Int(0));
        assert_eq!(parse("1_000").unwrap(), PyValue::Int(1000));
        assert_eq!(parse("0x1F").unwrap(), PyValue::Int(31));
        assert_eq!(parse("0o17").unwrap(), PyValue::Int(15));
        assert_eq!(parse("0b101").unwrap(), PyValue::Int(5));
        assert_eq!(
            parse("-9223372036854775808").unwrap(),
            PyValue::Int(i64::MIN)
        );
        assert_eq!(parse("1.5").unwrap(), PyValue::Float(1.5));
        assert_eq!(parse(".5").unwrap(), PyValue::Float(0.5));
        assert_eq!(parse("5.").unwrap(), PyValue::Float(5.0));
        assert_eq!(parse("1e-05").unwrap(), PyValue::Float(1e-5));
        assert_eq!(parse("1E+16").unwrap(), PyValue::Float(1e16));
        assert_eq!(parse("-2.5e3").unwrap(), PyValue::Float(-2500.0));
        assert_eq!(parse("1e5").unwrap(), PyValue::Float(100000.0));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "nan",
            "inf",
            "1 2",
            "[1, 2",
            "{'a' 1}",
            "{1, 2}",
            "b'x'",
            "'abc",
            "007",
            "1j",
            "--1",
            "9223372036854775808",
            "(",
            "[,]",
            "f'x'",
            "'\\N{DASH}'",
            "'\\x4'",
            "a",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(parse("'abc'").unwrap(), s("abc"));
        assert_eq!(parse("\"abc\"").unwrap(), s("abc"));
        assert_eq!(
            parse(r#"'a\nb\tc\\d\'e\"f\rg'"#).unwrap(),
            s("a\nb\tc\\d'e\"f\rg")
        );
        assert_eq!(parse(r"'\x41\u00e9\U0001F600'").unwrap(), s("Aé😀"));
        assert_eq!(parse(r"'\101\0'").unwrap(), s("A\0"));
        assert_eq!(parse(r"'\d'").unwrap(), s("\\d"));
        assert_eq!(parse(r"r'\n'").unwrap(), s("\\n"));
        assert_eq!(parse(r"u'x'").unwrap(), s("x"));
        assert_eq!(parse("'a' \"b\"").unwrap(), s("ab"));
        assert_eq!(parse("'''a'b\nc'''").unwrap(), s("a'b\nc"));
        assert_eq!(parse("'café'").unwrap(), s("café"));
    }

    #[test]
    fn containers() {
        assert_eq!(parse("[]").unwrap(), PyValue::List(vec![]));
        assert_eq!(parse("()").unwrap(), PyValue::Tuple(vec![]));
        assert_eq!(parse("{}").unwrap(), PyValue::Dict(vec![]));
        assert_eq!(parse("(1)").unwrap(), PyValue::Int(1));
        assert_eq!(
            parse("(1,)").unwrap(),
            PyValue::Tuple(vec![PyValue::Int(1)])
        );
        assert_eq!(
            parse("[1, 2,]").unwrap(),
            PyValue::List(vec![PyValue::Int(1), PyValue::Int(2)])
        );
        assert_eq!(
            parse("1, 'a'").unwrap(),
            PyValue::Tuple(vec![PyValue::Int(1), s("a")])
        );
        assert_eq!(
            parse("{ 'a' : [ (1 , ) ] ,\n 'b': {'c': None}, }").unwrap(),
            PyValue::Dict(vec![
                (
                    s("a"),
                    PyValue::List(vec![PyValue::Tuple(vec![PyValue::Int(1)])])
                ),
                (s("b"), PyValue::Dict(vec![(s("c"), PyValue::None)])),
            ])
        );
        // Repeated keys: first position, last value.
        assert_eq!(
            parse("{'a': 1, 'b': 2, 'a': 3}").unwrap(),
            PyValue::Dict(vec![(s("a"), PyValue::Int(3)), (s("b"), PyValue::Int(2))])
        );
    }

    #[test]
    #[allow(clippy::excessive_precision)]
    fn float_repr_matches_python() {
        // Expected strings from CPython 3.11 `repr(float)`.
        let cases: &[(f64, &str)] = &[
            (0.09798, "0.09798"),
            (3.942645, "3.942645"),
            (1.0, "1.0"),
            (1e-05, "1e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (1234567890123456.0, "1234567890123456.0"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (1.5e300, "1.5e+300"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (2.5e-7, "2.5e-07"),
            (123.456, "123.456"),
            (1e22, "1e+22"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (100.0, "100.0"),
            (0.001, "0.001"),
            (-12.5, "-12.5"),
            (f64::INFINITY, "inf"),
            // Two shortest candidates (…418.2 and …418.3): Python picks the nearest.
            (-564342411880418.25, "-564342411880418.2"),
            (7.500000000000001e-05, "7.500000000000001e-05"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(*f), *want, "repr({f:e})");
            if f.is_finite() {
                assert_eq!(parse(want).unwrap(), PyValue::Float(*f));
            }
        }
    }

    #[test]
    fn str_repr_matches_python() {
        // Expected strings from CPython 3.11 `repr(str)`.
        let cases: &[(&str, &str)] = &[
            ("it's", r#""it's""#),
            ("say \"hi\"", r#"'say "hi"'"#),
            ("both ' and \"", r#"'both \' and "'"#),
            ("tab\tnl\nbs\\cr\r", r"'tab\tnl\nbs\\cr\r'"),
            ("\x00\x01\x1f\x7f", r"'\x00\x01\x1f\x7f'"),
            (
                "caf\u{e9} \u{a0} \u{ad} \u{85} \u{2028} \u{200b} \u{1F600} \u{e000} \u{feff} \u{3000}",
                "'café \\xa0 \\xad \\x85 \\u2028 \\u200b 😀 \\ue000 \\ufeff \\u3000'",
            ),
            ("", "''"),
        ];
        for (text, want) in cases {
            assert_eq!(str_repr(text), *want);
            assert_eq!(parse(want).unwrap(), s(text), "round trip of {want}");
        }
    }

    #[test]
    fn json_text_matches_python() {
        // Expected strings from CPython 3.11 `json.dumps`.
        assert_eq!(s("say \"hi\"").to_json_text(), r#""say \"hi\"""#);
        assert_eq!(
            s("\x00\x01\x1f\x7f").to_json_text(),
            r#""\u0000\u0001\u001f\u007f""#
        );
        assert_eq!(
            s("caf\u{e9} \u{a0} \u{1F600}").to_json_text(),
            r#""caf\u00e9 \u00a0 \ud83d\ude00""#
        );
        assert_eq!(PyValue::Float(1e-5).to_json_text(), "1e-05");
        assert_eq!(PyValue::Float(1e16).to_json_text(), "1e+16");
        let d = PyValue::Dict(vec![
            (PyValue::Int(1), s("z")),
            (PyValue::Float(1.5), s("y")),
            (PyValue::None, s("n")),
            (s("k"), PyValue::Float(f64::INFINITY)),
            (s("j"), PyValue::Float(f64::NAN)),
            (
                s("t"),
                PyValue::Tuple(vec![PyValue::Int(1), PyValue::Bool(true)]),
            ),
        ]);
        assert_eq!(
            d.to_json_text(),
            r#"{"1": "z", "1.5": "y", "null": "n", "k": Infinity, "j": NaN, "t": [1, true]}"#
        );
    }

    #[test]
    fn container_repr_matches_python() {
        let text = "{'a': (1,), 'b': [1, 2], 'c': None, 'd': True, 'e': (), 'f': {}}";
        let v = parse(text).unwrap();
        assert_eq!(v.to_python(), text);
    }

    #[test]
    fn reference_examples_round_trip() {
        let label = r"'START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\nCHECKPOINT LOCATION: 0/4000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-24 20:16:25 UTC\nLABEL: Barman backup cloud 20261124T201625\nSTART TIMELINE: 1\n'";
        let v = parse(label).unwrap();
        let text = v.as_str().unwrap();
        assert!(text.starts_with("START WAL LOCATION: 0/4000028 (file "));
        assert!(text.ends_with("START TIMELINE: 1\n"));
        assert_eq!(text.lines().count(), 7);
        assert_eq!(v.to_python(), label);

        let stats = "{'total_time': 3.942645, 'number_of_workers': 2, 'analysis_time': 0, 'analysis_time_per_item': {'16391': 0, 'data': 0}, 'copy_time_per_item': {'16391': 0.074192, 'data': 0.017411}, 'serialized_copy_time_per_item': {'16391': 0.067793, 'data': 0.011504}, 'copy_time': 0.09798, 'serialized_copy_time': 0.079297}";
        let v = parse(stats).unwrap();
        assert_eq!(v.get("number_of_workers"), Some(&PyValue::Int(2)));
        assert_eq!(v.get("copy_time").and_then(PyValue::as_f64), Some(0.09798));
        assert_eq!(v.to_python(), stats);
        assert_eq!(
            v.to_json_text(),
            r#"{"total_time": 3.942645, "number_of_workers": 2, "analysis_time": 0, "analysis_time_per_item": {"16391": 0, "data": 0}, "copy_time_per_item": {"16391": 0.074192, "data": 0.017411}, "serialized_copy_time_per_item": {"16391": 0.067793, "data": 0.011504}, "copy_time": 0.09798, "serialized_copy_time": 0.079297}"#
        );
        assert_eq!(v.to_json()["analysis_time_per_item"]["16391"], 0);
        assert_eq!(v.to_json()["copy_time"], 0.09798);

        let ts = "[('ts1', 16391, '/var/lib/postgresql/tablespaces/ts1/data')]";
        let v = parse(ts).unwrap();
        assert_eq!(
            v,
            PyValue::List(vec![PyValue::Tuple(vec![
                s("ts1"),
                PyValue::Int(16391),
                s("/var/lib/postgresql/tablespaces/ts1/data"),
            ])])
        );
        assert_eq!(v.to_python(), ts);
        assert_eq!(
            v.to_json(),
            serde_json::json!([["ts1", 16391, "/var/lib/postgresql/tablespaces/ts1/data"]])
        );
    }

    #[test]
    fn truthiness() {
        assert!(!PyValue::None.is_truthy());
        assert!(!s("").is_truthy());
        assert!(!PyValue::Dict(vec![]).is_truthy());
        assert!(!PyValue::Float(0.0).is_truthy());
        assert!(PyValue::Int(-1).is_truthy());
        assert!(PyValue::Tuple(vec![PyValue::None]).is_truthy());
    }
}
