//! Delayed messages (`x-delayed-message` exchanges).

use super::snapshot::Exchange;

/// Whether `exchange` holds messages with an `x-delay` header until they are due.
pub fn is_delayed(_exchange: &Exchange) -> bool {
    false
}
