//! Connection throttling, in the order the accept loop applies it (a refused connection is
//! closed before the server's banner, so it costs no key exchange):
//! 1. a token bucket per source ([`CONNECTION_BURST`] connections at once, then
//!    [`CONNECTION_RATE_PER_SEC`] per second; ssh-audit's DHEat test wants fewer than 20 per
//!    second). A source is an IPv4 address or an IPv6 /64;
//! 2. at most `max_connections_per_ip` concurrent connections per IP address, at most
//!    [`MAX_UNAUTHENTICATED_PER_SOURCE`] of them not logged in yet, and
//!    [`MAX_CONNECTIONS_TOTAL`] in all.
//!
//! Both are per address: a flood from one address also locks out honest users behind that
//! same address (e.g. a shared NAT) while it lasts; users at other addresses still get in
//! (short of the total cap). Refusals are logged once and then summarised at most every
//! [`REFUSAL_LOG_INTERVAL`], so a flood cannot flood the log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Cap on concurrent connections from all addresses together.
pub const MAX_CONNECTIONS_TOTAL: usize = 256;
/// Connections one source may have open before they log in. A connection holds its place
/// from its accept until its login or its `auth_deadline`: at the per-source cap alone,
/// 32 sources sending nothing held all [`MAX_CONNECTIONS_TOTAL`] places, and no HR system
/// got in; at this cap it takes 64.
pub const MAX_UNAUTHENTICATED_PER_SOURCE: usize = 4;
/// New connections one source may open per second on average (the token bucket's refill);
/// ssh-audit flags a server that accepts 20 or more per second (DHEat, CVE-2002-20001).
pub const CONNECTION_RATE_PER_SEC: u32 = 10;
/// New connections one source may open at once before the rate applies (the bucket's size).
pub const CONNECTION_BURST: u32 = 10;
/// Sources remembered by the rate limiter; bounded so a flood cannot grow memory.
const RATE_TABLE_MAX: usize = 8192;
/// Refused connections are logged once, then counted and summarised at most this often.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Per-source token buckets: each new connection takes a token; a source starts with
/// `burst` tokens and gets `rate` more per second, up to `burst`. A connection finding no
/// token is refused (and takes none), so a source that keeps hammering still gets in at
/// `rate` per second and no faster.
pub(super) struct RateLimiter {
    /// Bucket size, in nano-tokens (exact integer arithmetic).
    burst: u64,
    /// Nano-tokens added per nanosecond, i.e. tokens per second.
    rate: u64,
    buckets: HashMap<IpAddr, Bucket>,
}

struct Bucket {
    nano_tokens: u64,
    last: Instant,
}

/// One token in the limiter's fixed-point unit.
const TOKEN: u64 = 1_000_000_000;

impl RateLimiter {
    pub(super) fn new(burst: u32, rate_per_sec: u32) -> RateLimiter {
        RateLimiter {
            burst: u64::from(burst.max(1)) * TOKEN,
            rate: u64::from(rate_per_sec.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether a new connection from `ip` may proceed at `now`; takes a token if so.
    pub(super) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = crate::util::source_key(ip);
        if self.buckets.len() >= RATE_TABLE_MAX && !self.buckets.contains_key(&key) {
            // Buckets that have refilled completely carry no information: forget them.
            // If a flood from that many sources leaves none, start afresh (fail open,
            // like the back-off table) rather than refuse every new source.
            let refill = Duration::from_nanos(self.burst / self.rate);
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < refill);
            if self.buckets.len() >= RATE_TABLE_MAX {
                self.buckets.clear();
            }
        }
        let (burst, rate) = (self.burst, self.rate);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            nano_tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_nanos();
        let added = u64::try_from(elapsed.saturating_mul(u128::from(rate))).unwrap_or(u64::MAX);
        bucket.nano_tokens = bucket.nano_tokens.saturating_add(added).min(burst);
        bucket.last = now;
        if bucket.nano_tokens >= TOKEN {
            bucket.nano_tokens -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// Why a connection was closed before the banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The source's token bucket was empty.
    Rate,
    /// The address already has `max_connections_per_ip` connections.
    PerIpCap,
    /// The server already has [`MAX_CONNECTIONS_TOTAL`] connections.
    TotalCap,
    /// The source has [`MAX_UNAUTHENTICATED_PER_SOURCE`] connections not logged in yet.
    Unauthenticated,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Rate => "connection rate limit",
            Refusal::PerIpCap => "too many connections from this address",
            Refusal::TotalCap => "too many connections",
            Refusal::Unauthenticated => "too many connections from this address not logged in",
        }
    }
}

/// Logs refused connections without letting a flood flood the log: the first refusal
/// after a quiet spell is logged at once, later ones are counted and summarised in one
/// line per [`REFUSAL_LOG_INTERVAL`] while they go on.
#[derive(Default)]
pub(super) struct RefusalLog {
    /// While set and in the future, refusals are only counted.
    quiet_until: Option<Instant>,
    rate: u64,
    per_ip: u64,
    total: u64,
    last_peer: Option<SocketAddr>,
}

impl RefusalLog {
    pub(super) fn record(&mut self, refusal: Refusal, peer: SocketAddr, now: Instant) {
        if self.quiet_until.is_some_and(|t| now < t) {
            match refusal {
                Refusal::Rate => self.rate += 1,
                Refusal::PerIpCap | Refusal::Unauthenticated => self.per_ip += 1,
                Refusal::TotalCap => self.total += 1,
            }
            self.last_peer = Some(peer);
            return;
        }
        self.summarise(now);
        tracing::warn!(peer = %peer, reason = refusal.as_str(),
            "SFTP connection refused; further refusals are counted and logged every {} s",
            REFUSAL_LOG_INTERVAL.as_secs());
        self.quiet_until = Some(now + REFUSAL_LOG_INTERVAL);
    }

