//! Kernel receive timestamps (`SO_TIMESTAMPNS`) for the sockets whose timing is measured.
//!
//! All simulated clients share one single-threaded runtime on a machine they share with the
//! server, so a probe often reads a datagram a few milliseconds after it arrived. Stamping with
//! the kernel's arrival time keeps that client-side lag out of the server's added latency; the
//! lag itself is reported separately.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;

/// Asks the kernel to attach its arrival time to every datagram the socket receives.
pub fn enable(sock: &impl AsFd) -> io::Result<()> {
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// One datagram read without blocking, with the instant it arrived: the kernel's stamp when
/// there is one (the kernel turns stamping on a moment after the first socket asks for it),
/// otherwise now. Also returns how long it waited in the socket.
pub fn recv(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Instant, Duration)> {
    let mut control = nix::cmsg_space!(TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let source =
        msg.address.as_ref().and_then(socket_addr).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "datagram without a source")
        })?;
    let stamp = msg.cmsgs().ok().and_then(|mut cmsgs| {
        cmsgs.find_map(|c| match c {
            ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
            _ => None,
        })
    });
    let now = Instant::now();
    let waited = stamp.map(waited_since).unwrap_or_default();
    let arrived = now.checked_sub(waited).unwrap_or(now);
    Ok((msg.bytes, source, arrived, waited))
}

/// How long ago (wall clock) the kernel stamped a datagram; zero if the stamp is in the future.
fn waited_since(ts: TimeSpec) -> Duration {
    let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec()).unwrap_or(0);
    let stamped = UNIX_EPOCH + Duration::new(secs, nanos);
    SystemTime::now()
        .duration_since(stamped)
        .unwrap_or(Duration::ZERO)
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_carries_its_arrival_time() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        // The kernel turns receive stamping on a moment after the first socket asks for it
        // (a deferred static key); until then a datagram is stamped when it is read. So try a
        // few times: one datagram must show its real arrival.
        let mut stamped = false;
        for _ in 0..20 {
            let before = Instant::now();
            tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            let (n, source, arrived, waited) = recv(&rx, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(source, tx.local_addr().unwrap());
            assert!(
                arrived + Duration::from_millis(1) >= before,
                "arrived before it was sent"
            );
            if waited >= Duration::from_millis(25) {
                // It arrived right after sending, and then waited ~30 ms to be read.
                assert!(arrived.duration_since(before) < Duration::from_millis(10));
                stamped = true;
                break;
            }
        }
        assert!(stamped, "no datagram carried the kernel's arrival time");
        let empty = recv(&rx, &mut buf).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
    }
}
