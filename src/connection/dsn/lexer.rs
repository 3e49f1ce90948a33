//! libpq's `key = value` connection string syntax, as tokens.
//!
//! Splits the text into (key, value) pairs with libpq's quoting and escaping
//! rules; what a key means, and whether it is known at all, is decided by
//! the caller ([`super::ConnParams`]). The URI form is in `uri.rs`.

use super::DsnError;

/// Tokenizer for libpq's `key = value` syntax.
pub(super) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Lexer { text, pos: 0 }
    }

    /// The next `(key, value)` pair, `None` at the end of the text.
    pub(super) fn next_pair(&mut self) -> Result<Option<(String, String)>, DsnError> {
        self.skip_space();
        if self.peek().is_none() {
            return Ok(None);
        }
        let key = self.keyword()?;
        self.skip_space();
        if self.peek() != Some('=') {
            // Only the offset: the "keyword" may be the tail of an unquoted
            // password that contained a space.
            return Err(self.error(self.pos, "expected '=' after a parameter name"));
        }
        self.bump();
        // libpq skips blanks after '=' too, so `host= x` means host=x.
        self.skip_space();
        let value = if self.peek() == Some('\'') {
            self.quoted()?
        } else {
            self.unquoted()
        };
        Ok(Some((key, value)))
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
    }

    fn error(&self, position: usize, reason: &'static str) -> DsnError {
        DsnError::Syntax { position, reason }
    }

    fn keyword(&mut self) -> Result<String, DsnError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c != '=' && !is_space(c)) {
            self.bump();
        }
        if start == self.pos {
            return Err(self.error(start, "expected a parameter name"));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn quoted(&mut self) -> Result<String, DsnError> {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                Some('\'') => return Ok(value),
                Some('\\') => match self.bump() {
                    Some(escaped) => value.push(escaped),
                    None => break,
                },
                Some(c) => value.push(c),
                None => break,
            }
        }
        Err(self.error(start, "unterminated quoted string"))
    }

    fn unquoted(&mut self) -> String {
        let mut value = String::new();
        while let Some(c) = self.peek().filter(|&c| !is_space(c)) {
            self.bump();
            if c != '\\' {
                value.push(c);
            } else if let Some(escaped) = self.bump() {
                value.push(escaped);
            }
        }
        value
    }
}

/// C's `isspace` in the "C" locale, which is what libpq uses.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\x0b'
}
