//! Outbound delivery: the queue. Only its pure building blocks exist yet.
//!
//! # The plan
//!
//! - **Durable records.** A message for a remote recipient is written to
//!   redb's `queue` table in the same committer transaction as any local
//!   deliveries of the same message, so "250 queued" means the message is
//!   on disk for every recipient, local or not.
//! - **Per-recipient state.** Each record keeps, per recipient: pending,
//!   delivered, or failed, with the attempt count, the next attempt time
//!   ([`retry`]) and the last reply. A message leaves the queue when no
//!   recipient is pending; failures are reported in one DSN ([`dsn`]).
//! - **Workers per domain.** Recipients are grouped by domain, one
//!   connection carrying all of a domain's recipients of a message, with a
//!   bound on concurrent connections per domain.
//! - **Routing.** MX resolution (RFC 5321 §5.1) through [`crate::dns`]:
//!   MX hosts in preference order, the domain's A/AAAA when there is no MX,
//!   and an immediate permanent failure for a null MX (RFC 7505). Configured
//!   routes may send a domain, or everything, to a smart host instead.
//! - **The dialogue** is [`crate::smtp::client`], sans-IO like the server
//!   session; its driver will live next to the queue worker.
//!
//! # What exists
//!
//! - [`retry`]: the backoff schedule and the outcome classification
//!   (delivered / retry at / bounce), pure.
//! - [`dsn`]: the RFC 3464 bounce builder, pure.
//!
//! Nothing here does I/O yet; the table, the workers and the routing are
//! still to come.

pub mod dsn;
pub mod retry;
