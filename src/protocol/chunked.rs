//! The chunked transfer coding (RFC 9112, section 7.1), decoded
//! incrementally: bytes go in as they arrive, data comes out, and the
//! decoder keeps only a few counters between calls.
//!
//! Strict on purpose: every line ends with CRLF, a chunk size is
//! hexadecimal without sign or spaces, and chunk extensions and trailer
//! fields are skipped but bounded, so a body cannot be read two ways.

/// Longest chunk extension or trailer section the decoder skips.
pub const MAX_SKIPPED: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// Not the chunked coding: a bad size, a missing CRLF.
    Malformed,
    /// A chunk size that does not fit in 64 bits.
    SizeOverflow,
    /// Chunk extensions or trailers over [`MAX_SKIPPED`].
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` seen so far.
    Size {
        size: u64,
        digits: u32,
    },
    /// Skipping a chunk extension up to its CR.
    Extension {
        size: u64,
    },
    /// Expecting the LF that ends a chunk-size line.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLineLf,
    EndLf,
    Done,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of extension or trailer skipped so far.
    skipped: usize,
    /// Body bytes delivered so far.
    decoded: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            skipped: 0,
            decoded: 0,
        }
    }

    /// True once the last chunk and the trailer section are complete; bytes
    /// after that belong to the next request.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// The most body bytes that can follow right now without more framing
    /// (the rest of the current chunk).
    pub fn data_left(&self) -> u64 {
        match self.state {
            State::Data { left } => left,
            _ => 0,
        }
    }

    /// Decodes from `input`, handing each run of body data to `data`.
    /// Returns how many input bytes were used: all of them, or fewer when
    /// the body ended (the rest is the next request).
    pub fn decode(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            self.state = match self.state {
                State::Done => return Ok(i),
                State::Data { left } => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(&input[i..i + n]);
                    self.decoded += n as u64;
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    // `i` has already moved past the data.
                    continue;
                }
                State::Size { size, digits } => match hex_value(byte) {
                    Some(value) => {
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(value)))
                            .ok_or(ChunkedError::SizeOverflow)?;
                        State::Size {
                            size,
                            digits: digits + 1,
                        }
                    }
                    None if digits == 0 => return Err(ChunkedError::Malformed),
                    None if byte == b';' => State::Extension { size },
                    None if byte == b'\r' => State::SizeLf { size },
                    None => return Err(ChunkedError::Malformed),
                },
                State::Extension { size } => {
                    self.skip()?;
                    match byte {
                        b'\r' => State::SizeLf { size },
                        b'\n' => return Err(ChunkedError::Malformed),
                        _ => State::Extension { size },
                    }
                }
                State::SizeLf { size } => match (byte, size) {
                    (b'\n', 0) => {
                        self.skipped = 0;
                        State::TrailerStart
                    }
                    (b'\n', left) => State::Data { left },
                    _ => return Err(ChunkedError::Malformed),
                },
                State::DataCr if byte == b'\r' => State::DataLf,
                State::DataLf if byte == b'\n' => State::Size { size: 0, digits: 0 },
                State::DataCr | State::DataLf => return Err(ChunkedError::Malformed),
                State::TrailerStart => match byte {
                    b'\r' => State::EndLf,
                    b'\n' => return Err(ChunkedError::Malformed),
                    _ => {
                        self.skip()?;
                        State::TrailerLine
                    }
                },
                State::TrailerLine => {
                    self.skip()?;
                    match byte {
                        b'\r' => State::TrailerLineLf,
                        b'\n' => return Err(ChunkedError::Malformed),
                        _ => State::TrailerLine,
                    }
                }
                State::TrailerLineLf if byte == b'\n' => State::TrailerStart,
                State::EndLf if byte == b'\n' => State::Done,
                State::TrailerLineLf | State::EndLf => return Err(ChunkedError::Malformed),
            };
            i += 1;
        }
        Ok(i)
    }

    fn skip(&mut self) -> Result<(), ChunkedError> {
        self.skipped += 1;
        if self.skipped > MAX_SKIPPED {
            return Err(ChunkedError::TooLong);
        }
        Ok(())
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes.
    fn decode_in_steps(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = decoder.decode(piece, |data| body.extend_from_slice(data))?;
            used += n;
            if decoder.is_done() {
                break;
            }
        }
        assert!(decoder.is_done(), "not done after {input:?}");
        assert_eq!(decoder.decoded(), body.len() as u64);
        Ok((body, used))
    }

    #[test]
    fn decodes_split_anywhere() {
        let input = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET /";
        for step in 1..input.len() {
            let (body, used) = decode_in_steps(input, step).unwrap();
            assert_eq!(body, b"hello 0123456789", "step {step}");
            assert_eq!(used, input.len() - 5, "step {step}");
        }
    }

    #[test]
    fn empty_body() {
        assert_eq!(decode_in_steps(b"0\r\n\r\n", 3).unwrap(), (Vec::new(), 5));
        assert_eq!(decode_in_steps(b"000\r\n\r\n", 1).unwrap().1, 7);
    }

    #[test]
    fn strict_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b" 5\r\n",
            b"-5\r\n",
            b"0\r\n\n",
            b"0\r\nX\n",
        ] {
            let mut decoder = ChunkedDecoder::new();
            assert_eq!(
                decoder.decode(bad, |_| {}),
                Err(ChunkedError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(
            decoder.decode(b"1ffffffffffffffff\r\n", |_| {}),
            Err(ChunkedError::SizeOverflow)
        );
        let mut decoder = ChunkedDecoder::new();
        let long_ext = format!("1;{}\r\n", "e".repeat(MAX_SKIPPED + 1));
        assert_eq!(
            decoder.decode(long_ext.as_bytes(), |_| {}),
            Err(ChunkedError::TooLong)
        );
    }
}
