//! Splitting a script of any length into segments that each fit one generation.
//!
//! Segments end, in order of preference, at speaker turns (`[S1]`, `[S2]`), sentence ends and
//! line breaks; a sentence longer than a segment is cut at a comma (or `;`, `:`), else at a
//! space, each with a warning; only a word longer than the encoder's whole window is cut
//! inside, between characters. A segment that starts inside a turn gets the turn's speaker
//! tag in front, so every segment says who speaks.

use std::ops::Range;

use crate::error::RuntimeError;

/// How large a segment may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLimits {
    /// Most encoder tokens of a segment's text, speaker tag included: the hard limit.
    pub max_tokens: usize,
    /// Most bytes a segment should hold so that its speech fits its frame budget (an
    /// estimate, so a soft limit: a single word longer than this is kept whole).
    pub target_bytes: usize,
}

/// Where a segment ends, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cut {
    /// Inside a word, between two characters: the word is longer than the text window.
    Char,
    /// At a space inside a sentence.
    Word,
    /// After a comma, semicolon or colon.
    Clause,
    /// After a sentence end or at a line break.
    Sentence,
    /// Before a speaker tag.
    Turn,
    /// The end of the script.
    End,
}

/// One piece of the script, generated on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The bytes of the script it holds (no whitespace at either end).
    pub source: Range<usize>,
    /// What it says: the source, after the speaker tag in force when it starts inside a turn.
    pub text: String,
    /// How it ends.
    pub cut: Cut,
}

/// A script split into segments.
#[derive(Clone, Debug, Default)]
pub struct SplitScript {
    pub segments: Vec<Segment>,
    /// Speaker tags at the very end of the script with nothing said after them: not spoken.
    pub dropped: Option<Range<usize>>,
    /// What the user should know: odd tags, sentences cut at a comma or a space, words cut.
    pub warnings: Vec<String>,
}

const TAGS: [&[u8]; 2] = [b"[S1]", b"[S2]"];

fn tag_at(b: &[u8], i: usize) -> Option<&'static str> {
    TAGS.iter()
        .find(|t| b[i..].starts_with(t))
        .map(|t| std::str::from_utf8(t).expect("ASCII"))
}

/// Characters that end a sentence (western ones need a space after them to count).
fn ends_sentence(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}
fn ends_sentence_cjk(c: char) -> bool {
    matches!(c, '。' | '！' | '？')
}
fn ends_clause(c: char) -> bool {
    matches!(c, ',' | ';' | ':' | '—')
}
fn ends_clause_cjk(c: char) -> bool {
    matches!(c, '，' | '、' | '；' | '：')
}
/// Closing quotes and brackets that may follow a sentence's end before the space.
fn closes(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | ')' | ']' | '»' | '」' | '』')
}

/// Per-byte facts of the script, as prefix sums so any range is measured in O(1).
struct Measure {
    /// Encoder tokens before byte i (a speaker tag is one token, at its first byte).
    tokens: Vec<usize>,
    /// Bytes of words (not whitespace, not in a tag) before byte i.
    words: Vec<usize>,
    /// Whether byte i starts a character (and is not inside a speaker tag).
    boundary: Vec<bool>,
    /// Whether byte i is whitespace.
    space: Vec<bool>,
}

impl Measure {
    fn new(s: &str) -> Self {
        let b = s.as_bytes();
        let n = b.len();
        let mut tokens = vec![0; n + 1];
        let mut words = vec![0; n + 1];
        let mut boundary = vec![false; n + 1];
        let mut space = vec![false; n];
        let mut tag_end = 0;
        for (i, c) in s.char_indices() {
            let tag_start = i >= tag_end && tag_at(b, i).is_some();
            if tag_start {
                tag_end = i + 4;
            }
            let in_tag = i < tag_end;
            // Inside a tag is no place to cut: a tag is one token.
            boundary[i] = !in_tag || tag_start;
            let sp = !in_tag && c.is_whitespace();
            for k in i..i + c.len_utf8() {
                space[k] = sp;
                tokens[k + 1] = tokens[k] + usize::from(!in_tag || tag_start);
                words[k + 1] = words[k] + usize::from(!in_tag && !sp);
            }
        }
        boundary[n] = true;
        Self {
            tokens,
            words,
            boundary,
            space,
        }
    }

    fn trim(&self, r: Range<usize>) -> Range<usize> {
        let (mut a, mut b) = (r.start, r.end);
        while a < b && self.space[a] {
            a += 1;
        }
        while b > a && self.space[b - 1] {
            b -= 1;
        }
        a..b
    }

