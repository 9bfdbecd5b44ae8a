//! Exponential backoff with jitter, socket.io-client's (`backo2`): the
//! `n`th delay is `min * 2^n`, moved by up to `jitter` of itself either
//! way, capped at `max`. Pure: the caller supplies the random number.

use std::time::Duration;

/// Reconnection delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
    attempts: u32,
}

impl Backoff {
    /// Delays from `min` doubling up to `max`, with `jitter` in `0..=1`.
    pub fn new(min: Duration, max: Duration, jitter: f64) -> Backoff {
        Backoff { min, max, jitter: jitter.clamp(0.0, 1.0), attempts: 0 }
    }

    /// Attempts made since the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next delay, given a random number `rand` in `0..1`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use tidewire::client::Backoff;
    /// let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_millis(5000), 0.0);
    /// let delays: Vec<u128> = (0..5).map(|_| b.next_delay(0.3).as_millis()).collect();
    /// assert_eq!(delays, [1000, 2000, 4000, 5000, 5000]);
    /// ```
    pub fn next_delay(&mut self, rand: f64) -> Duration {
        let base = self.min.as_secs_f64() * 1000.0 * 2f64.powi(self.attempts.min(62) as i32);
        self.attempts = self.attempts.saturating_add(1);
        let mut ms = base;
        if self.jitter > 0.0 {
            let deviation = (rand * self.jitter * base).floor();
            // backo2: the tenths digit of the same random number picks the side.
            ms = if ((rand * 10.0).floor() as u64) & 1 == 0 { base - deviation } else { base + deviation };
        }
        let max = self.max.as_secs_f64() * 1000.0;
        Duration::from_millis(ms.clamp(0.0, max) as u64)
    }

    /// Back to the first delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 0.0);
        let d: Vec<u64> = (0..6).map(|_| b.next_delay(0.9).as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_the_factor_either_way() {
        let mut lowest = u64::MAX;
        let mut highest = 0;
        for i in 0..1000 {
            let rand = f64::from(i) / 1000.0;
            let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_millis(5000), 0.5);
            let d = b.next_delay(rand).as_millis() as u64;
            assert!((500..=1500).contains(&d), "{rand} gave {d}");
            lowest = lowest.min(d);
            highest = highest.max(d);
        }
        // Both sides are used.
        assert!(lowest < 700 && highest > 1300, "{lowest}..{highest}");
        // The cap holds with jitter too.
        let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_millis(5000), 0.5);
        for _ in 0..10 {
            assert!(b.next_delay(0.95) <= Duration::from_millis(5000));
        }
        // Huge attempt counts neither overflow nor panic.
        let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_millis(5000), 0.5);
        for _ in 0..200 {
            b.next_delay(0.5);
        }
        assert_eq!(b.next_delay(0.0), Duration::from_millis(5000));
    }
}
