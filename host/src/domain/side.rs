//! The two services as the sync sees them: the [`Side`] where a change happened, and the
//! [`Direction`] a record travels (from that side to the other). Two types because a mapping
//! step is written for a direction and an event is stored for a side; each turns into the
//! other here, nowhere else.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The side of the sync where a change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// A referral changed in Partner Center.
    PartnerCenter,
    /// An opportunity changed in Dataverse.
    Dataverse,
}

impl Side {
    /// Its name in the store, logs and metrics: `partner-center` or `dataverse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::PartnerCenter => "partner-center",
            Side::Dataverse => "dataverse",
        }
    }

    /// The side named `text` (as [`Side::as_str`] writes it); `None` for any other text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "partner-center" => Some(Side::PartnerCenter),
            "dataverse" => Some(Side::Dataverse),
            _ => None,
        }
    }
}

/// Which way a record is travelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Partner Center referral → CRM opportunity.
    PartnerCenterToCrm,
    /// CRM opportunity → Partner Center referral.
    CrmToPartnerCenter,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::PartnerCenterToCrm => "partner-center-to-crm",
            Direction::CrmToPartnerCenter => "crm-to-partner-center",
        })
    }
}

impl Side {
    /// The direction a change on this side travels: to the other side.
    pub fn direction(self) -> Direction {
        match self {
            Side::PartnerCenter => Direction::PartnerCenterToCrm,
            Side::Dataverse => Direction::CrmToPartnerCenter,
        }
    }
}

impl Direction {
    /// The side a record travelling this way comes from.
    pub fn source(self) -> Side {
        match self {
            Direction::PartnerCenterToCrm => Side::PartnerCenter,
            Direction::CrmToPartnerCenter => Side::Dataverse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_travels_from_its_side_to_the_other() {
        for side in [Side::PartnerCenter, Side::Dataverse] {
            assert_eq!(side.direction().source(), side);
            assert_eq!(Side::parse(side.as_str()), Some(side));
        }
        assert_eq!(
            Side::PartnerCenter.direction(),
            Direction::PartnerCenterToCrm
        );
    }
}