    fn has_words(&self, r: &Range<usize>) -> bool {
        self.words[r.end] > self.words[r.start]
    }
}

/// Byte offsets where a new segment may start, with the kind of cut before them.
fn cut_points(s: &str, m: &Measure) -> Vec<(usize, Cut)> {
    let b = s.as_bytes();
    let mut cuts = Vec::new();
    for (i, c) in s.char_indices() {
        if !m.boundary[i] {
            continue;
        }
        let next = i + c.len_utf8();
        if tag_at(b, i).is_some() && i > 0 {
            cuts.push((i, Cut::Turn));
        }
        let kind = if c == '\n' || ends_sentence_cjk(c) {
            Some(Cut::Sentence)
        } else if ends_clause_cjk(c) {
            Some(Cut::Clause)
        } else if ends_sentence(c) || ends_clause(c) {
            // Needs whitespace after it (closing quotes allowed in between): "3.5" and "a,b"
            // are not cuts.
            let mut j = next;
            while let Some(q) = s[j..].chars().next().filter(|&q| closes(q)) {
                j += q.len_utf8();
            }
            (j < b.len() && m.space[j]).then_some(if ends_sentence(c) {
                Cut::Sentence
            } else {
                Cut::Clause
            })
        } else if m.space[i] {
            Some(Cut::Word)
        } else {
            None
        };
        if let Some(kind) = kind {
            // The next segment starts after the whitespace that follows.
            let mut j = next;
            if kind != Cut::Word {
                while let Some(q) = s[j..].chars().next().filter(|&q| closes(q)) {
                    j += q.len_utf8();
                }
            }
            while j < b.len() && m.space[j] {
                j += 1;
            }
            if j < b.len() && m.boundary[j] {
                cuts.push((j, kind));
            }
        }
    }
    // One entry per offset, the best kind.
    cuts.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    cuts.dedup_by_key(|c| c.0);
    cuts
}

/// Warnings for bracketed tags that look like speaker tags but are not `[S1]`/`[S2]`: read as
/// plain text, as nari-labs reads them.
fn tag_warnings(s: &str) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (i, _) in s.match_indices('[') {
        let rest = &s[i + 1..];
        let Some(close) = rest.find(']') else {
            if rest.starts_with(['S', 's']) && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
                let end = rest[1..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(rest.len(), |e| e + 1);
                let t = &s[i..=i + end];
                if !seen.contains(&t) {
                    seen.push(t);
                    out.push(format!(
                        "`{t}` has no closing `]`, so it is not a speaker tag; it is read as text"
                    ));
                }
            }
            continue;
        };
        let inner = &rest[..close];
        let tagish = inner.len() <= 4
            && inner.starts_with(['S', 's'])
            && inner[1..].trim().chars().all(|c| c.is_ascii_digit())
            && !inner[1..].trim().is_empty();
        if tagish && inner != "S1" && inner != "S2" {
            let t = &s[i..i + close + 2];
            if !seen.contains(&t) {
                seen.push(t);
                out.push(format!(
                    "`{t}` is not a speaker tag (Dia knows [S1] and [S2]); it is read as text, as nari-labs reads it"
                ));
            }
        }
    }
    out
}

