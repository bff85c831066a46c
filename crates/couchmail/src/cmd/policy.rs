//! The mail-policy flags of `domain add|update` and `mailbox add|update` (issue #5): applying them to a
//! document's [`PolicySettings`], and showing the settings.
//!
//! The model owns the rules (bounds, one decimal, `spam_reject` above `spam_threshold`); this module only
//! names the flag at fault, so that a refusal (exit 5) says what to type instead.

use couchmail_model::{MAX_HOURLY_LIMIT, PolicySettings, SpamScore, ValidationError};
use serde::Serialize;

use crate::cli::{PolicyFlags, Setting, Toggle};
use crate::exit::{Exit, Failure};

/// The settings as `--json` shows them, flat in a domain or mailbox; `null` means inherited.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyView {
    /// `true`/`false`, or `null`: inherited.
    pub greylisting: Option<bool>,
    /// The Junk threshold.
    pub spam_threshold: Option<SpamScore>,
    /// The SMTP-time reject score.
    pub spam_reject: Option<SpamScore>,
    /// Messages an hour a logged-in user may send.
    pub messages_per_hour: Option<u32>,
    /// Recipients an hour a logged-in user may send to.
    pub recipients_per_hour: Option<u32>,
}

impl From<&PolicySettings> for PolicyView {
    fn from(settings: &PolicySettings) -> PolicyView {
        PolicyView {
            greylisting: settings.greylisting,
            spam_threshold: settings.spam_threshold,
            spam_reject: settings.spam_reject,
            messages_per_hour: settings.messages_per_hour,
            recipients_per_hour: settings.recipients_per_hour,
        }
    }
}

/// Applies `flags` to `settings` and checks the rules among the result; a broken rule is exit 5 naming the flag.
pub fn apply(flags: &PolicyFlags, settings: &mut PolicySettings) -> anyhow::Result<()> {
    if let Some(toggle) = flags.greylisting {
        settings.greylisting = match toggle {
            Toggle::On => Some(true),
            Toggle::Off => Some(false),
            Toggle::Inherit => None,
        };
    }
    if let Some(setting) = flags.spam_threshold {
        settings.spam_threshold = score("spam-threshold", setting)?;
    }
    if let Some(setting) = flags.spam_reject {
        settings.spam_reject = score("spam-reject", setting)?;
    }
    if let Some(setting) = flags.messages_per_hour {
        settings.messages_per_hour = limit(setting);
    }
    if let Some(setting) = flags.recipients_per_hour {
        settings.recipients_per_hour = limit(setting);
    }
    settings.validate().map_err(|err| refused_settings(&err, settings))
}

/// The settings as `key: value` lines for a show: a value of its own, else the one inherited and from where.
/// `domain` is the mailbox's domain's settings (`None` for a domain itself, or a mailbox whose domain is gone).
pub fn fields(own: &PolicySettings, domain: Option<&PolicySettings>) -> Vec<(&'static str, String)> {
    let on_off = |flag: bool| if flag { "on" } else { "off" }.to_owned();
    let shown = |own: Option<String>, from_domain: Option<String>| match (own, from_domain) {
        (Some(value), _) => value,
        (None, Some(value)) => format!("{value} (from the domain)"),
        (None, None) => "from the configuration".to_owned(),
    };
    let fallback = domain.copied().unwrap_or_default();
    vec![
        ("greylisting", shown(own.greylisting.map(on_off), fallback.greylisting.map(on_off))),
        (
            "spam threshold",
            shown(own.spam_threshold.map(|s| s.to_string()), fallback.spam_threshold.map(|s| s.to_string())),
        ),
        ("spam reject", shown(own.spam_reject.map(|s| s.to_string()), fallback.spam_reject.map(|s| s.to_string()))),
        (
            "messages per hour",
            shown(own.messages_per_hour.map(|n| n.to_string()), fallback.messages_per_hour.map(|n| n.to_string())),
        ),
        (
            "recipients per hour",
            shown(own.recipients_per_hour.map(|n| n.to_string()), fallback.recipients_per_hour.map(|n| n.to_string())),
        ),
    ]
}

fn score(flag: &str, setting: Setting<f64>) -> anyhow::Result<Option<SpamScore>> {
    match setting {
        Setting::Inherit => Ok(None),
        Setting::Value(value) => SpamScore::from_f64(value).map(Some).map_err(|err| {
            Failure::new(Exit::Invalid, format!("invalid --{flag} `{value}`: {}", err.message))
                .hint(format!(
                    "write a score from 0 to 100 with at most one decimal, such as 6.5, or `--{flag} inherit`"
                ))
                .into()
        }),
    }
}

fn limit(setting: Setting<u32>) -> Option<u32> {
    match setting {
        Setting::Value(value) => Some(value),
        Setting::Inherit => None,
    }
}

