//! TranscriptionConfiguration: shapes, enums and the documented cross-field rules.

use carillon_control::TranscriptionEngine;

use crate::dto::{
    EngineTranscribeMedicalSettingsInput, EngineTranscribeSettingsInput,
    TranscriptionConfigurationInput,
};
use crate::validate::{self, Violations};

/// `TranscribeLanguageCode`.
pub const LANGUAGE_CODES: &[&str] = &[
    "en-US", "en-GB", "es-US", "fr-CA", "fr-FR", "en-AU", "it-IT", "de-DE", "pt-BR", "ja-JP",
    "ko-KR", "zh-CN", "th-TH", "hi-IN",
];
/// `TranscribeRegion`.
pub const REGIONS: &[&str] = &[
    "us-east-2",
    "us-east-1",
    "us-west-2",
    "ap-northeast-2",
    "ap-southeast-2",
    "ap-northeast-1",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "sa-east-1",
    "auto",
    "us-gov-west-1",
];
/// `TranscribeMedicalRegion`.
pub const MEDICAL_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ap-southeast-2",
    "ca-central-1",
    "eu-west-1",
    "auto",
];
const VOCABULARY_FILTER_METHODS: &[&str] = &["remove", "mask", "tag"];
const PARTIAL_RESULTS_STABILITY: &[&str] = &["low", "medium", "high"];
const PII: &[&str] = &["PII"];
const MEDICAL_LANGUAGE_CODES: &[&str] = &["en-US"];
const MEDICAL_SPECIALTIES: &[&str] = &[
    "PRIMARYCARE",
    "CARDIOLOGY",
    "NEUROLOGY",
    "ONCOLOGY",
    "RADIOLOGY",
    "UROLOGY",
];
const MEDICAL_TYPES: &[&str] = &["CONVERSATION", "DICTATION"];
const PHI: &[&str] = &["PHI"];

fn one_of(v: &mut Violations, field: &str, value: &Option<String>, allowed: &[&str]) {
    if let Some(value) = value
        && !allowed.contains(&value.as_str())
    {
        v.add_rule(format!(
            "Value '{}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            value.chars().take(64).collect::<String>(),
            allowed.join(", ")
        ));
    }
}

/// A member of the model's plain `String` shape: at most `max` characters and no minimum (the
/// vocabulary names are `String`, unlike the `TranscribeVocabularyNamesOrFilterNamesString`
/// lists, so an empty name is the model's business, and Transcribe's, not ours).
fn string(v: &mut Violations, field: &str, value: &Option<String>, max: usize) {
    if let Some(value) = value {
        v.length(field, value, 0, max);
    }
}

fn patterned(
    v: &mut Violations,
    field: &str,
    value: &Option<String>,
    max: usize,
    pattern: &str,
    allowed: fn(char) -> bool,
) {
    if let Some(value) = value
        && v.length(field, value, 1, max)
    {
        v.chars(field, value, pattern, allowed);
    }
}

/// Validates a configuration; returns the engine and its configured region.
pub fn validate(
    v: &mut Violations,
    config: &TranscriptionConfigurationInput,
) -> Option<(TranscriptionEngine, Option<String>)> {
    match (
        &config.engine_transcribe_settings,
        &config.engine_transcribe_medical_settings,
    ) {
        (Some(s), None) => {
            standard(v, s);
            Some((TranscriptionEngine::Transcribe, s.region.clone()))
        }
        (None, Some(s)) => {
            medical(v, s);
            Some((TranscriptionEngine::TranscribeMedical, s.region.clone()))
        }
        (None, None) => {
            v.add_rule(
                "TranscriptionConfiguration must contain EngineTranscribeSettings or EngineTranscribeMedicalSettings",
            );
            None
        }
        (Some(_), Some(_)) => {
            v.add_rule(
                "TranscriptionConfiguration must contain only one of EngineTranscribeSettings and EngineTranscribeMedicalSettings",
            );
            None
        }
    }
}