/// Splits `script` into segments within `limits`.
///
/// Errors: a script of only whitespace ([`RuntimeError::EmptyText`]), or of speaker tags with
/// nothing to say ([`RuntimeError::NothingToSay`]).
pub fn split_script(script: &str, limits: &SegmentLimits) -> Result<SplitScript, RuntimeError> {
    if script.trim().is_empty() {
        return Err(RuntimeError::EmptyText);
    }
    let m = Measure::new(script);
    if !m.has_words(&(0..script.len())) {
        return Err(RuntimeError::NothingToSay);
    }
    let max_tokens = limits.max_tokens.max(1);
    let target = limits.target_bytes.max(1);
    let b = script.as_bytes();
    let cuts = cut_points(script, &m);
    let mut out = SplitScript {
        warnings: tag_warnings(script),
        ..Default::default()
    };
    if !script.contains("[S1]") && !script.contains("[S2]") {
        out.warnings.push(
            "the script has no speaker tags; Dia speaks best when every turn starts with [S1] or [S2]"
                .into(),
        );
    }

    let mut speaker: Option<&'static str> = None;
    let mut start = m.trim(0..b.len()).start;
    let mut ci = 0; // first cut after `start`
    while start < b.len() {
        while ci < cuts.len() && cuts[ci].0 <= start {
            ci += 1;
        }
        // The tag this segment needs in front, if it starts inside a turn.
        let prefix = if tag_at(b, start).is_some() {
            None
        } else {
            speaker
        };
        let prefix_tokens = prefix.map_or(0, |_| 2); // the tag and a space
        let prefix_bytes = prefix.map_or(0, |t| t.len() + 1);
        let tokens = |r: &Range<usize>| m.tokens[r.end] - m.tokens[r.start] + prefix_tokens;
        let fits_hard = |end: usize| tokens(&m.trim(start..end)) <= max_tokens;
        let fits = |end: usize| {
            let r = m.trim(start..end);
            tokens(&r) <= max_tokens && r.len() + prefix_bytes <= target
        };
        let rest = m.trim(start..b.len());
        if !m.has_words(&rest) {
            out.dropped = Some(rest);
            out.warnings.push(format!(
                "speaker tag(s) `{}` at the end of the script have nothing after them to say; ignored",
                &script[out.dropped.clone().unwrap_or_default()]
            ));
            break;
        }
        // Candidate ends, in order; the end of the script last.
        let candidates = cuts[ci..]
            .iter()
            .copied()
            .chain(std::iter::once((b.len(), Cut::End)));
        // The best cut that fits at each level: ends are tried in order, and a longer
        // segment never fits where a shorter one did not.
        let mut best: [Option<usize>; 6] = [None; 6];
        let mut first_word_end = None;
        for (end, kind) in candidates {
            let r = m.trim(start..end);
            if !m.has_words(&r) {
                continue;
            }
            if kind >= Cut::Word && first_word_end.is_none() {
                first_word_end = Some((end, kind));
            }
            if !fits(end) {
                break;
            }
            best[kind as usize] = Some(end);
        }
        let level = |k: Cut| {
            (k as usize..best.len())
                .filter_map(|i| best[i].map(|e| (e, i)))
                .max()
        };
        let chosen = if let Some((e, k)) = level(Cut::Sentence) {
            (e, ALL[k])
        } else if let Some((e, k)) = level(Cut::Clause) {
            (e, ALL[k])
        } else if let Some((e, k)) = level(Cut::Word) {
            (e, ALL[k])
        } else {
            match first_word_end {
                // One word over the soft limit: keep it whole if the window takes it.
                Some((e, k)) if fits_hard(e) => (e, k),
                _ => {
                    // Cut the word between characters: as many as the window takes.
                    let mut e = start;
                    let mut j = start + 1;
                    while j <= b.len() {
                        if m.boundary[j] {
                            if !fits_hard(j) {
                                break;
                            }
                            e = j;
                        }
                        j += 1;
                    }
                    if e == start {
                        return Err(RuntimeError::InvalidOption(format!(
                            "the text window of {max_tokens} tokens cannot take one character of the script"
                        )));
                    }
                    (e, Cut::Char)
                }
            }
        };
        let (end, kind) = chosen;
        let source = m.trim(start..end);
        let said = &script[source.clone()];
        let preview: String = said.chars().take(40).collect();
        match kind {
            Cut::Clause => out.warnings.push(format!(
                "a sentence is longer than one segment ({} tokens, {target} bytes); cut after a comma: \"{preview}…\"",
                max_tokens
            )),
            Cut::Word => out.warnings.push(format!(
                "a sentence is longer than one segment ({} tokens, {target} bytes) and has no comma to cut at; cut at a space: \"{preview}…\"",
                max_tokens
            )),
            Cut::Char => out.warnings.push(format!(
                "a word is longer than the text window ({max_tokens} tokens); cut inside it: \"{preview}…\""
            )),
            _ => {}
        }
        let text = match prefix {
            Some(tag) => format!("{tag} {said}"),
            None => said.to_string(),
        };
        // The speaker in force after this segment.
        let mut i = source.start;
        while i < source.end {
            if let Some(t) = tag_at(b, i) {
                speaker = Some(t);
                i += 4;
            } else {
                i += 1;
            }
        }
        out.segments.push(Segment {
            source,
            text,
            cut: kind,
        });
        start = m.trim(end..b.len()).start.max(end);
    }
    Ok(out)
}

