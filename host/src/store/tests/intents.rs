//! Referral create intents on every backend.

use crate::store::testing::store_tests;

store_tests! {
fn an_unfinished_intent_keeps_its_first_time_until_it_ends(store) {
    assert_eq!(store.referral_intent("o1").unwrap(), None);
    assert_eq!(store.begin_referral_intent("o1", 1_000).unwrap(), 1_000);
    assert_eq!(store.begin_referral_intent("o1", 5_000).unwrap(), 1_000);
    assert_eq!(store.referral_intent("o1").unwrap(), Some(1_000));
    store.end_referral_intent("o1").unwrap();
    assert_eq!(store.referral_intent("o1").unwrap(), None);
    assert_eq!(store.begin_referral_intent("o1", 7_000).unwrap(), 7_000);
}
}
