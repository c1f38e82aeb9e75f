//! tokio listeners, one task per connection, stats and shutdown.

pub mod stats;
