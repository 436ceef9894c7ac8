//! Stop strings in streamed text: text is released only when it can no longer turn out to be
//! the start of a stop string, and generation ends at the first complete stop string.

pub struct StopScanner {
    stops: Vec<String>,
    /// Text produced but not yet released to the caller.
    held: String,
}

pub enum Scan {
    /// Text safe to emit now (possibly empty).
    Emit(String),
    /// A stop string completed: emit this final text (before the stop string) and end.
    Stopped(String),
}

impl StopScanner {
    pub fn new(stops: &[String]) -> Self {
        StopScanner { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    pub fn push(&mut self, text: &str) -> Scan {
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            return Scan::Stopped(out);
        }
        // Keep back the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if i > keep && self.held.ends_with(&s[..i]) {
                    keep = i;
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        Scan::Emit(out)
    }

    /// What is still held when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut s = StopScanner::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut out = String::new();
        for p in pieces {
            match s.push(p) {
                Scan::Emit(t) => out.push_str(&t),
                Scan::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&s.finish());
        (out, false)
    }

    #[test]
    fn stop_split_across_pieces() {
        assert_eq!(run(&["\nUser:"], &["Hello", " there\nUs", "er: more"]), ("Hello there".into(), true));
    }

    #[test]
    fn partial_prefix_released_when_it_diverges() {
        assert_eq!(run(&["STOP"], &["ST", "OX", "!"]), ("STOX!".into(), false));
    }

    #[test]
    fn no_stops_passes_through() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn earliest_stop_wins() {
        assert_eq!(run(&["cd", "b"], &["abcd"]), ("a".into(), true));
    }
}
