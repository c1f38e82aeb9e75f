//! Table tests: request bytes to parse outcomes, reply helpers to bytes.

use super::*;
