//! Server-sent events read as the WHATWG HTML standard's "event stream interpretation" reads
//! them, fed chunk by chunk, and written out again in one canonical form.
//!
//! The client must see exactly the events the filter judged. A reader that splits events
//! differently from the client (only on `\n\n`, say, while the client also ends lines at a lone
//! CR) lets an event through unjudged. So every event is parsed here as the standard says, and
//! what goes on is not the server's bytes but the parsed event written again with `\n` line
//! ends: whatever the server's framing, the client reads back the same fields.

/// An event larger than this (its data, type and current line together) is discarded whole.
pub const DEFAULT_MAX_EVENT: usize = 8 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The most bytes [`SseFilter::wait`] lets the proxy hold back. The proxy buffers them, so
/// this stays well under its buffer limit (Envoy's default is 1 MiB a connection); beyond it a
/// line is copied as it comes in.
pub const MAX_WAITING: usize = 256 * 1024;

/// The most reads [`SseFilter::wait`] holds back in a row. The proxy hands over all it holds
/// with each read, so each is copied into the VM whole: this bounds what a server sending one
/// byte at a time makes the filter copy to a few times what it holds back.
pub const MAX_WAITING_READS: u32 = 8;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event` field; empty when the client will call it `message`.
    pub event_type: String,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The `id` field, when this event's lines set one (empty resets the client's last id).
    pub id: Option<String>,
    /// The `retry` field, when this event's lines set one (ASCII digits only, as the client
    /// accepts it).
    pub retry: Option<String>,
}

impl Event {
    /// The type the client dispatches the event as.
    pub fn kind(&self) -> &str {
        if self.event_type.is_empty() {
            "message"
        } else {
            &self.event_type
        }
    }
}

/// What becomes of a dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Pass,
    /// Sent with this data instead (type, id and retry kept).
    Replace(String),
    /// Not dispatched to the client. Its `id` and `retry` still go on (in a block without
    /// data, which the client applies without dispatching), so the client resumes where the
    /// server expects it to.
    Drop,
}

/// Parses one event stream incrementally and writes back the events as each is complete.
#[derive(Debug)]
pub struct SseFilter {
    /// The line being read, up to (not including) its end.
    line: Vec<u8>,
    /// The previous byte was a CR: a LF right after it ends no other line.
    after_cr: bool,
    /// The stream's first line, whose leading BOM is skipped, has not ended yet.
    first_line: bool,
    /// The event being read is too large and is being discarded up to its blank line.
    discarding: bool,
    /// The line being discarded has content (so its end is not a blank line).
    discarded_line_content: bool,
    event_type: String,
    /// Each data line's value followed by `\n`, as the standard keeps it.
    data: String,
    id: Option<String>,
    retry: Option<String>,
    max_event: usize,
    ended: bool,
    oversized: u64,
    /// Bytes the proxy holds back for the filter, not pushed yet ([`SseFilter::wait`]).
    waiting: Option<Waiting>,
}

/// What the bytes held back in the proxy have done to the lines so far: only enough to tell
/// whether the next bytes end a line that writes something.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    len: usize,
    reads: u32,
    after_cr: bool,
    first_line: bool,
    line: LineStart,
}

/// The current line, as far as its first byte tells what reading it will write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineStart {
    /// Nothing yet: ending now, it is a blank line (the event is dispatched).
    Empty,
    /// A field line: read when it ends, but written only with its event.
    Field,
    /// A comment (written as soon as it ends), or a first line that may begin with a BOM.
    Written,
}

impl LineStart {
    fn of(first: u8, first_line: bool) -> LineStart {
        if first == b':' || (first_line && BOM.first() == Some(&first)) {
            LineStart::Written
        } else {
            LineStart::Field
        }
    }
}

impl Default for SseFilter {
    fn default() -> Self {
        SseFilter::new(DEFAULT_MAX_EVENT)
    }
}

impl SseFilter {
    pub fn new(max_event: usize) -> SseFilter {
        SseFilter {
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            discarding: false,
            discarded_line_content: false,
            event_type: String::new(),
            data: String::new(),
            id: None,
            retry: None,
            max_event,
            ended: false,
            oversized: 0,
            waiting: None,
        }
    }

    /// Bytes held back in the proxy by [`SseFilter::wait`], not pushed yet.
    pub fn waiting(&self) -> usize {
        self.waiting.map_or(0, |w| w.len)
    }

    /// Whether the proxy may hold back `fresh`, the bytes after those it holds already,
    /// instead of having them pushed now: true only when pushing them would write nothing yet
    /// (they end no blank line and no comment), the stream goes on, and what is held stays
    /// under [`MAX_WAITING`] (in at most [`MAX_WAITING_READS`] reads) and the event limit.
    /// The proxy then buffers them and hands them back with what follows, so a line split
    /// across reads is read once where it lies instead of being copied piece by piece. On
    /// false, every byte held back must be pushed now, followed by `fresh`.
    pub fn wait(&mut self, fresh: &[u8], end_of_stream: bool) -> bool {
        let mut waiting = match self.waiting.take() {
            Some(waiting) => waiting,
            None if self.ended || self.discarding => return false,
            // Nothing held and nothing new: there is nothing to hold back.
            None if fresh.is_empty() => return false,
            None => Waiting {
                len: 0,
                reads: 0,
                after_cr: self.after_cr,
                first_line: self.first_line,
                line: match self.line.first() {
                    Some(&first) => LineStart::of(first, self.first_line),
                    None => LineStart::Empty,
                },
            },
        };
        let len = waiting.len.saturating_add(fresh.len());
        if end_of_stream
            || len > MAX_WAITING
            || waiting.reads >= MAX_WAITING_READS
            || !self.fits(len)
            || !waiting.quiet(fresh)
        {
            return false;
        }
        waiting.len = len;
        waiting.reads += 1;
        self.waiting = Some(waiting);
        true
    }

    /// Events discarded so far for being larger than the limit.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Bytes held for an event that is not complete yet.
    pub fn held(&self) -> usize {
        self.line.len() + self.data.len() + self.event_type.len()
    }

    /// Reads the next bytes of the stream and returns what to send now: the complete events
    /// among them, each as `judge` decides, and comment lines (keep-alives). A partial event
    /// is held until its blank line comes; at the end of the stream it is discarded, as the
    /// standard says (the client would not dispatch it either).
    pub fn push(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        judge: &mut dyn FnMut(&Event) -> Fate,
    ) -> Vec<u8> {
        // Most of what comes in goes out again: room for it up front, not grown by doubling.
        let mut out = Vec::with_capacity(chunk.len());
        self.waiting = None;
        if self.ended {
            return out;
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(tail) = rest.strip_prefix(b"\n") {
                    rest = tail;
                    continue;
                }
            }
            match memchr::memchr2(b'\r', b'\n', rest) {
                Some(at) => {
                    let (head, tail) = rest.split_at(at);
                    self.after_cr = tail.first() == Some(&b'\r');
                    rest = tail.get(1..).unwrap_or_default();
                    if self.line.is_empty() && !self.discarding && self.fits(head.len()) {
                        // A whole line in this chunk: read where it lies, not copied first.
                        self.line_read(head, &mut out, judge);
                    } else {
                        self.take(head);
                        self.end_line(&mut out, judge);
                    }
                }
                None => {
                    self.take(rest);
                    rest = &[];
                }
            }
        }
        if end_of_stream {
            self.ended = true;
            self.line.clear();
            self.reset_event();
        }
        out
    }

    /// Adds bytes to the current line, or starts discarding the event when it grows too large.
    fn take(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.discarding {
            self.discarded_line_content = true;
            return;
        }
        if !self.fits(bytes.len()) {
            self.oversized += 1;
            self.discarding = true;
            self.discarded_line_content = true;
            self.line.clear();
            self.reset_event();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// Whether `more` bytes can be added to the event held without passing the limit.
    fn fits(&self, more: usize) -> bool {
        self.held().saturating_add(more) <= self.max_event
    }

    /// The line held is complete: read it, keeping its buffer for the next.
    fn end_line(&mut self, out: &mut Vec<u8>, judge: &mut dyn FnMut(&Event) -> Fate) {
        let mut line = std::mem::take(&mut self.line);
        self.line_read(&line, out, judge);
        line.clear();
        self.line = line;
    }

    /// Reads one complete line (without its line end).
    fn line_read(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        judge: &mut dyn FnMut(&Event) -> Fate,
    ) {
        if self.discarding {
            if !std::mem::take(&mut self.discarded_line_content) {
                // The blank line that ends the discarded event.
                self.discarding = false;
            }
            self.first_line = false;
            return;
        }
        let bytes = match std::mem::take(&mut self.first_line) {
            true => bytes.strip_prefix(BOM).unwrap_or(bytes),
            false => bytes,
        };
        // The standard decodes the stream as UTF-8 with replacement; line ends are ASCII, so
        // decoding line by line reads the same text.
        let line = match std::str::from_utf8(bytes) {
            Ok(line) => std::borrow::Cow::Borrowed(line),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        if line.is_empty() {
            self.dispatch(out, judge);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(b':');
            out.extend_from_slice(comment.as_bytes());
            out.push(b'\n');
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event_type = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = Some(value.to_string());
            }
            _ => {}
        }
    }

    /// The blank line: the event so far is dispatched (when it has data) and written out.
    fn dispatch(&mut self, out: &mut Vec<u8>, judge: &mut dyn FnMut(&Event) -> Fate) {
        let mut data = std::mem::take(&mut self.data);
        // Without a data line the client dispatches nothing, but it still applies `id` and
        // `retry`; the check is on the buffer before its last `\n` goes.
        let dispatched = !data.is_empty();
        data.pop();
        let event = Event {
            event_type: std::mem::take(&mut self.event_type),
            data,
            id: self.id.take(),
            retry: self.retry.take(),
        };
        let fate = if dispatched {
            judge(&event)
        } else {
            Fate::Drop
        };
        let data = match &fate {
            Fate::Pass => Some(event.data.as_str()),
            Fate::Replace(data) => Some(data.as_str()),
            Fate::Drop => None,
        };
        write_event(out, &event, data);
    }

    fn reset_event(&mut self) {
        self.event_type.clear();
        self.data.clear();
        self.id = None;
        self.retry = None;
    }
}

impl Waiting {
    /// Follows `bytes` through the line ends; false at the end of a line that writes.
    fn quiet(&mut self, bytes: &[u8]) -> bool {
        let mut rest = bytes;
        loop {
            if std::mem::take(&mut self.after_cr)
                && let Some(tail) = rest.strip_prefix(b"\n")
            {
                rest = tail;
                continue;
            }
            let Some(&first) = rest.first() else {
                return true;
            };
            if self.line == LineStart::Empty && first != b'\r' && first != b'\n' {
                self.line = LineStart::of(first, self.first_line);
            }
            let Some(at) = memchr::memchr2(b'\r', b'\n', rest) else {
                return true;
            };
            if self.line != LineStart::Field {
                return false;
            }
            self.after_cr = rest.get(at) == Some(&b'\r');
            self.line = LineStart::Empty;
            self.first_line = false;
            rest = rest.get(at + 1..).unwrap_or_default();
        }
    }
}

/// Writes an event in canonical form: `event`, each `data` line, `id`, `retry`, a blank line.
/// Without data it is a block the client applies without dispatching (or nothing at all).
fn write_event(out: &mut Vec<u8>, event: &Event, data: Option<&str>) {
    let start = out.len();
    if let Some(data) = data {
        if !event.event_type.is_empty() {
            field(out, "event", &event.event_type);
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data.as_bytes()).chain([data.len()]) {
            field(out, "data", data.get(start..end).unwrap_or_default());
            start = end + 1;
        }
    }
    if let Some(id) = &event.id {
        field(out, "id", id);
    }
    if let Some(retry) = &event.retry {
        field(out, "retry", retry);
    }
    if out.len() > start {
        out.push(b'\n');
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    // Values come from parsed lines and hold no line end; replacement data may, so any CR
    // left in a line is dropped rather than let it end the line early.
    let value = value.as_bytes();
    match memchr::memchr(b'\r', value) {
        None => out.extend_from_slice(value),
        Some(_) => out.extend(value.iter().filter(|b| **b != b'\r')),
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(filter: &mut SseFilter, chunks: &[&[u8]], seen: &mut Vec<Event>) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            out.extend(filter.push(chunk, i + 1 == chunks.len(), &mut |e| {
                seen.push(e.clone());
                Fate::Pass
            }));
        }
        out
    }

    /// The events of a stream fed in these chunks, checked to be the same fed whole and one
    /// byte at a time, and to read back the same from the filter's own output.
    fn chunked(chunks: &[&[u8]]) -> (Vec<Event>, String) {
        let mut seen = Vec::new();
        let out = feed(&mut SseFilter::default(), chunks, &mut seen);
        let whole = chunks.concat();
        let mut seen_whole = Vec::new();
        let out_whole = feed(&mut SseFilter::default(), &[&whole], &mut seen_whole);
        assert_eq!(seen, seen_whole, "chunked and whole differ");
        assert_eq!(out, out_whole, "chunked and whole differ");
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        let mut seen_bytes = Vec::new();
        let out_bytes = feed(&mut SseFilter::default(), &bytes, &mut seen_bytes);
        assert_eq!(seen, seen_bytes, "byte by byte differs");
        assert_eq!(out, out_bytes, "byte by byte differs");
        let mut again = Vec::new();
        let out_again = feed(&mut SseFilter::default(), &[&out], &mut again);
        assert_eq!(seen, again, "the output does not read back the same");
        assert_eq!(out, out_again, "the output is not canonical");
        (seen, String::from_utf8(out).unwrap())
    }

    fn events(stream: &str) -> Vec<Event> {
        chunked(&[stream.as_bytes()]).0
    }

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn streams_read_as_the_data_of_their_events() {
        let cases: &[(&str, &[&str])] = &[
            // LF, CRLF and a lone CR each end lines.
            ("data: a\n\ndata: b\n\n", &["a", "b"]),
            ("data: a\r\n\r\ndata: b\r\n\r\n", &["a", "b"]),
            ("data: a\r\rdata: b\r\r", &["a", "b"]),
            // An event ending CRLF then LF, or LF then CRLF, is complete.
            ("data: a\r\n\n", &["a"]),
            ("data: a\n\r\n", &["a"]),
            ("data: a\r\n\rdata: b\n\r", &["a", "b"]),
            // Data lines are joined with LF.
            ("data: a\ndata: b\ndata: c\n\n", &["a\nb\nc"]),
            // Only one leading space is dropped, and none is needed.
            ("data:  two\n\n", &[" two"]),
            ("data:\tx\n\n", &["\tx"]),
            ("data: x \n\n", &["x "]),
            ("data:x\n\n", &["x"]),
            // An empty data line dispatches an empty event.
            ("data\n\n", &[""]),
            ("data:\n\n", &[""]),
            ("data: \n\n", &[""]),
            // Empty data lines are empty lines of data.
            ("data\ndata\n\n", &["\n"]),
            ("data: a\ndata\n\n", &["a\n"]),
            ("data\ndata: a\n\n", &["\na"]),
            // A comment inside an event does not end it.
            ("data: a\n: c\ndata: b\n\n", &["a\nb"]),
            // A leading BOM is skipped.
            ("\u{FEFF}data: x\n\n", &["x"]),
            ("\u{FEFF}\ndata: x\n\n", &["x"]),
        ];
        for &(stream, want) in cases {
            assert_eq!(data(&events(stream)), want, "{stream:?}");
        }
    }

    #[test]
    fn all_three_endings_mix_in_one_stream() {
        let e = events("event: x\rdata: 1\r\ndata: 2\n\r\ndata: 3\n\n");
        assert_eq!(data(&e), ["1\n2", "3"]);
        assert_eq!(e[0].event_type, "x");
        assert_eq!(e[1].kind(), "message");
    }

    #[test]
    fn streams_in_chunks_read_as_the_data_of_their_events() {
        let cases: &[(&[&[u8]], &[&str])] = &[
            // A CRLF split across chunks is one line end: were the LF read as a second one,
            // "a" and "b" would be two events.
            (&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"], &["a\nb"]),
            // A CR at a chunk's end followed by text ends only its line.
            (&[b"data: a\r", b"data: b\r", b"\r"], &["a\nb"]),
            // A multibyte character split across chunks is read whole.
            (&[b"data: \xC3", b"\xA9\n\n"], &["é"]),
            // Invalid UTF-8 reads as the replacement character.
            (&[b"data: a\xFFb\n\n"], &["a\u{FFFD}b"]),
            // A BOM split across chunks is skipped.
            (&[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"], &["x"]),
            // Comments are not fields, and unknown fields are ignored.
            (&[b": ping\n\n:\n:no space\r\n"], &[]),
            (&[b"foo: bar\ndata: x\nfoo\n\n"], &["x"]),
            // An incomplete event at the end of the stream is discarded.
            (&[b"data: a\n\ndata: b\n"], &["a"]),
            (&[b"data: a\n\ndata: b"], &["a"]),
            (&[b"data: a\r\n\r\ndata: b\r\n"], &["a"]),
            // Blank lines alone dispatch nothing.
            (&[b"\n\n\r\n\r\r\n"], &[]),
        ];
        for &(chunks, want) in cases {
            let (events, _) = chunked(chunks);
            assert_eq!(data(&events), want, "{}", chunks.concat().escape_ascii());
        }
    }

    #[test]
    fn the_output_is_written_in_one_canonical_form() {
        let cases: &[(&[u8], &str)] = &[
            (b"data: a\xFFb\n\n", "data: a\u{FFFD}b\n\n"),
            // Comments go on as keep-alives; unknown fields are not passed on.
            (b": ping\n\n:\n:no space\r\n", ": ping\n:\n:no space\n"),
            (b"foo: bar\ndata: x\nfoo\n\n", "data: x\n\n"),
            // Nor is an incomplete event at the end of the stream, nor blank lines.
            (b"data: a\n\ndata: b\n", "data: a\n\n"),
            (b"\n\n\r\n\r\r\n", ""),
            // The fields in one order, with LF line ends and the BOM dropped.
            (
                b"\xEF\xBB\xBFretry: 10\r\nid: 4\r\nevent: message\r\ndata:a\r\ndata:  b\r\r",
                "event: message\ndata: a\ndata:  b\nid: 4\nretry: 10\n\n",
            ),
        ];
        for &(stream, want) in cases {
            let (_, out) = chunked(&[stream]);
            assert_eq!(out, want, "{}", stream.escape_ascii());
        }
    }

    #[test]
    fn a_block_without_data_dispatches_nothing_and_its_type_is_forgotten() {
        assert!(events("event: x\n\n").is_empty());
        assert!(events("id: 1\n\nretry: 5\n\n").is_empty());
        let e = events("event: x\n\ndata: y\n\n");
        assert_eq!(e[0].kind(), "message");
    }

    #[test]
    fn a_field_without_a_colon_has_an_empty_value() {
        let e = events("event: x\nevent\nid\ndata: y\n\n");
        assert_eq!(e[0].kind(), "message");
        assert_eq!(e[0].id.as_deref(), Some(""));
    }

    #[test]
    fn field_names_are_case_sensitive() {
        assert!(events("Data: x\n\nDATA: y\n\n").is_empty());
    }

    #[test]
    fn a_space_before_the_colon_makes_another_field() {
        assert!(events("data : x\n\n").is_empty());
        assert!(events(" data: x\n\n").is_empty());
    }

    #[test]
    fn a_colon_in_the_value_stays() {
        assert_eq!(data(&events("data: a: b\n\ndata::x\n\n")), ["a: b", ":x"]);
    }

    #[test]
    fn the_event_type_resets_after_each_event_and_the_last_line_wins() {
        let e = events("event: a\nevent: b\ndata: 1\n\ndata: 2\n\n");
        assert_eq!(e[0].event_type, "b");
        assert_eq!(e[1].event_type, "");
    }

    #[test]
    fn an_id_with_nul_is_ignored() {
        assert_eq!(events("id: 7\ndata: x\n\n")[0].id.as_deref(), Some("7"));
        assert_eq!(events("id: a\0b\ndata: x\n\n")[0].id, None);
        assert_eq!(
            events("id: 1\nid: 2\ndata: x\n\n")[0].id.as_deref(),
            Some("2")
        );
    }

    #[test]
    fn retry_takes_ascii_digits_only() {
        assert_eq!(
            events("retry: 1000\ndata: x\n\n")[0].retry.as_deref(),
            Some("1000")
        );
        for bad in ["retry: 1e3", "retry: -1", "retry: ", "retry", "retry: 1 "] {
            assert_eq!(
                events(&format!("{bad}\ndata: x\n\n"))[0].retry,
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn only_the_streams_first_bom_is_skipped() {
        // A second one is part of the field name, which then names no field.
        assert!(events("\u{FEFF}\u{FEFF}data: x\n\n").is_empty());
        assert_eq!(data(&events("data: a\n\n\u{FEFF}data: b\n\n")), ["a"]);
    }

    #[test]
    fn nothing_is_read_after_the_end_of_the_stream() {
        let mut f = SseFilter::default();
        let mut pass = |_: &Event| Fate::Pass;
        assert!(f.push(b"", true, &mut pass).is_empty());
        assert!(f.push(b"data: x\n\n", false, &mut pass).is_empty());
    }

    #[test]
    fn a_partial_event_is_held_until_its_blank_line() {
        let mut f = SseFilter::default();
        let mut pass = |_: &Event| Fate::Pass;
        assert!(
            f.push(b"event: message\ndata: a", false, &mut pass)
                .is_empty()
        );
        assert!(f.held() > 0);
        assert!(f.push(b"\n", false, &mut pass).is_empty());
        assert_eq!(
            f.push(b"\r\n", false, &mut pass),
            b"event: message\ndata: a\n\n"
        );
        assert_eq!(f.held(), 0);
    }

    /// Feeds `chunks` to a filter that waits as a proxy would let it (the bytes held back
    /// come again with the next read) and, in step, to one that reads every chunk at once.
    /// Each read must write the same in both: a wait delays nothing the client would see.
    /// Returns how many reads were held back.
    fn waits_as_it_reads(chunks: &[&[u8]], max_event: usize) -> usize {
        let mut now = SseFilter::new(max_event);
        let mut waits = SseFilter::new(max_event);
        let mut held = Vec::new();
        let mut waited = 0;
        let mut pass = |_: &Event| Fate::Pass;
        for (i, chunk) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len();
            let written = now.push(chunk, end, &mut pass);
            held.extend_from_slice(chunk);
            assert_eq!(waits.waiting() + chunk.len(), held.len());
            if waits.wait(chunk, end) {
                waited += 1;
                assert!(
                    written.is_empty(),
                    "held back {held:?}, which writes {written:?}"
                );
                assert!(held.len() <= MAX_WAITING);
                continue;
            }
            assert_eq!(waits.push(&held, end, &mut pass), written, "after {held:?}");
            assert_eq!(waits.waiting(), 0);
            held.clear();
        }
        waited
    }

    #[test]
    fn a_read_is_held_back_only_while_it_would_write_nothing() {
        use rand::{Rng, SeedableRng};
        let pieces: [&[u8]; 14] = [
            b"data: a",
            b"data:",
            b":c",
            b"event: e",
            b"id: 1",
            b"retry: 5",
            b"\n",
            b"\r",
            b"\r\n",
            b"\n\n",
            b"x",
            BOM,
            b"\xEF",
            b"\xFF",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut waited = 0;
        for _ in 0..4000 {
            let stream: Vec<u8> = (0..rng.gen_range(0..24))
                .flat_map(|_| pieces[rng.gen_range(0..pieces.len())].iter().copied())
                .collect();
            let mut chunks = Vec::new();
            let mut rest = stream.as_slice();
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(rng.gen_range(1..=rest.len().min(9)));
                chunks.push(chunk);
                rest = tail;
            }
            let max_event = if rng.gen_bool(0.2) {
                12
            } else {
                DEFAULT_MAX_EVENT
            };
            waited += waits_as_it_reads(&chunks, max_event);
        }
        assert!(waited > 1000, "only {waited} reads held back");
    }

    #[test]
    fn a_line_split_across_reads_waits_for_its_event_and_a_comment_does_not() {
        let data = "x".repeat(40_000);
        let event = format!("event: message\ndata: {data}\n\n");
        let reads: Vec<&[u8]> = event.as_bytes().chunks(16384).collect();
        assert_eq!(waits_as_it_reads(&reads, DEFAULT_MAX_EVENT), 2);
        let mut f = SseFilter::default();
        assert!(f.wait(b"data: a", false));
        assert!(f.wait(b"\nid: 2\r", false));
        assert!(
            !f.wait(b"\n: keep-alive\n", false),
            "a comment goes on at once"
        );
        let mut f = SseFilter::default();
        assert!(
            !f.wait(b"data: a", true),
            "the end of the stream is read at once"
        );
        // A line longer than the proxy may hold is read as it comes.
        let long = vec![b'x'; MAX_WAITING + 1];
        let mut f = SseFilter::default();
        assert!(f.wait(b"data: ", false));
        assert!(!f.wait(&long, false));
        // Reads come one byte at a time: only so many are held back in a row.
        let mut f = SseFilter::default();
        let held = (0..100).take_while(|_| f.wait(b"x", false)).count();
        assert_eq!(held, MAX_WAITING_READS as usize);
        // An empty read with nothing held holds nothing back.
        assert!(!SseFilter::default().wait(b"", false));
    }

    #[test]
    fn a_replaced_event_keeps_its_type_id_and_retry() {
        let mut f = SseFilter::default();
        let out = f.push(b"event: m\nid: 9\ndata: old\n\n", false, &mut |_| {
            Fate::Replace("new".into())
        });
        assert_eq!(out, b"event: m\ndata: new\nid: 9\n\n");
    }

    #[test]
    fn a_replacement_cannot_add_fields() {
        let mut f = SseFilter::default();
        let out = f.push(b"data: x\n\n", false, &mut |_| {
            Fate::Replace("a\r\nevent: evil\rb".into())
        });
        let mut seen = Vec::new();
        feed(&mut SseFilter::default(), &[&out], &mut seen);
        assert_eq!(data(&seen), ["a\nevent: evilb"]);
        assert_eq!(seen[0].kind(), "message");
    }

    #[test]
    fn a_dropped_event_still_passes_its_id_and_retry() {
        let mut f = SseFilter::default();
        let mut drop = |_: &Event| Fate::Drop;
        assert_eq!(
            f.push(b"id: 3\ndata: x\n\n", false, &mut drop),
            b"id: 3\n\n"
        );
        assert!(
            f.push(b"event: y\ndata: x\n\n", false, &mut drop)
                .is_empty()
        );
    }

    #[test]
    fn an_oversized_event_is_discarded_and_the_next_one_passes() {
        for step in [1, 3, 100] {
            let stream = b"data: 0123456789abcdef\n: c\ndata: more\r\n\r\ndata: ok\n\n";
            let mut f = SseFilter::new(16);
            let mut seen = Vec::new();
            let chunks: Vec<&[u8]> = stream.chunks(step).collect();
            let out = feed(&mut f, &chunks, &mut seen);
            assert_eq!(data(&seen), ["ok"], "step {step}");
            assert_eq!(out, b"data: ok\n\n", "step {step}");
            assert_eq!(f.oversized(), 1);
        }
    }
}
