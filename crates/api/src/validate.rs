//! Field validation. The SDKs validate next to nothing (botocore checks only required, type and
//! minimum length), so every constraint of the model is enforced here. Smithy patterns are not
//! anchored, but AWS has always matched them against the whole value, and so do we.

/// Collects every constraint violation of one request, Coral style:
/// `2 validation errors detected: Value at 'X' failed to satisfy constraint: ...; ...`.
#[derive(Debug, Default)]
pub struct Violations {
    messages: Vec<String>,
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation of `field`.
    pub fn add(&mut self, field: &str, constraint: impl std::fmt::Display) {
        self.messages.push(format!(
            "Value at '{field}' failed to satisfy constraint: {constraint}"
        ));
    }

    /// Records a rule that spans several fields.
    pub fn add_rule(&mut self, message: impl Into<String>) {
        self.messages.push(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// `None` when everything was valid, else the combined message.
    pub fn into_message(self) -> Option<String> {
        match self.messages.len() {
            0 => None,
            1 => Some(format!("1 validation error detected: {}", self.messages[0])),
            n => Some(format!(
                "{n} validation errors detected: {}",
                self.messages.join("; ")
            )),
        }
    }

    /// The value of a required member, recording its absence.
    pub fn required<'a, T>(&mut self, field: &str, value: &'a Option<T>) -> Option<&'a T> {
        if value.is_none() {
            self.add(field, "Member must not be null");
        }
        value.as_ref()
    }

    /// Length in Unicode scalar values, as Smithy counts it.
    pub fn length(&mut self, field: &str, value: &str, min: usize, max: usize) -> bool {
        let n = value.chars().count();
        if n < min {
            self.add(
                field,
                format!("Member must have length greater than or equal to {min}"),
            );
            false
        } else if n > max {
            self.add(
                field,
                format!("Member must have length less than or equal to {max}"),
            );
            false
        } else {
            true
        }
    }

    /// Number of list items.
    pub fn list_size<T>(&mut self, field: &str, list: &[T], min: usize, max: usize) -> bool {
        if list.len() < min {
            self.add(
                field,
                format!("Member must have length greater than or equal to {min}"),
            );
            false
        } else if list.len() > max {
            self.add(
                field,
                format!("Member must have length less than or equal to {max}"),
            );
            false
        } else {
            true
        }
    }

    /// Every character must satisfy `allowed`; `pattern` is the model's pattern for the message.
    pub fn chars(
        &mut self,
        field: &str,
        value: &str,
        pattern: &str,
        allowed: fn(char) -> bool,
    ) -> bool {
        if value.chars().all(allowed) {
            true
        } else {
            self.add(
                field,
                format!("Member must satisfy regular expression pattern: {pattern}"),
            );
            false
        }
    }

    /// Parses a closed set of wire strings (the value is echoed: enum values are not secret).
    pub fn enum_value<T>(
        &mut self,
        field: &str,
        value: &str,
        parse: fn(&str) -> Option<T>,
        allowed: &str,
    ) -> Option<T> {
        let parsed = parse(value);
        if parsed.is_none() {
            self.messages.push(format!(
                "Value '{}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: {allowed}",
                truncate(value, 64)
            ));
        }
        parsed
    }

    /// An integer range.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) -> bool {
        if value < min {
            self.add(
                field,
                format!("Member must have value greater than or equal to {min}"),
            );
            false
        } else if value > max {
            self.add(
                field,
                format!("Member must have value less than or equal to {max}"),
            );
            false
        } else {
            true
        }
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

// ----- character classes of the model's patterns -----

/// `[-_a-zA-Z0-9]` (ClientRequestToken).
pub fn client_request_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The docs pattern of ExternalMeetingId / ExternalUserId:
/// ``[-_&@+=,(){}\[\]\/«».:|'"#a-zA-Z0-9À-ÿ\s]``. `\s` is Java's `[ \t\n\x0B\f\r]`.
pub fn external_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || ('\u{C0}'..='\u{FF}').contains(&c)
        || "-_&@+=,(){}[]/«».:|'\"#".contains(c)
        || is_java_space(c)
}

fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

/// `^arn[\/\:\-\_\.a-zA-Z0-9]+$` after the `arn` prefix (notification target ARNs).
pub fn arn_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/:-_.".contains(c)
}

/// `[-_!@#$a-zA-Z0-9]` (TenantId).
pub fn tenant_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_!@#$".contains(c)
}

/// True when some character appears four or more times in a row: the TenantId pattern's
/// `(?!.*?(.)\1{3})` look-ahead forbids that.
pub fn has_run_of_four(s: &str) -> bool {
    let mut run = 0;
    let mut prev = None;
    for c in s.chars() {
        if Some(c) == prev {
            run += 1;
            if run >= 4 {
                return true;
            }
        } else {
            prev = Some(c);
            run = 1;
        }
    }
    false
}

/// `[a-zA-Z+-=._:/]` (TagKey). `+-=` is a range: `+ , - . / 0-9 : ; < =`.
pub fn tag_key_char(c: char) -> bool {
    c.is_ascii_alphabetic() || ('+'..='=').contains(&c) || "._:/".contains(c)
}

/// `[\s\w+-=\.:/@]` (TagValue). `\w` is `[a-zA-Z0-9_]`; `+-=` is a range as above.
pub fn tag_value_char(c: char) -> bool {
    is_java_space(c)
        || c.is_ascii_alphanumeric()
        || c == '_'
        || ('+'..='=').contains(&c)
        || ".:/@".contains(c)
}

/// `[0-9a-zA-Z._-]` (TranscribeLanguageModelName).
pub fn language_model_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-".contains(c)
}

/// `[a-zA-Z-,]` (TranscribeLanguageOptions).
pub fn language_options_char(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '-' || c == ','
}

/// `[A-Z_, ]` (TranscribePiiEntityTypes).
pub fn pii_entity_char(c: char) -> bool {
    c.is_ascii_uppercase() || "_, ".contains(c)
}

/// `[a-zA-Z0-9,-._]` (vocabulary names): `,-.` is a range (`, - .`).
pub fn vocabulary_names_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || (','..='.').contains(&c) || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_key_range_includes_digits_and_punctuation() {
        for c in "aZ+,-./09:;<=_".chars() {
            assert!(tag_key_char(c), "{c}");
        }
        for c in "> @#$%!?~".chars() {
            assert!(!tag_key_char(c), "{c}");
        }
    }

    #[test]
    fn tenant_id_repeat_rule() {
        assert!(!has_run_of_four("aaab"));
        assert!(has_run_of_four("baaaa"));
        assert!(!has_run_of_four("abababab"));
        assert!(has_run_of_four("____"));
    }

    #[test]
    fn external_id_accepts_latin1_letters_and_spaces() {
        assert!("Zoë «Ñ» (1) team@x.org".chars().all(external_id_char));
        assert!(!"emoji 😀".chars().all(external_id_char));
        assert!(!"semi;colon".chars().all(external_id_char));
    }

    #[test]
    fn messages_are_coral_like() {
        let mut v = Violations::new();
        v.length("ExternalUserId", "x", 2, 64);
        assert_eq!(
            v.into_message().unwrap(),
            "1 validation error detected: Value at 'ExternalUserId' failed to satisfy constraint: Member must have length greater than or equal to 2"
        );
    }
}
