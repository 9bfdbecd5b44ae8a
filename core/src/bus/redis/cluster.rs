//! Redis Cluster: a channel's subscribers are counted on every node, since each node counts only its own.

use super::{Shared, backend};
use crate::bus::BusError;

impl Shared {
    /// The subscribers of `channel` over every node of the cluster.
    pub(super) async fn cluster_numsub(&self, channel: &str) -> Result<usize, BusError> {
        let mut c = self.commands().await?;
        let nodes: String = match redis::cmd("CLUSTER").arg("NODES").query_async(&mut c).await {
            Ok(text) => text,
            Err(e) => {
                self.forget_commands().await;
                return Err(backend(&e));
            }
        };
        let mut total = 0;
        let mut connections = self.node_connections.lock().await;
        let live = cluster_nodes(&nodes);
        connections.retain(|addr, _| live.iter().any(|(host, port)| format!("{host}:{port}") == *addr));
        for (host, port) in live {
            let key = format!("{host}:{port}");
            let conn = match connections.get(&key) {
                Some(conn) => conn.clone(),
                None => {
                    let info =
                        self.client().get_connection_info().clone().set_addr(node_addr(self.client(), host, port));
                    let conn = redis::Client::open(info)
                        .map_err(|e| backend(&e))?
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(|e| backend(&e))?;
                    connections.insert(key.clone(), conn.clone());
                    conn
                }
            };
            let mut conn = conn;
            match self.numsub(&mut conn, channel).await {
                Ok(n) => total += n,
                Err(e) => {
                    connections.remove(&key);
                    return Err(backend(&e));
                }
            }
        }
        Ok(total)
    }
}

/// The address of every live node in a `CLUSTER NODES` answer (lines of
/// `id host:port@cport[,hostname] flags master ping pong epoch link slots...`):
/// masters and replicas alike, since a subscriber may be connected to
/// either; nodes flagged `fail`, `noaddr` or `handshake`, or whose link is
/// down, are skipped.
fn cluster_nodes(text: &str) -> Vec<(&str, u16)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, flags, link) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
            let down = flags.split(',').any(|f| matches!(f, "fail" | "fail?" | "noaddr" | "handshake"));
            if down || *link != "connected" {
                return None;
            }
            let host_port = addr.split(['@', ',']).next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host, port.parse().ok()?))
        })
        .collect()
}

/// `host:port` with the seed's kind of connection (plain or TLS).
fn node_addr(seed: &redis::Client, host: &str, port: u16) -> redis::ConnectionAddr {
    match seed.get_connection_info().addr() {
        redis::ConnectionAddr::TcpTls { insecure, tls_params, .. } => redis::ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => redis::ConnectionAddr::Tcp(host.to_owned(), port),
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_nodes;

    #[test]
    fn cluster_nodes_lists_live_masters_and_replicas() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,node-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(cluster_nodes(text), vec![("127.0.0.1", 30004), ("127.0.0.1", 30002), ("127.0.0.1", 30001)]);
    }
}
