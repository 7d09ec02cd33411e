//! magic-validate in Rust, without crates: the original proof of concept's validating module
//! (reject a ConfigMap whose data has the key `not-allowed-value`) written the way its modules
//! were, a `cdylib` for wasm32-wasi exporting `validate`, which reads one envelope from stdin and
//! writes one to stdout (docs/module-spec.md). It shows what a module costs when no language runtime
//! runs per call: it walks the request once, looking only at the fields it needs.
//!
//! Build (examples/magic-validate-rust/README.md; `make examples-rust`):
//!
//!     rustc --edition 2021 --crate-type cdylib --target wasm32-wasi -C opt-level=3 \
//!         -C strip=symbols --remap-path-prefix=$PWD=. -o magic-validate-rust.wasm lib.rs

use std::io::{Read, Write};

/// The host's entry point for admission (validating and mutating alike).
#[no_mangle]
pub extern "C" fn validate() {
    let mut input = Vec::new();
    let answer = match std::io::stdin().read_to_end(&mut input) {
        Ok(_) => match decide(&input) {
            Ok(a) => a,
            Err(e) => error_envelope(e),
        },
        Err(_) => error_envelope("read stdin failed"),
    };
    let mut out = std::io::stdout();
    // Nothing to report to if stdout fails: the host then sees no answer and fails the call.
    let _ = out.write_all(&answer);
    let _ = out.flush();
}

const MESSAGE: &str = "value 'not-allowed-value' not allowed in configmap";

/// Reads envelope.request.request.{uid,kind.kind,object.data} and answers.
fn decide(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut p = Parser { s: input, i: 0, depth: 0 };
    let review = p.field_of_object(b"request")?.ok_or("the envelope has no request")?;
    let mut p = Parser { s: input, i: review, depth: 0 };
    let request = p.field_of_object(b"request")?.ok_or("the AdmissionReview has no request")?;

    let mut uid: &[u8] = b"\"\"";
    let mut is_config_map = false;
    let mut has_key = false;
    let mut p = Parser { s: input, i: request, depth: 0 };
    p.object(|p, key| {
        if key_is(key, b"uid") {
            let start = p.i;
            p.string()?;
            uid = &p.s[start..p.i];
        } else if key_is(key, b"kind") {
            p.object(|p, key| {
                if key_is(key, b"kind") {
                    let start = p.i;
                    p.string()?;
                    is_config_map = &p.s[start..p.i] == b"\"ConfigMap\"";
                    Ok(())
                } else {
                    p.skip()
                }
            })?;
        } else if key_is(key, b"object") {
            if p.peek() == Some(b'n') {
                return p.skip(); // null: a DELETE
            }
            p.object(|p, key| {
                if key_is(key, b"data") && p.peek() == Some(b'{') {
                    p.object(|p, key| {
                        has_key |= key_is(key, b"not-allowed-value");
                        p.skip()
                    })
                } else {
                    p.skip()
                }
            })?;
        } else {
            p.skip()?;
        }
        Ok(())
    })?;

    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(
        b"{\"response\":{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":",
    );
    out.extend_from_slice(uid);
    if is_config_map && has_key {
        out.extend_from_slice(b",\"allowed\":false,\"status\":{\"message\":\"");
        out.extend_from_slice(MESSAGE.as_bytes());
        out.extend_from_slice(b"\",\"code\":400}}}}");
    } else {
        out.extend_from_slice(b",\"allowed\":true}}}");
    }
    Ok(out)
}

fn error_envelope(message: &str) -> Vec<u8> {
    // The messages are constants without characters that JSON escapes.
    let mut out = Vec::with_capacity(message.len() + 12);
    out.extend_from_slice(b"{\"error\":\"");
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// key_is compares a raw JSON string token (quotes included, escapes undecoded) with want.
fn key_is(raw: &[u8], want: &[u8]) -> bool {
    let body = &raw[1..raw.len() - 1];
    if !body.contains(&b'\\') {
        return body == want;
    }
    unescape(body).map_or(false, |k| k == want)
}

/// unescape decodes a JSON string body (between the quotes) to UTF-8.
fn unescape(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        let simple = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => 0,
            _ => return None,
        };
        if e != b'u' {
            out.push(simple);
            continue;
        }
        let mut cp = hex4(body.get(i..i + 4)?)?;
        i += 4;
        if (0xD800..0xDC00).contains(&cp) && body.get(i..i + 2) == Some(b"\\u") {
            let low = hex4(body.get(i + 2..i + 6)?)?;
            if (0xDC00..0xE000).contains(&low) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            }
        }
        let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    Some(out)
}

fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0;
    for &c in h {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Parser walks JSON without building values: enough to find fields and to skip the rest.
/// Input that is not JSON ends in an error, never in a panic.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: u32,
}

/// How deep objects and arrays may nest: deeper input is an error rather than a stack overflow.
const MAX_DEPTH: u32 = 1000;

type Result1 = Result<(), &'static str>;

const BAD: &str = "the request is not valid JSON";

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result1 {
        if self.peek() != Some(c) {
            return Err(BAD);
        }
        self.i += 1;
        Ok(())
    }

    /// object calls f with each key (the raw string token), f consuming the value.
    fn object<F>(&mut self, mut f: F) -> Result1
    where
        F: FnMut(&mut Parser<'a>, &'a [u8]) -> Result1,
    {
        self.expect(b'{')?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let start = self.i;
            self.string()?;
            let key = &self.s[start..self.i];
            self.expect(b':')?;
            self.ws();
            f(self, key)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(BAD),
            }
        }
    }

    /// field_of_object returns where the value of key starts in the object at the cursor.
    fn field_of_object(&mut self, want: &[u8]) -> Result<Option<usize>, &'static str> {
        let mut found = None;
        self.object(|p, key| {
            if found.is_none() && key_is(key, want) {
                found = Some(p.i);
            }
            p.skip()
        })?;
        Ok(found)
    }

    fn string(&mut self) -> Result1 {
        self.expect(b'"')?;
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'"' => return Ok(()),
                b'\\' => self.i += 1,
                0..=0x1f => return Err(BAD),
                _ => {}
            }
        }
        Err(BAD)
    }

    /// skip passes over one value of any kind.
    fn skip(&mut self) -> Result1 {
        if self.depth >= MAX_DEPTH {
            return Err("the request nests too deeply");
        }
        self.depth += 1;
        let r = self.skip_value();
        self.depth -= 1;
        r
    }

    fn skip_value(&mut self) -> Result1 {
        match self.peek().ok_or(BAD)? {
            b'"' => self.string(),
            b'{' => self.object(|p, _| p.skip()),
            b'[' => {
                self.i += 1;
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip()?;
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(BAD),
                    }
                }
            }
            _ => {
                // A number, true, false or null.
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(self.s[self.i], b'0'..=b'9' | b'a'..=b'z' | b'-' | b'+' | b'.' | b'E')
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(BAD);
                }
                Ok(())
            }
        }
    }
}
