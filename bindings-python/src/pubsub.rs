//! `RedisChannel`: one Redis pub/sub channel over core's `RedisBus`, for the
//! package's `AsyncRedisManager` (python-socketio's manager protocol, one
//! channel of JSON messages). The bus brings what a manager needs and
//! python-socketio's does by hand: reconnection with backoff, resubscription,
//! a bounded buffer for what is published during an outage, pipelined
//! publishes written off the interpreter's lock. This class only moves
//! bytes; the package decodes them (plain data only).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use tidewire::bus::{Bus, BusError, BusMessage, RedisBus, RedisBusConfig};
use tokio::sync::{Mutex, mpsc};

use crate::{ClusterError, InvalidArgument};

/// At most this many messages cross into Python per `receive`.
const BATCH: usize = 256;

fn bus_error(e: BusError) -> PyErr {
    ClusterError::new_err(format!("redis: {e}"))
}

fn seconds(timeout: f64) -> PyResult<Duration> {
    if timeout.is_finite() && timeout >= 0.0 {
        Ok(Duration::from_secs_f64(timeout))
    } else {
        Err(InvalidArgument::new_err("timeout must be a non-negative number of seconds"))
    }
}

/// One pub/sub channel on a Redis server.
#[pyclass(frozen, module = "tidewire._native")]
pub struct RedisChannel {
    bus: Arc<RedisBus>,
    channel: String,
    inbox: Arc<Mutex<mpsc::Receiver<BusMessage>>>,
}

/// What a dropped channel still had to publish goes out first (at most
/// this long), so that an emitter dropped right after its last emit loses
/// nothing.
const DROP_FLUSH: Duration = Duration::from_secs(5);

impl Drop for RedisChannel {
    fn drop(&mut self) {
        let bus = self.bus.clone();
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            bus.flush(DROP_FLUSH).await;
            bus.close();
        });
    }
}

#[pymethods]
impl RedisChannel {
    /// Connects (in the background) to the Redis server at `url`
    /// (`redis://host:port/db`); InvalidArgument for a URL the bus cannot use.
    #[new]
    fn new(py: Python<'_>, url: &str, channel: String) -> PyResult<RedisChannel> {
        if channel.is_empty() {
            return Err(InvalidArgument::new_err("the channel must be a non-empty string"));
        }
        py.detach(|| {
            let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
            let (bus, inbox) = RedisBus::connect(url, RedisBusConfig::default())
                .map_err(|e| InvalidArgument::new_err(format!("{url:?} is not a usable Redis URL: {e}")))?;
            Ok(RedisChannel { bus: Arc::new(bus), channel, inbox: Arc::new(Mutex::new(inbox)) })
        })
    }

    /// The channel's name.
    #[getter]
    fn channel(&self) -> String {
        self.channel.clone()
    }

    /// Subscribes to the channel and waits, at most `timeout` seconds, for
    /// the subscription to be up; an awaitable of whether it is (Redis
    /// being down is not an error: the bus keeps trying).
    fn subscribe<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyAny>> {
        let timeout = seconds(timeout)?;
        let (bus, channel) = (self.bus.clone(), self.channel.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            bus.subscribe(&[channel]).await.map_err(bus_error)?;
            Ok(bus.wait_connected(timeout).await)
        })
    }

    /// Queues `data` for the channel without waiting (in order);
    /// ClusterError when the bus is closed or its outage buffer is full.
    fn publish(&self, data: Vec<u8>) -> PyResult<()> {
        self.bus.publish(&self.channel, Bytes::from(data)).map_err(bus_error)
    }

    /// An awaitable of whether everything published so far was written to
    /// Redis within `timeout` seconds.
    fn flush<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyAny>> {
        let timeout = seconds(timeout)?;
        let bus = self.bus.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(bus.flush(timeout).await) })
    }

    /// `flush` for synchronous callers: blocks (without the interpreter's
    /// lock) at most `timeout` seconds.
    fn flush_blocking(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(timeout)?;
        let bus = self.bus.clone();
        Ok(py.detach(|| pyo3_async_runtimes::tokio::get_runtime().block_on(bus.flush(timeout))))
    }

    /// An awaitable of the next messages of the channel (a list of `bytes`,
    /// at least one), or None once the channel is closed.
    fn receive<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (inbox, channel) = (self.inbox.clone(), self.channel.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let mut inbox = inbox.lock().await;
            let mut batch: Vec<Bytes> = Vec::new();
            while batch.is_empty() {
                let Some(first) = inbox.recv().await else {
                    return Python::attach(|py| Ok(py.None()));
                };
                for message in std::iter::once(first).chain(std::iter::from_fn(|| inbox.try_recv().ok())).take(BATCH) {
                    if message.channel == channel {
                        batch.push(message.payload);
                    }
                }
            }
            drop(inbox);
            Python::attach(|py| {
                let list = PyList::empty(py);
                for payload in batch {
                    list.append(PyBytes::new(py, &payload))?;
                }
                Ok(list.into_any().unbind())
            })
        })
    }

    /// Messages lost because this node did not read them in time.
    #[getter]
    fn dropped_inbound(&self) -> u64 {
        self.bus.dropped_inbound()
    }

    /// Publishes refused because the outage buffer was full.
    #[getter]
    fn dropped_outbound(&self) -> u64 {
        self.bus.dropped_outbound()
    }

    /// Stops the connections; `receive` then gives None.
    fn close(&self) {
        self.bus.close();
    }
}
