//! One-line errors that name the input and the position inside it.

use std::fmt;

/// Where inside an input a problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// No finer position than the input itself.
    Whole,
    /// A 1-based line of a file.
    Line(usize),
    /// A 1-based line and 1-based column of a file.
    LineColumn(usize, usize),
    /// A 1-based column of a command-line value or expression.
    Column(usize),
}

/// A bad input: a flag value, a file line, a filter expression or a packet.
///
/// Displays as one line, for example `allow.txt:3: bad CIDR "1.2.3/33": prefix longer than 32`
/// or `--target-ports: column 5: bad port "70000"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// The input's name: a flag such as `--target-ports`, or a file path.
    pub input: String,
    /// Where in that input.
    pub position: Position,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl InputError {
    /// An error about a whole input.
    pub fn new(input: impl Into<String>, message: impl Into<String>) -> Self {
        Self { input: input.into(), position: Position::Whole, message: message.into() }
    }

    /// An error at a 1-based column of a value.
    pub fn at_column(input: impl Into<String>, column: usize, message: impl Into<String>) -> Self {
        Self { input: input.into(), position: Position::Column(column), message: message.into() }
    }

    /// An error at a 1-based line of a file.
    pub fn at_line(input: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        Self { input: input.into(), position: Position::Line(line), message: message.into() }
    }

    /// Returns the same error re-attributed to a file line (for values read from config files).
    pub fn in_line(mut self, input: impl Into<String>, line: usize) -> Self {
        self.position = match self.position {
            Position::Column(c) => Position::LineColumn(line, c),
            _ => Position::Line(line),
        };
        self.input = input.into();
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages never contain newlines: keep the error on one line whatever the input.
        let msg = self.message.replace(['\n', '\r'], " ");
        match self.position {
            Position::Whole => write!(f, "{}: {}", self.input, msg),
            Position::Line(l) => write!(f, "{}:{}: {}", self.input, l, msg),
            Position::LineColumn(l, c) => write!(f, "{}:{}:{}: {}", self.input, l, c, msg),
            Position::Column(c) => write!(f, "{}: column {}: {}", self.input, c, msg),
        }
    }
}

impl std::error::Error for InputError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_on_one_line_with_position() {
        let e = InputError::at_line("allow.txt", 3, "bad CIDR \"1.2.3.0/33\"");
        assert_eq!(e.to_string(), "allow.txt:3: bad CIDR \"1.2.3.0/33\"");
        let e = InputError::at_column("--target-ports", 5, "bad port\nx");
        assert_eq!(e.to_string(), "--target-ports: column 5: bad port x");
        let e = e.in_line("rzmap.conf", 7);
        assert_eq!(e.to_string(), "rzmap.conf:7:5: bad port x");
    }
}
