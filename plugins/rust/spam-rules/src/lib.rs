//! spam-rules (in progress)
