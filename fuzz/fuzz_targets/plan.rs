//! The part planner on arbitrary sizes: parts cover the file exactly, within S3's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upload_core::{MAX_PART_COUNT, MAX_PART_SIZE, MIN_PART_SIZE, plan_parts};

fuzz_target!(|input: (u64, u64, u32)| {
    let (size, preferred, probe) = input;
    if let Ok(plan) = plan_parts(size, preferred) {
        assert!(plan.part_size >= MIN_PART_SIZE && plan.part_size <= MAX_PART_SIZE);
        assert!(plan.part_count >= 1 && u64::from(plan.part_count) <= MAX_PART_COUNT);
        let (offset, len) = plan.part_range(plan.part_count).unwrap();
        assert_eq!(offset + len, size);
        if let Some((offset, len)) = plan.part_range(probe) {
            assert!(len >= 1 && offset + len <= size);
        }
    }
});
