//! Just enough SPDY/3.1 (client side) to speak the Kubernetes streaming
//! protocols to a kubelet, plus the two bridges the API server needs:
//! WebSocket `v5`/`v4.channel.k8s.io` ⇄ SPDY `v4.channel.k8s.io` for
//! exec/attach, and the port-forward tunnel (SPDY frames carried in
//! WebSocket binary messages, `SPDY/3.1+portforward.k8s.io`).
//!
//! Header blocks are sent zlib-framed as stored (uncompressed) deflate
//! blocks, each block ended by a sync-flush marker (an empty stored block:
//! without it Go's inflater reads past the frame and fails the next one); header blocks received are never
//! decoded (the client needs nothing from SYN_REPLY), so no dictionary or
//! inflater is needed. The Go SPDY server does no flow control, so neither
//! do we. Invariant: WebSocket messages for one channel keep their order and
//! all output is sent before the closing frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 1;

/// One SPDY frame as read from the wire.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        payload: Bytes,
    },
    Control {
        kind: u16,
        flags: u8,
        payload: Bytes,
    },
}

/// Take one complete frame off the front of `buf`; `None` if incomplete.
pub fn parse(buf: &mut BytesMut) -> Option<Frame> {
    if buf.len() < 8 {
        return None;
    }
    let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
    if buf.len() < 8 + len {
        return None;
    }
    let control = buf[0] & 0x80 != 0;
    let mut head = buf.split_to(8);
    let payload = buf.split_to(len).freeze();
    if control {
        let _version = head.get_u16() & 0x7fff;
        let kind = head.get_u16();
        let flags = head.get_u8();
        Some(Frame::Control {
            kind,
            flags,
            payload,
        })
    } else {
        let stream = head.get_u32() & 0x7fff_ffff;
        let flags = head.get_u8();
        Some(Frame::Data {
            stream,
            fin: flags & FLAG_FIN != 0,
            payload,
        })
    }
}

/// A data frame (payloads over 16 MiB are split by the caller's chunking).
pub fn data_frame(stream: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.put_u32(stream & 0x7fff_ffff);
    out.put_u8(if fin { FLAG_FIN } else { 0 });
    let len = payload.len() as u32;
    out.put_u8((len >> 16) as u8);
    out.put_u16(len as u16);
    out.extend_from_slice(payload);
    out
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u8(flags);
    let len = payload.len() as u32;
    out.put_u8((len >> 16) as u8);
    out.put_u16(len as u16);
    out.extend_from_slice(payload);
    out
}

/// Encodes header blocks as one continuing zlib stream of stored blocks.
#[derive(Default)]
pub struct HeaderEncoder {
    started: bool,
}

impl HeaderEncoder {
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (k, v) in headers {
            raw.put_u32(k.len() as u32);
            raw.extend_from_slice(k.to_ascii_lowercase().as_bytes());
            raw.put_u32(v.len() as u32);
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 16);
        if !self.started {
            // CMF/FLG: deflate, 32K window, no preset dictionary
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        for chunk in raw.chunks(0xffff) {
            let n = chunk.len() as u16;
            out.put_u8(0); // BFINAL=0, BTYPE=00 (stored), padded to the byte
            out.put_u16_le(n);
            out.put_u16_le(!n);
            out.extend_from_slice(chunk);
        }
        // an empty stored block, as a zlib sync flush writes: Go's inflater
        // then hands out the block's bytes without reading past the frame
        out.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        out
    }

    pub fn syn_stream(&mut self, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut p = Vec::new();
        p.put_u32(stream & 0x7fff_ffff);
        p.put_u32(0); // associated stream
        p.put_u8(0); // priority
        p.put_u8(0); // slot
        p.extend_from_slice(&self.encode(headers));
        control_frame(SYN_STREAM, 0, &p)
    }
}

/// Which streams an exec/attach session has (as the kubelet expects them).
#[derive(Clone, Copy, Debug)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// WebSocket channel numbers of the `channel.k8s.io` protocols.
mod ch {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const ERROR: u8 = 3;
    pub const RESIZE: u8 = 4;
    pub const CLOSE: u8 = 255;
}

enum Event {
    Frame(Frame),
    Eof,
}

fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(mut r: R) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            while let Some(f) = parse(&mut buf) {
                tracing::trace!(?f, "spdy frame from kubelet");
                if tx.send(Event::Frame(f)).await.is_err() {
                    return;
                }
            }
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Event::Eof).await;
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    rx
}

/// Write and flush (TLS buffers writes until flushed).
async fn send<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

fn close_normal() -> Message {
    Message::Close(Some(CloseFrame {
        code: 1000,
        reason: "".into(),
    }))
}