fn standard(v: &mut Violations, s: &EngineTranscribeSettingsInput) {
    const P: &str = "TranscriptionConfiguration.EngineTranscribeSettings";
    one_of(
        v,
        &format!("{P}.LanguageCode"),
        &s.language_code,
        LANGUAGE_CODES,
    );
    one_of(
        v,
        &format!("{P}.VocabularyFilterMethod"),
        &s.vocabulary_filter_method,
        VOCABULARY_FILTER_METHODS,
    );
    string(
        v,
        &format!("{P}.VocabularyFilterName"),
        &s.vocabulary_filter_name,
        4096,
    );
    string(v, &format!("{P}.VocabularyName"), &s.vocabulary_name, 4096);
    one_of(v, &format!("{P}.Region"), &s.region, REGIONS);
    one_of(
        v,
        &format!("{P}.PartialResultsStability"),
        &s.partial_results_stability,
        PARTIAL_RESULTS_STABILITY,
    );
    one_of(
        v,
        &format!("{P}.ContentIdentificationType"),
        &s.content_identification_type,
        PII,
    );
    one_of(
        v,
        &format!("{P}.ContentRedactionType"),
        &s.content_redaction_type,
        PII,
    );
    patterned(
        v,
        &format!("{P}.PiiEntityTypes"),
        &s.pii_entity_types,
        300,
        "^[A-Z_, ]+",
        validate::pii_entity_char,
    );
    patterned(
        v,
        &format!("{P}.LanguageModelName"),
        &s.language_model_name,
        200,
        "^[0-9a-zA-Z._-]+",
        validate::language_model_char,
    );
    patterned(
        v,
        &format!("{P}.LanguageOptions"),
        &s.language_options,
        200,
        "^[a-zA-Z-,]+",
        validate::language_options_char,
    );
    one_of(
        v,
        &format!("{P}.PreferredLanguage"),
        &s.preferred_language,
        LANGUAGE_CODES,
    );
    for (name, value) in [
        ("VocabularyNames", &s.vocabulary_names),
        ("VocabularyFilterNames", &s.vocabulary_filter_names),
    ] {
        patterned(
            v,
            &format!("{P}.{name}"),
            value,
            3000,
            "^[a-zA-Z0-9,-._]+",
            validate::vocabulary_names_char,
        );
    }

    // The documented cross-field rules, and only those: whatever else Transcribe would
    // refuse (a single LanguageOptions entry, an unknown code in the list, a
    // PreferredLanguage missing from it...) is not an API error at Chime either, which
    // reports it with a TranscriptionFailed event once the transcription runs.
    let identify = s.identify_language == Some(true);
    match (s.language_code.is_some(), identify) {
        (true, true) => v.add_rule(format!(
            "{P}: LanguageCode and IdentifyLanguage cannot be used together"
        )),
        (false, false) => v.add_rule(format!(
            "{P}: one of LanguageCode or IdentifyLanguage is required"
        )),
        _ => {}
    }
    if s.content_identification_type.is_some() && s.content_redaction_type.is_some() {
        v.add_rule(format!(
            "{P}: ContentIdentificationType and ContentRedactionType cannot be used together"
        ));
    }
    if s.pii_entity_types.is_some()
        && s.content_identification_type.is_none()
        && s.content_redaction_type.is_none()
    {
        v.add_rule(format!(
            "{P}: PiiEntityTypes requires ContentIdentificationType or ContentRedactionType"
        ));
    }
    if s.language_options.is_some() && !identify {
        v.add_rule(format!(
            "{P}: LanguageOptions requires IdentifyLanguage to be true"
        ));
    }
    if s.preferred_language.is_some() && s.language_options.is_none() {
        v.add_rule(format!("{P}: PreferredLanguage requires LanguageOptions"));
    }
    if identify && s.language_model_name.is_some() {
        v.add_rule(format!(
            "{P}: IdentifyLanguage cannot be combined with LanguageModelName"
        ));
    }
    if identify && s.content_redaction_type.is_some() {
        v.add_rule(format!(
            "{P}: IdentifyLanguage cannot be combined with ContentRedactionType"
        ));
    }
}

