//! One DNS-over-TCP connection: 2-byte length-prefixed messages (RFC 1035 §4.2.2,
//! RFC 7766), several queries per connection, closed on idle timeout, malformed input,
//! peer close or server shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::answer::respond_bytes;
use crate::{Transport, ZoneHandle};

pub(crate) struct Connection {
    pub(crate) peer: SocketAddr,
    pub(crate) zone: ZoneHandle,
    pub(crate) idle_timeout: Duration,
    pub(crate) cancel: CancellationToken,
}

impl Connection {
    /// Serves the connection until it ends; never panics on bad input.
    pub(crate) async fn serve(self, mut stream: TcpStream) {
        let peer = self.peer;
        // Best effort: small responses should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let result = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Ok(()),
            result = self.exchange_all(&mut stream) => result,
        };
        if let Err(reason) = result {
            tracing::debug!(%peer, %reason, "closing DNS TCP connection");
        }
    }

    /// Reads queries and writes answers until the peer closes (`Ok`) or something goes
    /// wrong (`Err` with a reason for the log).
    async fn exchange_all(&self, stream: &mut TcpStream) -> Result<(), String> {
        loop {
            let mut prefix = [0u8; 2];
            match timeout(self.idle_timeout, stream.read_exact(&mut prefix)).await {
                Err(_) => return Err("idle timeout".into()),
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(err)) => return Err(format!("read failed: {err}")),
                Ok(Ok(_)) => {}
            }
            let len = usize::from(u16::from_be_bytes(prefix));
            if len == 0 {
                return Err("zero-length message".into());
            }
            let mut message = vec![0u8; len];
            match timeout(self.idle_timeout, stream.read_exact(&mut message)).await {
                Err(_) => return Err("timeout in the middle of a message".into()),
                Ok(Err(err)) => return Err(format!("read failed: {err}")),
                Ok(Ok(_)) => {}
            }
            let Some(response) = respond_bytes(&self.zone, &message, Transport::Tcp, self.peer)
            else {
                return Err("malformed or unexpected message".into());
            };
            let Ok(response_len) = u16::try_from(response.len()) else {
                return Err("response too large".into());
            };
            let mut framed = Vec::with_capacity(response.len() + 2);
            framed.extend_from_slice(&response_len.to_be_bytes());
            framed.extend_from_slice(&response);
            match timeout(self.idle_timeout, stream.write_all(&framed)).await {
                Err(_) => return Err("write timeout".into()),
                Ok(Err(err)) => return Err(format!("write failed: {err}")),
                Ok(Ok(())) => {}
            }
        }
    }
}
