//! The links between referrals and opportunities, with what each side looked like when the
//! pair was last in sync, and the referral create intents that keep a create whose answer was
//! lost from being sent twice.

use anyhow::Result;

/// A referral and its opportunity, and what each looked like when they were last in sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    /// Store id; `None` until saved.
    pub id: Option<i64>,
    /// The Partner Center referral's id; `None` while the link has none.
    pub referral_id: Option<String>,
    /// The Dataverse opportunity's id; `None` while the link has none.
    pub opportunity_id: Option<String>,
    /// Fingerprint and JSON of the referral as last synced.
    pub pc_hash: Option<String>,
    /// The referral's JSON as last synced.
    pub pc_snapshot: Option<String>,
    /// Fingerprint and JSON of the opportunity as last synced (or last refused).
    pub crm_hash: Option<String>,
    /// The opportunity's JSON as last synced (or last refused).
    pub crm_snapshot: Option<String>,
    /// The reason of the last failed sync, cleared by a successful one.
    pub last_error: Option<String>,
    /// A write to either service sent and not yet known to have landed (JSON, see
    /// `sync::write_intent`): recorded before the write, cleared when its run saves the result.
    pub pending_write: Option<String>,
}

/// The links of the sync engine, and its referral create intents.
pub trait LinkStore: Send + Sync {
    /// The link of referral `referral_id`, if it has one.
    fn link_by_referral(&self, referral_id: &str) -> Result<Option<Link>>;
    /// The link of opportunity `opportunity_id`, if it has one.
    fn link_by_opportunity(&self, opportunity_id: &str) -> Result<Option<Link>>;
    /// Inserts or updates a link; answers its id.
    fn save_link(&self, link: &Link) -> Result<i64>;
    /// Saves the links whose referral is not linked to an opportunity yet, as
    /// [`save_link`](Self::save_link) does, all in one transaction (one write to disk for many;
    /// the backfill saves its links so). Answers, for each link, the opportunity its referral
    /// was linked to already (then that link was left as it is), or `None` when it was saved.
    fn save_unlinked(&self, links: &[Link]) -> Result<Vec<Option<String>>>;

    /// When cosell began creating the partner referral of `opportunity_id`, if that create
    /// has not been seen to finish (its answer was lost, or the host stopped in between).
    fn referral_intent(&self, opportunity_id: &str) -> Result<Option<i64>>;
    /// Records durably, before the POST, that cosell is about to create the partner referral
    /// of `opportunity_id`; an unfinished earlier intent keeps its time. Answers when the
    /// intent began (milliseconds since the epoch).
    fn begin_referral_intent(&self, opportunity_id: &str, now_ms: i64) -> Result<i64>;
    /// The create of `opportunity_id`'s referral finished: its referral is linked.
    fn end_referral_intent(&self, opportunity_id: &str) -> Result<()>;
}
