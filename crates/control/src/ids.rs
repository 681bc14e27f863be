//! GUID-shaped identifiers.
//!
//! Chime's `GuidString` is `[a-fA-F0-9]{8}(-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}`. Attendee ids are
//! GUID-shaped but not RFC 4122 (their version and variant nibbles are random), so ids are kept as
//! 16 raw bytes and printed lower-case.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Error for a string that is not a `GuidString`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid GUID (expected 8-4-4-4-12 hexadecimal digits)")]
pub struct InvalidGuid(pub String);

/// True when `s` matches the model's GuidString pattern exactly.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

macro_rules! guid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn random(rng: &mut dyn RngCore) -> Self {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                Self(Uuid::from_bytes(bytes))
            }

            /// The 16 raw bytes (compact storage, e.g. the event outbox's records).
            pub fn to_bytes(self) -> [u8; 16] {
                self.0.into_bytes()
            }

            /// The id of 16 raw bytes written by `to_bytes`.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl FromStr for $name {
            type Err = InvalidGuid;
            fn from_str(s: &str) -> Result<Self, InvalidGuid> {
                if !is_guid(s) {
                    return Err(InvalidGuid(s.to_owned()));
                }
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidGuid(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidGuid;
            fn try_from(s: String) -> Result<Self, InvalidGuid> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

guid_id!(
    /// A meeting's id (`MeetingId`).
    MeetingId
);
guid_id!(
    /// An attendee's id (`AttendeeId`).
    AttendeeId
);

impl MeetingId {
    /// A random RFC 4122 version-4 id, which is what Chime's meeting ids look like.
    pub fn random_v4(rng: &mut dyn RngCore) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_pattern_is_exact() {
        assert!(is_guid("4101582d-72d2-451b-8ac0-f0f127992713"));
        assert!(is_guid("4101582D-72D2-451B-8AC0-F0F127992713"));
        assert!(!is_guid("4101582d72d2451b8ac0f0f127992713"));
        assert!(!is_guid("{4101582d-72d2-451b-8ac0-f0f127992713}"));
        assert!(!is_guid("4101582d-72d2-451b-8ac0-f0f12799271g"));
        assert!(!is_guid(""));
        let id: MeetingId = "4101582D-72D2-451B-8AC0-F0F127992713".parse().unwrap();
        assert_eq!(id.to_string(), "4101582d-72d2-451b-8ac0-f0f127992713");
    }
}