/// Bridge a `v5.channel.k8s.io` (or `v4`) WebSocket to an upgraded SPDY
/// `v4.channel.k8s.io` connection to the kubelet, until either side ends.
pub async fn bridge_exec<IO>(ws: WebSocket, upstream: IO, streams: Streams)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (r, mut w) = tokio::io::split(upstream);
    let mut events = spawn_reader(r);
    let (mut ws_tx, mut ws_rx) = ws.split();
    let mut enc = HeaderEncoder::default();
    // stream ids in the order upstream clients create them
    let mut next = 1u32;
    let mut alloc = |want: bool| {
        if want {
            let id = next;
            next += 2;
            Some(id)
        } else {
            None
        }
    };
    let error_id = alloc(true);
    let stdin_id = alloc(streams.stdin);
    let stdout_id = alloc(streams.stdout);
    let stderr_id = alloc(streams.stderr && !streams.tty);
    let resize_id = alloc(streams.tty);
    let mut hello = Vec::new();
    for (id, kind) in [
        (error_id, "error"),
        (stdin_id, "stdin"),
        (stdout_id, "stdout"),
        (stderr_id, "stderr"),
        (resize_id, "resize"),
    ] {
        if let Some(id) = id {
            hello.extend(enc.syn_stream(id, &[("streamtype", kind)]));
        }
    }
    tracing::trace!(bytes = hello.len(), "spdy: creating streams");
    if send(&mut w, &hello).await.is_err() {
        let _ = ws_tx.send(close_normal()).await;
        return;
    }
    let channel_of = |sid: u32| -> Option<u8> {
        if Some(sid) == stdout_id {
            Some(ch::STDOUT)
        } else if Some(sid) == stderr_id {
            Some(ch::STDERR)
        } else if Some(sid) == error_id {
            Some(ch::ERROR)
        } else {
            None
        }
    };
    let mut stdin_open = stdin_id.is_some();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Frame(Frame::Data { stream, payload, .. })) => {
                    if let Some(c) = channel_of(stream)
                        && !payload.is_empty()
                    {
                        let mut m = Vec::with_capacity(payload.len() + 1);
                        m.push(c);
                        m.extend_from_slice(&payload);
                        if ws_tx.send(Message::Binary(m.into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Event::Frame(Frame::Control { kind: PING, payload, .. })) => {
                    if send(&mut w, &control_frame(PING, 0, &payload)).await.is_err() {
                        break;
                    }
                }
                Some(Event::Frame(Frame::Control { kind: GOAWAY, .. })) => break,
                // SYN_REPLY, SETTINGS, HEADERS, WINDOW_UPDATE, RST_STREAM: nothing to do
                Some(Event::Frame(Frame::Control { .. })) => {}
                Some(Event::Eof) | None => break,
            },
            msg = ws_rx.next() => match msg {
                // text frames carry the same bytes (the Python client sends them)
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    let b = m.into_data();
                    let Some((&c, data)) = b.split_first() else { continue };
                    let frame = match c {
                        ch::STDIN if stdin_open => stdin_id.map(|id| data_frame(id, false, data)),
                        ch::RESIZE => resize_id.map(|id| data_frame(id, false, data)),
                        ch::CLOSE if data.first() == Some(&ch::STDIN) && stdin_open => {
                            stdin_open = false;
                            stdin_id.map(|id| data_frame(id, true, &[]))
                        }
                        _ => None,
                    };
                    if let Some(f) = frame
                        && send(&mut w, &f).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = w.shutdown().await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = w.shutdown().await;
    let _ = ws_tx.send(close_normal()).await;
}

/// Carry raw bytes (SPDY frames) between a WebSocket's binary messages and
/// an upgraded connection, both ways, until either side ends.
pub async fn tunnel<IO>(ws: WebSocket, upstream: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(upstream);
    let (mut ws_tx, mut ws_rx) = ws.split();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        let _ = w.shutdown().await;
                        return;
                    }
                }
            },
            msg = ws_rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if send(&mut w, &b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = w.shutdown().await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = w.shutdown().await;
    let _ = ws_tx.send(close_normal()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_frames_round_trip() {
        let f = data_frame(5, true, b"hello");
        assert_eq!(&f[..8], &[0, 0, 0, 5, 1, 0, 0, 5]);
        let mut buf = BytesMut::from(&f[..]);
        buf.extend_from_slice(&f[..3]); // a partial second frame stays
        assert_eq!(
            parse(&mut buf),
            Some(Frame::Data {
                stream: 5,
                fin: true,
                payload: Bytes::from_static(b"hello")
            })
        );
        assert_eq!(parse(&mut buf), None);
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn control_frames() {
        let mut buf = BytesMut::from(&control_frame(PING, 0, &[0, 0, 0, 7])[..]);
        assert_eq!(
            parse(&mut buf),
            Some(Frame::Control {
                kind: PING,
                flags: 0,
                payload: Bytes::from_static(&[0, 0, 0, 7])
            })
        );
    }

    /// The header block is a valid zlib stream (checked with flate2 after
    /// appending a final empty block, which a continuing stream lacks).
    #[test]
    fn header_block_is_zlib() {
        let mut enc = HeaderEncoder::default();
        let mut z = enc.encode(&[("streamType", "error")]);
        z.extend(enc.encode(&[("streamtype", "stdin"), ("port", "80")]));
        z.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        let mut d = flate2::Decompress::new(true);
        let mut out = Vec::with_capacity(256);
        d.decompress_vec(&z, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        let mut want = Vec::new();
        for hs in [
            &[("streamtype", "error")][..],
            &[("streamtype", "stdin"), ("port", "80")],
        ] {
            want.put_u32(hs.len() as u32);
            for (k, v) in hs {
                want.put_u32(k.len() as u32);
                want.extend_from_slice(k.as_bytes());
                want.put_u32(v.len() as u32);
                want.extend_from_slice(v.as_bytes());
            }
        }
        assert_eq!(out, want);
    }
}