    /// When the pending summary is due, if refusals were counted.
    pub(super) fn summary_due(&self) -> Option<Instant> {
        if self.rate + self.per_ip + self.total > 0 {
            self.quiet_until
        } else {
            None
        }
    }

    /// Logs the counted refusals, if any, and starts a new interval.
    pub(super) fn summarise(&mut self, now: Instant) {
        let count = self.rate + self.per_ip + self.total;
        if count == 0 {
            self.quiet_until = None;
            return;
        }
        tracing::warn!(refused = count, rate_limited = self.rate,
            over_per_ip_cap = self.per_ip, over_total_cap = self.total,
            last_peer = %self.last_peer.map(|p| p.to_string()).unwrap_or_default(),
            "SFTP connections refused since the last report");
        self.rate = 0;
        self.per_ip = 0;
        self.total = 0;
        self.last_peer = None;
        self.quiet_until = Some(now + REFUSAL_LOG_INTERVAL);
    }
}

/// Live connection counts, per address and in total, under the per-IP and total caps.
pub(super) struct ConnSlots {
    max_per_ip: usize,
    table: Mutex<SlotTable>,
}

#[derive(Default)]
struct SlotTable {
    /// Each source's live connections, by whether each has logged in (its flag).
    per_ip: HashMap<IpAddr, Vec<Arc<AtomicBool>>>,
    total: usize,
}

impl ConnSlots {
    /// No connection yet; at most `max_per_ip` from one address.
    pub(super) fn new(max_per_ip: usize) -> ConnSlots {
        ConnSlots {
            max_per_ip,
            table: Mutex::new(SlotTable::default()),
        }
    }

    /// A place for a new connection from `ip`, whose `authed` flag is set once it logs in;
    /// or why there is none.
    pub(super) fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        authed: &Arc<AtomicBool>,
    ) -> Result<ConnSlot, Refusal> {
        // Counted by source as the rate is ([`crate::util::source_key`]): one IPv6 host has a /64 of
        // addresses, each of which had its own cap, and together more than the total.
        let ip = crate::util::source_key(ip);
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let live = table.per_ip.get(&ip).map_or(&[][..], Vec::as_slice);
        if live.len() >= self.max_per_ip {
            return Err(Refusal::PerIpCap);
        }
        let waiting = live.iter().filter(|a| !a.load(Ordering::Acquire)).count();
        if waiting >= MAX_UNAUTHENTICATED_PER_SOURCE {
            return Err(Refusal::Unauthenticated);
        }
        if table.total >= MAX_CONNECTIONS_TOTAL {
            return Err(Refusal::TotalCap);
        }
        table.per_ip.entry(ip).or_default().push(authed.clone());
        table.total += 1;
        Ok(ConnSlot {
            slots: self.clone(),
            ip,
            authed: authed.clone(),
        })
    }
}

