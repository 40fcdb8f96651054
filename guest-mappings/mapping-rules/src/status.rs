//! Referral `status`/`substatus` ↔ opportunity `statecode`/`statuscode`.
//!
//! Partner Center's transition table: New (Pending|Received) → Active (Accepted) → Closed
//! (Won|Lost|Declined|Expired); Closed is terminal. Dataverse: statecode 0 Open, 1 Won, 2 Lost;
//! the open/won/lost `statuscode` values are configurable (`statuscode.*`).

use crate::MappingError;
use crate::settings::StatusCodes;

/// Where a referral stands, independent of either system's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// New/Pending or New/Received: waiting to be accepted.
    Pending,
    /// Active/Accepted: being worked.
    Accepted,
    /// Closed/Won.
    Won,
    /// Closed/Lost.
    Lost,
    /// Closed/Declined.
    Declined,
    /// Closed/Expired.
    Expired,
}

impl Stage {
    /// Whether the referral is closed (terminal in Partner Center).
    pub fn is_closed(self) -> bool {
        !matches!(self, Stage::Pending | Stage::Accepted)
    }

    /// Partner Center `status` and `substatus` of this stage.
    pub fn referral_pair(self) -> (&'static str, &'static str) {
        match self {
            Stage::Pending => ("New", "Pending"),
            Stage::Accepted => ("Active", "Accepted"),
            Stage::Won => ("Closed", "Won"),
            Stage::Lost => ("Closed", "Lost"),
            Stage::Declined => ("Closed", "Declined"),
            Stage::Expired => ("Closed", "Expired"),
        }
    }

    /// Dataverse `statecode` and `statuscode` of this stage.
    pub fn opportunity_pair(self, codes: &StatusCodes) -> (i64, i64) {
        match self {
            Stage::Pending => (0, codes.pending),
            Stage::Accepted => (0, codes.accepted),
            Stage::Won => (1, codes.won),
            Stage::Lost => (2, codes.lost),
            Stage::Declined => (2, codes.declined),
            Stage::Expired => (2, codes.expired),
        }
    }
}

/// The stage of a referral; `Ok(None)` when it carries no status (or `None`).
pub fn from_referral(
    status: Option<&str>,
    substatus: Option<&str>,
) -> Result<Option<Stage>, MappingError> {
    let sub = substatus.unwrap_or("None");
    let bad_substatus = |status: &str| {
        MappingError::Reject(format!(
            "referral field \"substatus\" is \"{sub}\", which is not valid with status \"{status}\""
        ))
    };
    match status {
        None | Some("None") => Ok(None),
        Some("New") => match sub {
            "Pending" | "Received" | "None" => Ok(Some(Stage::Pending)),
            _ => Err(bad_substatus("New")),
        },
        // `Engaged` appears in third-party code only; it is still an accepted, open referral.
        Some("Active") => match sub {
            "Accepted" | "Engaged" | "None" => Ok(Some(Stage::Accepted)),
            _ => Err(bad_substatus("Active")),
        },
        Some("Closed") => match sub {
            "Won" => Ok(Some(Stage::Won)),
            "Lost" => Ok(Some(Stage::Lost)),
            "Declined" => Ok(Some(Stage::Declined)),
            "Expired" => Ok(Some(Stage::Expired)),
            _ => Err(bad_substatus("Closed")),
        },
        Some(other) => Err(MappingError::Reject(format!(
            "referral field \"status\" has the unknown value \"{other}\" \
             (expected New, Active or Closed)"
        ))),
    }
}

/// The stage an opportunity asks for, given where the existing referral stands (`None` when
/// the referral does not exist yet).
///
/// An accepted referral never goes back to pending, and a referral that was never accepted is
/// declined (not lost) when the opportunity is closed as lost.
pub fn from_opportunity(
    statecode: i64,
    statuscode: Option<i64>,
    referral: Option<Stage>,
    codes: &StatusCodes,
) -> Result<Stage, MappingError> {
    match statecode {
        0 if statuscode == Some(codes.pending) && referral != Some(Stage::Accepted) => {
            Ok(Stage::Pending)
        }
        0 => Ok(Stage::Accepted),
        1 => Ok(Stage::Won),
        2 if referral == Some(Stage::Pending) => Ok(Stage::Declined),
        2 => Ok(Stage::Lost),
        other => Err(MappingError::Reject(format!(
            "opportunity column \"statecode\" has the unknown value {other} \
             (expected 0 Open, 1 Won or 2 Lost)"
        ))),
    }
}
