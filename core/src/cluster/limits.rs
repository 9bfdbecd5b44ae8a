//! Cluster-wide limits: connection caps per user and per address, and the
//! events of a user, kept by the bus.

use std::sync::Arc;
use std::time::Duration;

use super::Cluster;

impl Cluster {
    /// Whether cluster-wide connection caps are on.
    pub(crate) fn has_caps(&self) -> bool {
        self.config.max_conn_per_user.is_some() || self.config.max_conn_per_ip.is_some()
    }

    pub(super) fn caps_scope(&self) -> String {
        format!("{}-tidewire#caps", self.config.prefix)
    }

    /// Whether the cluster-wide per-user rate is on.
    pub(crate) fn has_user_rate(&self) -> bool {
        self.config.user_rate.is_some()
    }

    /// Counts one event of `user` against the cluster-wide rate: `None`
    /// when allowed, or how long until it would be. A bus that cannot
    /// answer allows (this node's own limits still apply).
    pub(crate) async fn check_user_rate(&self, user: &str) -> Option<Duration> {
        let rate = self.config.user_rate?;
        match self.bus.rate(&self.caps_scope(), &format!("user#{user}"), rate.interval(), rate.burst).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, "cluster rate: not checked, allowing");
                None
            }
        }
    }

    /// Keeps this node's units of the cluster-wide caps counting.
    pub(super) async fn renew_lease(&self) {
        if !self.has_caps() {
            return;
        }
        if let Err(e) = self.bus.renew(&self.caps_scope(), &self.uid, self.config.heartbeat_interval * 3).await {
            tracing::warn!(error = %e, "cluster caps: lease not renewed");
        }
    }

    /// Takes the cluster-wide units a connection needs: one for `user` and
    /// one for `ip`, except those in `held`, which gets the new ones.
    /// `Err` names the cap that refused. A bus that cannot answer admits
    /// (each node's own caps still apply) and says so in the log.
    pub(crate) async fn acquire_caps(
        &self,
        user: Option<&str>,
        ip: std::net::IpAddr,
        held: &mut Vec<String>,
    ) -> Result<(), crate::limits::ConnectionRefused> {
        let scope = self.caps_scope();
        let wanted = [
            (self.config.max_conn_per_user.zip(user).map(|(cap, u)| (cap, format!("user#{u}"))), true),
            (self.config.max_conn_per_ip.map(|cap| (cap, format!("ip#{ip}"))), false),
        ];
        for (entry, per_user) in wanted {
            let Some((cap, key)) = entry else { continue };
            if held.contains(&key) {
                continue;
            }
            match self.bus.acquire(&scope, &key, &self.uid, u64::from(cap)).await {
                Ok(true) => held.push(key),
                Ok(false) => {
                    return Err(if per_user {
                        crate::limits::ConnectionRefused::PerUser
                    } else {
                        crate::limits::ConnectionRefused::PerIp
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cluster caps: not checked, admitting"),
            }
        }
        Ok(())
    }

    /// Gives back a closed connection's units.
    pub(crate) fn release_caps(self: &Arc<Self>, held: Vec<String>) {
        if held.is_empty() {
            return;
        }
        let cluster = self.clone();
        tokio::spawn(async move {
            let scope = cluster.caps_scope();
            for key in held {
                if let Err(e) = cluster.bus.release(&scope, &key, &cluster.uid).await {
                    tracing::warn!(error = %e, key, "cluster caps: unit not given back (it expires with this node's lease)");
                }
            }
        });
    }
}