/// Exit 5 for settings that break a rule of the model, naming the flag to change.
fn refused_settings(err: &ValidationError, settings: &PolicySettings) -> anyhow::Error {
    let flag = format!("--{}", err.field.replace('_', "-"));
    let failure = match (err.field.as_str(), settings.spam_threshold, settings.spam_reject) {
        ("spam_reject", Some(threshold), Some(reject)) => Failure::new(
            Exit::Invalid,
            format!(
                "the spam reject score ({reject}) must be above the spam threshold ({threshold}), so that mail \
                 between the two still reaches the Junk folder"
            ),
        )
        .hint(format!(
            "give a --spam-reject above {threshold} or a --spam-threshold below {reject} (both may go in one command)"
        )),
        ("messages_per_hour" | "recipients_per_hour", _, _) => {
            Failure::new(Exit::Invalid, format!("invalid {flag}: {}", err.message))
                .hint(format!("write a number from 0 to {MAX_HOURLY_LIMIT}, or `{flag} inherit`"))
        }
        _ => Failure::new(Exit::Invalid, format!("invalid {flag}: {}", err.message))
            .hint(format!("correct {flag} and run the command again")),
    };
    failure.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> PolicyFlags {
        PolicyFlags::default()
    }

    #[test]
    fn flags_set_and_inherit() {
        let mut settings = PolicySettings::default();
        let set = PolicyFlags {
            greylisting: Some(Toggle::Off),
            spam_threshold: Some(Setting::Value(6.5)),
            spam_reject: Some(Setting::Value(15.0)),
            messages_per_hour: Some(Setting::Value(0)),
            recipients_per_hour: Some(Setting::Value(500)),
        };
        apply(&set, &mut settings).unwrap();
        assert_eq!(settings.greylisting, Some(false));
        assert_eq!(settings.spam_threshold.unwrap().tenths(), 65);
        assert_eq!(settings.spam_reject.unwrap().tenths(), 150);
        assert_eq!(settings.messages_per_hour, Some(0));
        assert_eq!(settings.recipients_per_hour, Some(500));

        // Flags not given leave their settings alone.
        apply(&PolicyFlags { greylisting: Some(Toggle::On), ..flags() }, &mut settings).unwrap();
        assert_eq!(settings.greylisting, Some(true));
        assert_eq!(settings.messages_per_hour, Some(0));

        let inherit = PolicyFlags {
            greylisting: Some(Toggle::Inherit),
            spam_threshold: Some(Setting::Inherit),
            spam_reject: Some(Setting::Inherit),
            messages_per_hour: Some(Setting::Inherit),
            recipients_per_hour: Some(Setting::Inherit),
        };
        apply(&inherit, &mut settings).unwrap();
        assert!(settings.is_empty(), "{settings:?}");
    }

    #[test]
    fn broken_rules_are_exit_5_naming_the_flag() {
        let mut settings = PolicySettings::default();
        let err =
            apply(&PolicyFlags { spam_threshold: Some(Setting::Value(6.55)), ..flags() }, &mut settings).unwrap_err();
        assert_eq!(crate::exit::classify(&err).0, Exit::Invalid);
        assert!(err.to_string().contains("invalid --spam-threshold `6.55`"), "{err}");

        let err =
            apply(&PolicyFlags { spam_reject: Some(Setting::Value(100.5)), ..flags() }, &mut settings).unwrap_err();
        assert!(err.to_string().contains("between 0.0 and 100.0"), "{err}");

        let inverted = PolicyFlags {
            spam_threshold: Some(Setting::Value(10.0)),
            spam_reject: Some(Setting::Value(5.0)),
            ..flags()
        };
        let err = apply(&inverted, &mut settings).unwrap_err();
        let (exit, hint) = crate::exit::classify(&err);
        assert_eq!(exit, Exit::Invalid);
        assert!(err.to_string().contains("(5.0) must be above the spam threshold (10.0)"), "{err}");
        assert!(hint.unwrap().contains("--spam-reject above 10.0"));

        let err = apply(
            &PolicyFlags { recipients_per_hour: Some(Setting::Value(MAX_HOURLY_LIMIT + 1)), ..flags() },
            &mut settings,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid --recipients-per-hour"), "{err}");
    }

    #[test]
    fn show_says_where_a_value_comes_from() {
        let own = PolicySettings { greylisting: Some(false), ..PolicySettings::default() };
        let domain = PolicySettings {
            greylisting: Some(true),
            spam_threshold: Some(SpamScore::from_tenths(50).unwrap()),
            ..PolicySettings::default()
        };
        let shown = fields(&own, Some(&domain));
        assert_eq!(shown[0], ("greylisting", "off".to_owned()));
        assert_eq!(shown[1], ("spam threshold", "5.0 (from the domain)".to_owned()));
        assert_eq!(shown[2], ("spam reject", "from the configuration".to_owned()));
        assert_eq!(fields(&PolicySettings::default(), None)[0].1, "from the configuration");
    }
}
