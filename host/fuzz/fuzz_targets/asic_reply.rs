//! Feeds arbitrary bytes to the BM13xx reply parser in arbitrary chunk
//! sizes: it must never panic, never hold more than one reply's worth of
//! state, and parse the same replies however the stream is chunked.
#![no_main]

use hashwatt_asic::protocol::{ParseEvent, ReplyParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // First byte picks the chunking; the rest is the stream.
    let (seed, stream) = (data[0], &data[1..]);
    let mut whole = ReplyParser::new();
    let mut all = Vec::new();
    whole.push(stream, &mut all);

    let mut chunked = ReplyParser::new();
    let mut parts = Vec::new();
    let mut rest = stream;
    let mut i = 0usize;
    while !rest.is_empty() {
        let size = 1 + (usize::from(seed.rotate_left(i as u32 % 8)) % 23);
        let n = size.min(rest.len());
        chunked.push(&rest[..n], &mut parts);
        rest = &rest[n..];
        i += 1;
    }
    assert!(whole.pending() < 11 && chunked.pending() < 11);
    let replies = |v: &[ParseEvent]| -> Vec<ParseEvent> {
        v.iter()
            .filter(|e| !matches!(e, ParseEvent::Garbage { .. }))
            .copied()
            .collect()
    };
    assert_eq!(replies(&all), replies(&parts));
});