/// A connection's place in the [`ConnSlots`], given back on drop.
pub(super) struct ConnSlot {
    slots: Arc<ConnSlots>,
    ip: IpAddr,
    authed: Arc<AtomicBool>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut table = self.slots.table.lock().unwrap_or_else(|p| p.into_inner());
        table.total = table.total.saturating_sub(1);
        if let Some(live) = table.per_ip.get_mut(&self.ip) {
            if let Some(at) = live.iter().position(|a| Arc::ptr_eq(a, &self.authed)) {
                live.swap_remove(at);
            }
            if live.is_empty() {
                table.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot for a connection already logged in.
    fn logged_in(slots: &Arc<ConnSlots>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        slots.acquire(ip, &Arc::new(AtomicBool::new(true)))
    }

    #[test]
    fn per_ip_slots_are_capped_and_released() {
        let slots = Arc::new(ConnSlots::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = logged_in(&slots, a).ok().unwrap();
        let _s2 = logged_in(&slots, mapped).ok().unwrap();
        assert_eq!(logged_in(&slots, a).err(), Some(Refusal::PerIpCap));
        assert!(logged_in(&slots, b).is_ok());
        drop(s1);
        assert!(logged_in(&slots, a).is_ok());
        // One IPv6 /64 is one source: its addresses share the cap.
        let v6 =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        let _v1 = logged_in(&slots, v6(1)).ok().unwrap();
        let _v2 = logged_in(&slots, v6(2)).ok().unwrap();
        assert_eq!(logged_in(&slots, v6(3)).err(), Some(Refusal::PerIpCap));
        let other: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert!(logged_in(&slots, other).is_ok());
    }

    /// A source holds at most [`MAX_UNAUTHENTICATED_PER_SOURCE`] connections that have not
    /// logged in (32 sources sending nothing had held every place of the server); one that
    /// logs in frees its place among them, and the total cap counts every connection.
    #[test]
    fn connections_not_logged_in_are_capped_per_source() {
        let slots = Arc::new(ConnSlots::new(8));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let waiting = || Arc::new(AtomicBool::new(false));
        let flags: Vec<Arc<AtomicBool>> = (0..MAX_UNAUTHENTICATED_PER_SOURCE)
            .map(|_| waiting())
            .collect();
        let held: Vec<ConnSlot> = flags
            .iter()
            .map(|f| slots.acquire(a, f).ok().unwrap())
            .collect();
        assert_eq!(
            slots.acquire(a, &waiting()).err(),
            Some(Refusal::Unauthenticated)
        );
        assert!(slots.acquire(b, &waiting()).is_ok(), "another source");
        flags[0].store(true, Ordering::Release);
        let fifth = slots.acquire(a, &waiting()).ok().unwrap();
        assert_eq!(
            slots.table.lock().unwrap().total,
            MAX_UNAUTHENTICATED_PER_SOURCE + 1
        );
        drop(held);
        drop(fifth);
        assert_eq!(slots.table.lock().unwrap().total, 0);
        assert!(slots.table.lock().unwrap().per_ip.is_empty());
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_the_refill_rate() {
        let mut limiter = RateLimiter::new(10, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let allowed = (0..50).filter(|_| limiter.allow(a, t0)).count();
        assert_eq!(allowed, 10, "burst");
        // Another address has its own bucket.
        assert!(limiter.allow(b, t0));
        // 10 per second afterwards: 100 attempts spread over one second get 10 through.
        let allowed = (1..=100)
            .filter(|i| limiter.allow(a, t0 + Duration::from_millis(10 * i)))
            .count();
        assert_eq!(allowed, 10, "refill");
        // After a quiet second the full burst is back, and never more.
        let t2 = t0 + Duration::from_secs(5);
        let allowed = (0..50).filter(|_| limiter.allow(a, t2)).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn rate_limiter_keys_ipv6_by_64_and_mapped_ipv4_as_ipv4() {
        let mut limiter = RateLimiter::new(2, 1);
        let t = Instant::now();
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.allow(first, t));
        assert!(limiter.allow(same_64, t));
        assert!(!limiter.allow(first, t));
        assert!(limiter.allow(other_64, t));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(limiter.allow(v4, t));
        assert!(limiter.allow(mapped, t));
        assert!(!limiter.allow(v4, t));
    }

    #[test]
    fn rate_limiter_table_is_bounded() {
        let mut limiter = RateLimiter::new(10, 10);
        let t = Instant::now();
        for i in 0..(RATE_TABLE_MAX as u32 * 2) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(limiter.allow(ip, t));
            assert!(limiter.buckets.len() <= RATE_TABLE_MAX);
        }
        // Refilled buckets are forgotten first.
        let later = t + Duration::from_secs(2);
        assert!(limiter.allow("192.0.2.1".parse().unwrap(), later));
        assert_eq!(limiter.buckets.len(), 1);
    }

    #[test]
    fn refusal_log_counts_during_the_interval() {
        let mut log = RefusalLog::default();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let t = Instant::now();
        log.record(Refusal::Rate, peer, t); // logged at once
        assert_eq!(log.summary_due(), None);
        for i in 0..500 {
            let r = if i % 2 == 0 {
                Refusal::Rate
            } else {
                Refusal::PerIpCap
            };
            log.record(r, peer, t + Duration::from_millis(i));
        }
        assert_eq!((log.rate, log.per_ip), (250, 250));
        assert_eq!(log.summary_due(), Some(t + REFUSAL_LOG_INTERVAL));
        log.summarise(t + REFUSAL_LOG_INTERVAL);
        assert_eq!(log.summary_due(), None);
        assert_eq!(log.rate + log.per_ip + log.total, 0);
        // A quiet interval later, the next refusal is logged at once again.
        log.summarise(t + REFUSAL_LOG_INTERVAL * 2);
        assert_eq!(log.quiet_until, None);
    }
}
