//! Fresh identifiers. A new id is no concern of a connection: the engine names the rows it
//! creates before the first attempt (so a create whose answer is lost is found, not repeated),
//! the backfill names its accounts, contacts and opportunities, and the clients stamp each
//! request; all of them draw the same random UUIDs from here.

use rand::Rng as _;

/// A new random (version 4) UUID, the form Dataverse row ids, `MS-RequestId` and
/// `MS-CorrelationId` take.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4() {
        let id = new_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_uuid());
    }
}
