//! Engine.IO v4 and Socket.IO v5 codecs. Pure: no I/O, no clocks.
