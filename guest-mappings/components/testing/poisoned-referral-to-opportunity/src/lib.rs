//! Test guest `poisoned-referral-to-opportunity`: the default `referral-to-opportunity` step
//! (the same `mapping_rules` call, so clean records map byte for byte like the default) that
//! misbehaves only for referrals whose `name` carries a poison marker:
//!
//! | marker in `name` | what `map` does | what the host should report |
//! |---|---|---|
//! | `POISON-LOOP` | spins forever | the fuel limit (or the time limit) |
//! | `POISON-BOMB` | allocates 1 MiB blocks until `memory.grow` fails | the memory limit |
//! | `POISON-TRAP` | panics with `poisoned referral <id>` | a trap with the panic message |
//!
//! It stands for a step that goes bad part-way through a stream: only the marked records may
//! be held back, every other record must keep flowing (`tests/hostile_mappings.rs`).

use core::hint::black_box;
use cosell_mapping::{Context, Mapping, MappingError};

struct PoisonedReferralToOpportunity;

/// The poison a referral carries, read from its `name`. Anything unreadable is not poisoned:
/// the default mapping then rejects it exactly as the real step would.
fn poison(input: &str) -> Option<&'static str> {
    let doc: serde_json::Value = serde_json::from_str(input).ok()?;
    let name = doc.get("name")?.as_str()?;
    ["POISON-LOOP", "POISON-BOMB", "POISON-TRAP"]
        .into_iter()
        .find(|marker| name.contains(marker))
}

fn referral_id(input: &str) -> String {
    serde_json::from_str::<serde_json::Value>(input)
        .ok()
        .and_then(|doc| doc.get("id")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Mapping for PoisonedReferralToOpportunity {
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError> {
        match poison(&input) {
            Some("POISON-LOOP") => {
                // black_box keeps the optimiser from proving the loop has no effect.
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            Some("POISON-BOMB") => {
                // Every block is kept, so memory only grows; the allocator aborts (a trap) when
                // the host's limiter refuses `memory.grow`.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![0xA5u8; 1 << 20]));
                    black_box(&hoard);
                }
            }
            Some(_) => panic!("poisoned referral {}", referral_id(&input)),
            None => cosell_mapping::rules::run(
                mapping_rules::referral_to_opportunity,
                ctx,
                input,
                current,
            ),
        }
    }
}

cosell_mapping::export_mapping!(PoisonedReferralToOpportunity);