const ALL: [Cut; 6] = [
    Cut::Char,
    Cut::Word,
    Cut::Clause,
    Cut::Sentence,
    Cut::Turn,
    Cut::End,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::encode_text;
    use proptest::prelude::*;

    fn split(s: &str, max_tokens: usize, target_bytes: usize) -> SplitScript {
        split_script(
            s,
            &SegmentLimits {
                max_tokens,
                target_bytes,
            },
        )
        .unwrap()
    }

    fn texts(s: &SplitScript) -> Vec<&str> {
        s.segments.iter().map(|g| g.text.as_str()).collect()
    }

    #[test]
    fn a_script_that_fits_is_one_segment() {
        let s = split("[S1] Hello there. [S2] Hi!", 64, 100);
        assert_eq!(texts(&s), ["[S1] Hello there. [S2] Hi!"]);
        assert_eq!(s.segments[0].cut, Cut::End);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn turns_and_sentences_come_first_and_the_speaker_carries_over() {
        let s = split(
            "[S1] One two three. Four five six. [S2] Seven eight. Nine ten.",
            20,
            26,
        );
        assert_eq!(
            texts(&s),
            [
                "[S1] One two three.",
                "[S1] Four five six.",
                "[S2] Seven eight.",
                "[S2] Nine ten."
            ]
        );
        assert_eq!(s.segments[0].cut, Cut::Sentence);
        assert_eq!(s.segments[1].cut, Cut::Turn);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn a_long_sentence_is_cut_at_a_comma_then_at_a_space_with_warnings() {
        let s = split("[S1] alpha beta, gamma delta epsilon zeta eta.", 16, 100);
        assert_eq!(s.segments[0].text, "[S1] alpha beta,");
        assert_eq!(s.segments[0].cut, Cut::Clause);
        assert!(
            s.warnings.iter().any(|w| w.contains("comma")),
            "{:?}",
            s.warnings
        );
        assert!(s.segments[1..].iter().any(|g| g.cut == Cut::Word));
        assert!(
            s.warnings.iter().any(|w| w.contains("at a space")),
            "{:?}",
            s.warnings
        );
        for g in &s.segments {
            assert!(encode_text(&g.text, 16).is_ok(), "{g:?}");
        }
    }

    #[test]
    fn numbers_and_abbreviations_without_a_space_are_not_sentence_ends() {
        let s = split("[S1] Pi is 3.14159, e is 2.71828.", 64, 22);
        assert!(s.segments.iter().all(|g| !g.text.ends_with("3.")), "{s:?}");
    }

    #[test]
    fn a_word_longer_than_the_window_is_cut_inside_with_a_warning() {
        let word = "é".repeat(30);
        let s = split(&format!("[S1] {word}"), 16, 100);
        assert!(s.segments.iter().any(|g| g.cut == Cut::Char));
        assert!(s.warnings.iter().any(|w| w.contains("cut inside")));
        let joined: String = s
            .segments
            .iter()
            .map(|g| g.text.trim_start_matches("[S1]").trim_start())
            .collect();
        assert_eq!(joined, word);
    }

    #[test]
    fn whitespace_and_tags_only_are_errors_and_dangling_tags_are_dropped() {
        let limits = SegmentLimits {
            max_tokens: 64,
            target_bytes: 64,
        };
        assert!(matches!(
            split_script(" \n\t ", &limits),
            Err(RuntimeError::EmptyText)
        ));
        assert!(matches!(
            split_script("[S1] [S2]\n[S1]", &limits),
            Err(RuntimeError::NothingToSay)
        ));
        let s = split("[S1] Hi. [S2]", 64, 64);
        assert_eq!(texts(&s), ["[S1] Hi. [S2]"]);
        let s = split("[S1] Hi there you. [S2]  ", 64, 12);
        assert_eq!(s.dropped, Some(19..23));
        assert!(s.warnings.iter().any(|w| w.contains("nothing after them")));
    }

    #[test]
    fn malformed_tags_are_text_with_a_warning() {
        let s = split("[s1] Hi. [S3] Yo. [S1 Ok.", 64, 100);
        assert_eq!(texts(&s), ["[s1] Hi. [S3] Yo. [S1 Ok."]);
        assert_eq!(s.warnings.len(), 4, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("`[s1]` is not a speaker tag"));
        assert!(s.warnings[1].contains("`[S3]`"));
        assert!(s.warnings[2].contains("`[S1` has no closing"));
        assert!(s.warnings[3].contains("no speaker tags"));
    }

    // Random scripts: words (ASCII, accented, CJK), spaces, line breaks, punctuation, tags
    // (good and bad), long words and 10k-character sentences.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z]{1,8}",
            1 => "[àéîõüß]{1,5}",
            1 => "[一-龥]{1,6}",
            3 => Just(" ".to_string()),
            1 => Just("\n".to_string()),
            1 => Just("\n\n  \n".to_string()),
            2 => prop_oneof![Just(". "), Just("! "), Just("? "), Just(", "), Just("; "), Just("。"), Just("，"), Just("… "), Just(".\" ")].prop_map(str::to_string),
            2 => prop_oneof![Just("[S1] "), Just("[S2] "), Just("[S1]"), Just("[s2] "), Just("[S3]"), Just("[S1")].prop_map(str::to_string),
            1 => "[a-z]{40,120}",
            1 => proptest::collection::vec("[a-z]{1,9}", 1200..1600).prop_map(|w| w.join(" ")),
        ]
    }

    fn script() -> impl Strategy<Value = String> {
        proptest::collection::vec(piece(), 0..40).prop_map(|p| p.concat())
    }

    /// The speaker tag in force at byte `at`: the last one before it.
    fn speaker_before(s: &str, at: usize) -> Option<&'static str> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut sp = None;
        while i < at {
            if let Some(t) = tag_at(b, i) {
                sp = Some(t);
                i += 4;
            } else {
                i += 1;
            }
        }
        sp
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn no_text_lost_or_doubled_every_segment_fits_and_cuts_are_allowed(
            s in script(),
            max_tokens in 12usize..120,
            target_bytes in 1usize..200,
        ) {
            let limits = SegmentLimits { max_tokens, target_bytes };
            let r = split_script(&s, &limits);
            if s.trim().is_empty() {
                prop_assert!(matches!(r, Err(RuntimeError::EmptyText)));
                return Ok(());
            }
            let m = Measure::new(&s);
            if !m.has_words(&(0..s.len())) {
                prop_assert!(matches!(r, Err(RuntimeError::NothingToSay)), "{:?}", r);
                return Ok(());
            }
            let r = r.unwrap();
            prop_assert!(!r.segments.is_empty());
            // Every byte that is not whitespace is in exactly one segment (or the dropped
            // tags at the end), in order.
            let mut owner = vec![0usize; s.len()];
            let mut last_end = 0;
            for g in &r.segments {
                prop_assert!(g.source.start >= last_end, "overlap at {:?}", g.source);
                last_end = g.source.end;
                for o in &mut owner[g.source.clone()] { *o += 1; }
            }
            if let Some(d) = &r.dropped {
                prop_assert!(d.start >= last_end);
                prop_assert!(!m.has_words(d));
                for o in &mut owner[d.clone()] { *o += 1; }
            }
            for (i, &o) in owner.iter().enumerate() {
                prop_assert!(o == 1 || (o == 0 && m.space[i]), "byte {} ({:?}) owned {} times", i, s.as_bytes()[i] as char, o);
            }
            for (k, g) in r.segments.iter().enumerate() {
                // Within the window, something to say, the right speaker in front.
                let toks = encode_text(&g.text, max_tokens);
                prop_assert!(toks.is_ok(), "segment {} over the window: {:?}", k, g);
                prop_assert!(m.has_words(&g.source));
                let src = &s[g.source.clone()];
                let prefix = if tag_at(s.as_bytes(), g.source.start).is_some() { None } else { speaker_before(&s, g.source.start) };
                let want = match prefix { Some(t) => format!("{t} {src}"), None => src.to_string() };
                prop_assert_eq!(&g.text, &want);
                // Over the soft limit only as one word.
                if g.text.len() > target_bytes {
                    let inner = src.replace("[S1]", "").replace("[S2]", "");
                    prop_assert!(!inner.trim().contains(char::is_whitespace), "segment {} over {} bytes with spaces: {:?}", k, target_bytes, g);
                }
                // Cuts only where allowed.
                if let Some(next) = r.segments.get(k + 1) {
                    let gap = &s[g.source.end..next.source.start];
                    match g.cut {
                        Cut::Char => {
                            prop_assert!(gap.is_empty());
                            let before = s[..g.source.end].chars().next_back().unwrap();
                            let after = s[next.source.start..].chars().next().unwrap();
                            prop_assert!(!before.is_whitespace() && !after.is_whitespace());
                            prop_assert!(r.warnings.iter().any(|w| w.contains("cut inside")));
                        }
                        Cut::Turn => prop_assert!(tag_at(s.as_bytes(), next.source.start).is_some()),
                        Cut::End => prop_assert!(false, "End before the last segment"),
                        Cut::Word | Cut::Clause | Cut::Sentence => {
                            let cjk = src.ends_with(|c| ends_sentence_cjk(c) || ends_clause_cjk(c));
                            prop_assert!(cjk || (!gap.is_empty() && gap.trim().is_empty()), "cut {:?} with gap {:?}", g.cut, gap);
                            if g.cut == Cut::Word {
                                prop_assert!(r.warnings.iter().any(|w| w.contains("at a space")));
                            }
                            if g.cut == Cut::Clause {
                                prop_assert!(r.warnings.iter().any(|w| w.contains("comma")));
                            }
                        }
                    }
                } else {
                    prop_assert!(r.dropped.is_some() || s[g.source.end..].trim().is_empty());
                }
            }
        }
    }
}