fn medical(v: &mut Violations, s: &EngineTranscribeMedicalSettingsInput) {
    const P: &str = "TranscriptionConfiguration.EngineTranscribeMedicalSettings";
    for (name, value, allowed) in [
        ("LanguageCode", &s.language_code, MEDICAL_LANGUAGE_CODES),
        ("Specialty", &s.specialty, MEDICAL_SPECIALTIES),
        ("Type", &s.r#type, MEDICAL_TYPES),
    ] {
        let field = format!("{P}.{name}");
        if v.required(&field, value).is_some() {
            one_of(v, &field, value, allowed);
        }
    }
    string(v, &format!("{P}.VocabularyName"), &s.vocabulary_name, 4096);
    one_of(v, &format!("{P}.Region"), &s.region, MEDICAL_REGIONS);
    one_of(
        v,
        &format!("{P}.ContentIdentificationType"),
        &s.content_identification_type,
        PHI,
    );
}

/// A one-line description of a recorded transcription for the server log: the settings that
/// decide what it would produce, as `Name=value` pairs. Long values (vocabulary lists can run
/// to kilobytes) are cut, so a log line stays a line.
pub fn summary(configuration_json: &str) -> String {
    fn cut(value: &str) -> String {
        const MAX: usize = 64;
        if value.chars().count() <= MAX {
            value.to_owned()
        } else {
            let mut out: String = value.chars().take(MAX).collect();
            out.push('…');
            out
        }
    }
    fn push(out: &mut Vec<String>, name: &str, value: &Option<String>) {
        if let Some(value) = value {
            out.push(format!("{name}={}", cut(value)));
        }
    }
    // The JSON was written by `parse_command` from this very type, so it reads back.
    let Ok(config) = serde_json::from_str::<TranscriptionConfigurationInput>(configuration_json)
    else {
        return "unreadable configuration".to_owned();
    };
    let mut out = Vec::new();
    if let Some(s) = &config.engine_transcribe_settings {
        push(&mut out, "LanguageCode", &s.language_code);
        if s.identify_language == Some(true) {
            out.push("IdentifyLanguage=true".to_owned());
        }
        push(&mut out, "LanguageOptions", &s.language_options);
        push(&mut out, "PreferredLanguage", &s.preferred_language);
        push(&mut out, "LanguageModelName", &s.language_model_name);
        push(&mut out, "VocabularyName", &s.vocabulary_name);
        push(&mut out, "VocabularyNames", &s.vocabulary_names);
        push(&mut out, "VocabularyFilterName", &s.vocabulary_filter_name);
        push(
            &mut out,
            "VocabularyFilterNames",
            &s.vocabulary_filter_names,
        );
        push(
            &mut out,
            "VocabularyFilterMethod",
            &s.vocabulary_filter_method,
        );
        if let Some(on) = s.enable_partial_results_stabilization {
            out.push(format!("EnablePartialResultsStabilization={on}"));
        }
        push(
            &mut out,
            "PartialResultsStability",
            &s.partial_results_stability,
        );
        push(
            &mut out,
            "ContentIdentificationType",
            &s.content_identification_type,
        );
        push(&mut out, "ContentRedactionType", &s.content_redaction_type);
        push(&mut out, "PiiEntityTypes", &s.pii_entity_types);
    }
    if let Some(s) = &config.engine_transcribe_medical_settings {
        push(&mut out, "LanguageCode", &s.language_code);
        push(&mut out, "Specialty", &s.specialty);
        push(&mut out, "Type", &s.r#type);
        push(&mut out, "VocabularyName", &s.vocabulary_name);
        push(
            &mut out,
            "ContentIdentificationType",
            &s.content_identification_type,
        );
    }
    out.join(" ")
}

/// Where Transcribe would run: the configured region; for `auto` or none, the meeting's media
/// region when the engine serves it, else us-east-1.
pub fn resolve_region(
    engine: TranscriptionEngine,
    configured: Option<&str>,
    media_region: &str,
) -> String {
    let served = match engine {
        TranscriptionEngine::Transcribe => REGIONS,
        TranscriptionEngine::TranscribeMedical => MEDICAL_REGIONS,
    };
    match configured {
        Some(region) if region != "auto" => region.to_owned(),
        _ if served.contains(&media_region) => media_region.to_owned(),
        _ => "us-east-1".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<TranscriptionEngine, String> {
        let config: TranscriptionConfigurationInput = serde_json::from_str(json).unwrap();
        let mut v = Violations::new();
        let out = validate(&mut v, &config);
        match v.into_message() {
            None => Ok(out.unwrap().0),
            Some(m) => Err(m),
        }
    }

    #[test]
    fn engines_and_rules() {
        assert_eq!(
            check(r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US"}}"#),
            Ok(TranscriptionEngine::Transcribe)
        );
        assert!(check("{}").is_err());
        assert!(check(r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US"},"EngineTranscribeMedicalSettings":{}}"#).is_err());
        assert!(
            check(r#"{"EngineTranscribeSettings":{}}"#)
                .unwrap_err()
                .contains("one of LanguageCode or IdentifyLanguage")
        );
        assert!(
            check(
                r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US","IdentifyLanguage":true}}"#
            )
            .is_err()
        );
        assert!(check(r#"{"EngineTranscribeSettings":{"LanguageCode":"xx-XX"}}"#).is_err());
        assert!(check(r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US","ContentIdentificationType":"PII","ContentRedactionType":"PII"}}"#).is_err());
        assert!(
            check(
                r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US","PiiEntityTypes":"NAME"}}"#
            )
            .is_err()
        );
        assert!(check(r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US","ContentRedactionType":"PII","PiiEntityTypes":"NAME,ADDRESS"}}"#).is_ok());
        assert!(check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"LanguageOptions":"en-US,de-DE","PreferredLanguage":"de-DE"}}"#).is_ok());
        // Only the documented rules: what Transcribe itself would refuse later is accepted.
        assert!(check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"LanguageOptions":"en-US,de-DE","PreferredLanguage":"fr-FR"}}"#).is_ok());
        assert!(
            check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"LanguageOptions":"en-US"}}"#)
                .is_ok()
        );
        assert!(
            check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"LanguageOptions":"xx-XX,en-US"}}"#)
                .is_ok()
        );
        assert!(check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true}}"#).is_ok());
        assert!(
            check(r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US","VocabularyName":"","VocabularyFilterName":""}}"#)
                .is_ok()
        );
        assert!(
            check(r#"{"EngineTranscribeMedicalSettings":{"LanguageCode":"en-US","Specialty":"UROLOGY","Type":"DICTATION","VocabularyName":""}}"#)
                .is_ok()
        );
        // The shapes still hold: PreferredLanguage is a TranscribeLanguageCode, LanguageOptions
        // has its pattern, VocabularyName at most 4096 characters.
        assert!(check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"LanguageOptions":"en-US,de-DE","PreferredLanguage":"xx-XX"}}"#).is_err());
        assert!(
            check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"LanguageOptions":"en_US"}}"#)
                .is_err()
        );
        let long = format!(
            r#"{{"EngineTranscribeSettings":{{"LanguageCode":"en-US","VocabularyName":"{}"}}}}"#,
            "v".repeat(4097)
        );
        assert!(check(&long).is_err());
        // Each documented cross-field rule.
        assert!(check(r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US","PreferredLanguage":"en-US"}}"#).is_err());
        assert!(check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"ContentRedactionType":"PII"}}"#).is_err());
        assert!(check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"ContentIdentificationType":"PII"}}"#).is_ok());
        assert!(check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":false}}"#).is_err());
        assert!(check(r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US","LanguageOptions":"en-US,de-DE"}}"#).is_err());
        assert!(check(r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"LanguageOptions":"en-US,de-DE","LanguageModelName":"m"}}"#).is_err());
        assert!(
            check(r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US","Region":"mars"}}"#)
                .is_err()
        );
        assert_eq!(
            check(
                r#"{"EngineTranscribeMedicalSettings":{"LanguageCode":"en-US","Specialty":"PRIMARYCARE","Type":"CONVERSATION"}}"#
            ),
            Ok(TranscriptionEngine::TranscribeMedical)
        );
        assert!(check(r#"{"EngineTranscribeMedicalSettings":{"LanguageCode":"en-US","Specialty":"PRIMARYCARE"}}"#).is_err());
    }

    #[test]
    fn summaries_name_the_settings_and_stay_short() {
        let s = summary(
            r#"{"EngineTranscribeSettings":{"IdentifyLanguage":true,"LanguageOptions":"en-US,de-DE","ContentIdentificationType":"PII"}}"#,
        );
        assert_eq!(
            s,
            "IdentifyLanguage=true LanguageOptions=en-US,de-DE ContentIdentificationType=PII"
        );
        let s = summary(
            r#"{"EngineTranscribeMedicalSettings":{"LanguageCode":"en-US","Specialty":"CARDIOLOGY","Type":"DICTATION"}}"#,
        );
        assert_eq!(s, "LanguageCode=en-US Specialty=CARDIOLOGY Type=DICTATION");
        let long = format!(
            r#"{{"EngineTranscribeSettings":{{"LanguageCode":"en-US","VocabularyNames":"{}"}}}}"#,
            "v,".repeat(1000)
        );
        assert!(summary(&long).chars().count() < 120);
        assert_eq!(summary("not json"), "unreadable configuration");
    }

    #[test]
    fn region_resolution() {
        use TranscriptionEngine::*;
        assert_eq!(
            resolve_region(Transcribe, Some("eu-west-1"), "us-east-1"),
            "eu-west-1"
        );
        assert_eq!(
            resolve_region(Transcribe, None, "eu-central-1"),
            "eu-central-1"
        );
        assert_eq!(
            resolve_region(Transcribe, Some("auto"), "af-south-1"),
            "us-east-1"
        );
        assert_eq!(
            resolve_region(TranscribeMedical, None, "eu-central-1"),
            "us-east-1"
        );
    }
}
