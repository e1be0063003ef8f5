use core::fmt;

const MIB: u64 = 1024 * 1024;

/// Smallest part S3 accepts (except for the last part).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// Most parts one multipart upload may have.
pub const MAX_PART_COUNT: u64 = 10_000;
/// Largest object S3 stores (5 TiB).
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;

/// How a file is cut into multipart parts: every part is `part_size` bytes
/// except the last, which holds the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Size of the file.
    pub total: u64,
    /// Size of every part but the last.
    pub part_size: u64,
    /// Number of parts, 1 to 10,000.
    pub part_count: u32,
}

/// Why a file cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanError {
    /// A multipart upload needs at least one byte.
    Empty,
    /// Over S3's 5 TiB object limit.
    TooLarge {
        /// The size asked for.
        size: u64,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Empty => f.write_str("cannot plan parts for an empty file"),
            PlanError::TooLarge { size } => {
                write!(f, "{size} bytes is over the largest object S3 stores ({MAX_OBJECT_SIZE} bytes)")
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// Plans the parts of a `size`-byte file, starting from the preferred part
/// size (clamped to 5 MiB..=5 GiB). When the preferred size would need more
/// than 10,000 parts, the part size grows (to a whole number of MiB) instead
/// of failing.
pub fn plan_parts(size: u64, preferred_part_size: u64) -> Result<PartPlan, PlanError> {
    if size == 0 {
        return Err(PlanError::Empty);
    }
    if size > MAX_OBJECT_SIZE {
        return Err(PlanError::TooLarge { size });
    }
    let mut part_size = preferred_part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
    if size.div_ceil(part_size) > MAX_PART_COUNT {
        part_size = size.div_ceil(MAX_PART_COUNT).div_ceil(MIB) * MIB;
    }
    let part_count = size.div_ceil(part_size);
    debug_assert!(part_count <= MAX_PART_COUNT && part_size <= MAX_PART_SIZE);
    Ok(PartPlan { total: size, part_size, part_count: part_count as u32 })
}

impl PartPlan {
    /// The byte range `(offset, length)` of part `number` (1-based), or `None`
    /// when there is no such part.
    pub fn part_range(&self, number: u32) -> Option<(u64, u64)> {
        if number == 0 || number > self.part_count {
            return None;
        }
        let offset = u64::from(number - 1) * self.part_size;
        Some((offset, self.part_size.min(self.total - offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_preferred_sizes_are_raised_to_the_s3_minimum() {
        let plan = plan_parts(100 * MIB, MIB).unwrap();
        assert_eq!(plan.part_size, MIN_PART_SIZE);
        assert_eq!(plan.part_count, 20);
    }

    #[test]
    fn huge_files_grow_the_part_size() {
        let plan = plan_parts(MAX_OBJECT_SIZE, 8 * MIB).unwrap();
        assert!(plan.part_count as u64 <= MAX_PART_COUNT);
        assert!(plan.part_size <= MAX_PART_SIZE);
        assert_eq!(plan.part_size % MIB, 0);
        assert_eq!(plan_parts(MAX_OBJECT_SIZE + 1, 8 * MIB), Err(PlanError::TooLarge { size: MAX_OBJECT_SIZE + 1 }));
        assert_eq!(plan_parts(0, 8 * MIB), Err(PlanError::Empty));
    }

    #[test]
    fn last_part_holds_the_rest() {
        let plan = plan_parts(20 * MIB + 3, 8 * MIB).unwrap();
        assert_eq!(plan.part_count, 3);
        assert_eq!(plan.part_range(3), Some((16 * MIB, 4 * MIB + 3)));
        assert_eq!(plan.part_range(0), None);
        assert_eq!(plan.part_range(4), None);
    }

    proptest::proptest! {
        #[test]
        fn plans_cover_the_file_exactly(size in 1u64..=MAX_OBJECT_SIZE, preferred in 0u64..=(6 * 1024 * MIB)) {
            let plan = plan_parts(size, preferred).unwrap();
            proptest::prop_assert!(plan.part_size >= MIN_PART_SIZE && plan.part_size <= MAX_PART_SIZE);
            proptest::prop_assert!(plan.part_count >= 1 && u64::from(plan.part_count) <= MAX_PART_COUNT);
            let (last_offset, last_len) = plan.part_range(plan.part_count).unwrap();
            proptest::prop_assert_eq!(last_offset + last_len, size);
            proptest::prop_assert!(last_len >= 1 && last_len <= plan.part_size);
            // Only a file that does not fit 10,000 parts changes the part size.
            let clamped = preferred.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
            if size.div_ceil(clamped) <= MAX_PART_COUNT {
                proptest::prop_assert_eq!(plan.part_size, clamped);
            }
        }
    }
}
