#!/usr/bin/env python3
"""Hostile SFTP clients for tests/hostile.rs, built on paramiko's SSH transport.

Each mode logs in with a key, starts the `sftp` subsystem and then speaks SFTP by hand
(packets are framed here, not by paramiko's SFTPClient), so that it can send what no
well-behaved client sends: oversized packets, thousands of pipelined requests, requests
without ever reading the answers. It prints one JSON object with what it observed.

Usage: sftp_attack.py MODE --port P --key FILE --user U [--bind ADDR] [mode options]
Modes: oversized, handles, tiny-writes, stall. Every mode gives up by itself (--timeout).
"""

import argparse
import json
import socket
import struct
import sys
import time

import paramiko

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_READ, FXP_WRITE = 1, 2, 3, 4, 5, 6
FXP_OPENDIR = 11
FXP_STATUS, FXP_HANDLE, FXP_DATA = 101, 102, 103
FXF_READ, FXF_WRITE, FXF_CREAT, FXF_TRUNC = 0x01, 0x02, 0x08, 0x10


def sftp_str(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def packet(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


class Sftp:
    """A bare SFTP stream over a paramiko channel."""

    def __init__(self, args):
        sock = socket.create_connection(
            ("127.0.0.1", args.port),
            timeout=args.timeout,
            source_address=(args.bind, 0) if args.bind else None,
        )
        self.transport = paramiko.Transport(sock)
        self.transport.start_client(timeout=args.timeout)
        key = paramiko.Ed25519Key.from_private_key_file(args.key)
        self.transport.auth_publickey(args.user, key)
        if not self.transport.is_authenticated():
            raise SystemExit("authentication failed")
        self.chan = self.transport.open_session(timeout=args.timeout)
        self.chan.settimeout(args.timeout)
        self.chan.invoke_subsystem("sftp")
        self.buf = b""
        self.next_id = 1
        self.send(packet(FXP_INIT, struct.pack(">I", 3)))
        kind, _ = self.read_packet()
        if kind != FXP_VERSION:
            raise SystemExit(f"expected VERSION, got {kind}")

    def send(self, data):
        self.chan.sendall(data)

    def request(self, kind, body):
        """A request packet (not sent) and its id."""
        rid = self.next_id
        self.next_id += 1
        return packet(kind, struct.pack(">I", rid) + body), rid

    def read_packet(self):
        """(type, body) of the next packet; None at end of stream."""
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + length:
                    body = self.buf[4 : 4 + length]
                    self.buf = self.buf[4 + length :]
                    return body[0], body[1:]
            chunk = self.chan.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk


def parse_reply(kind, body):
    """(request id, 'handle'|'status'|..., handle or (code, message))."""
    (rid,) = struct.unpack(">I", body[:4])
    if kind == FXP_HANDLE:
        (n,) = struct.unpack(">I", body[4:8])
        return rid, "handle", body[8 : 8 + n]
    if kind == FXP_STATUS:
        code, n = struct.unpack(">II", body[4:12])
        return rid, "status", (code, body[12 : 12 + n].decode(errors="replace"))
    return rid, "other", kind


def pipelined(sftp, requests, window):
    """Sends `requests` (bytes) keeping at most `window` unanswered; returns the replies."""
    replies = []
    sent = 0
    batch = []
    while len(replies) < len(requests):
        while sent < len(requests) and sent - len(replies) < window:
            batch.append(requests[sent])
            sent += 1
        if batch:
            sftp.send(b"".join(batch))
            batch = []
        got = sftp.read_packet()
        if got is None:
            break
        replies.append(parse_reply(*got))
    return replies


def mode_oversized(args):
    sftp = Sftp(args)
    started = time.monotonic()
    # A WRITE whose length field announces more than the server's 256 KiB limit, then
    # the body it announces (the server must not read it as further packets).
    body = bytes([FXP_WRITE]) + b"\x00" * (args.length - 1)
    sent = 0
    try:
        sftp.send(struct.pack(">I", args.length))
        for i in range(0, len(body), 32768):
            sftp.send(body[i : i + 32768])
            sent += len(body[i : i + 32768])
    except (OSError, EOFError, paramiko.SSHException):
        pass
    reply = b""
    try:
        while True:
            chunk = sftp.chan.recv(65536)
            if not chunk:
                break
            reply += chunk
    except socket.timeout:
        pass
    channel_closed_after = time.monotonic() - started
    deadline = time.monotonic() + args.timeout
    while sftp.transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {
        "body_bytes_sent": sent,
        "reply_bytes": len(reply),
        "channel_closed": sftp.chan.closed or sftp.chan.eof_received,
        "channel_closed_after": channel_closed_after,
        "transport_closed": not sftp.transport.is_active(),
        "transport_closed_after": time.monotonic() - started,
    }


def mode_handles(args):
    sftp = Sftp(args)
    started = time.monotonic()
    def open_request():
        if args.kind == "opendir":
            return sftp.request(FXP_OPENDIR, sftp_str(args.path))[0]
        flags = struct.pack(">II", FXF_READ, 0)
        return sftp.request(FXP_OPEN, sftp_str(args.path) + flags)[0]

    reqs = [open_request() for _ in range(args.count)]
    replies = pipelined(sftp, reqs, args.window)
    handles = [h for _, k, h in replies if k == "handle"]
    refusals = {}
    for _, k, v in replies:
        if k == "status":
            key = f"{v[0]}: {v[1]}"
            refusals[key] = refusals.get(key, 0) + 1
    opened_after = time.monotonic() - started
    # Close them all; then one more open must work again.
    closes = [sftp.request(FXP_CLOSE, sftp_str(h))[0] for h in handles]
    closed = pipelined(sftp, closes, args.window)
    closed_ok = sum(1 for _, k, v in closed if k == "status" and v[0] == 0)
    again = pipelined(sftp, [open_request()], 1)
    sftp.transport.close()
    return {
        "replies": len(replies),
        "handles": len(handles),
        "refusals": refusals,
        "seconds": opened_after,
        "closed_ok": closed_ok,
        "reopen": again[0][1] if again else None,
    }


def mode_tiny_writes(args):
    sftp = Sftp(args)
    flags = FXF_WRITE | FXF_CREAT | FXF_TRUNC
    reply = pipelined(
        sftp,
        [sftp.request(FXP_OPEN, sftp_str(args.path) + struct.pack(">II", flags, 0))[0]],
        1,
    )
    if not reply or reply[0][1] != "handle":
        raise SystemExit(f"open failed: {reply}")
    handle = reply[0][2]
    started = time.monotonic()
    ok = failed = 0
    first_error = None
    sent = answered = 0
    window = args.window
    head = struct.pack(">I", len(handle)) + handle
    total = args.count
    if args.abort_after is not None:
        total = min(total, args.abort_after)
    while answered < total:
        batch = []
        while sent < total and sent - answered < window:
            byte = bytes([0x30 + sent % 10])
            batch.append(
                sftp.request(FXP_WRITE, head + struct.pack(">QI", sent, 1) + byte)[0]
            )
            sent += 1
        if batch:
            sftp.send(b"".join(batch))
        try:
            got = sftp.read_packet()
        except socket.timeout:
            raise SystemExit(f"no reply after {sent} writes sent, {answered} answered")
        if got is None:
            break
        _, kind, v = parse_reply(*got)
        answered += 1
        if kind == "status" and v[0] == 0:
            ok += 1
        else:
            failed += 1
            if first_error is None:
                first_error = f"{kind} {v}"
    seconds = time.monotonic() - started
    result = {"sent": sent, "ok": ok, "failed": failed, "first_error": first_error,
              "seconds": seconds}
    if args.abort_after is not None:
        # Vanish without closing the handle: the upload must be discarded.
        sftp.transport.sock.close()
        result["close"] = "aborted"
        return result
    closed = pipelined(sftp, [sftp.request(FXP_CLOSE, sftp_str(handle))[0]], 1)
    result["close"] = closed[0][2] if closed else None
    sftp.transport.close()
    return result


def mode_stall(args):
    """Pipelines big READs and never reads an answer, then just sits there."""
    sftp = Sftp(args)
    reply = pipelined(
        sftp,
        [sftp.request(FXP_OPEN, sftp_str(args.path) + struct.pack(">II", FXF_READ, 0))[0]],
        1,
    )
    if not reply or reply[0][1] != "handle":
        raise SystemExit(f"open failed: {reply}")
    handle = reply[0][2]
    head = struct.pack(">I", len(handle)) + handle
    started = time.monotonic()
    sftp.chan.settimeout(2.0)
    sent = 0
    try:
        while sent < args.count:
            batch = [sftp.request(FXP_READ, head + struct.pack(">QI", 0, 32768))[0]
                     for _ in range(64)]
            sftp.send(b"".join(batch))
            sent += len(batch)
    except (socket.timeout, OSError, EOFError, paramiko.SSHException):
        pass
    blocked_after = time.monotonic() - started
    deadline = time.monotonic() + args.timeout
    while sftp.transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.1)
    return {
        "requests_sent": sent,
        "blocked_after": blocked_after,
        "transport_closed": not sftp.transport.is_active(),
        "transport_closed_after": time.monotonic() - started,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["oversized", "handles", "tiny-writes", "stall"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--bind")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--length", type=int, default=300 * 1024)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--kind", choices=["opendir", "open"], default="opendir")
    ap.add_argument("--path", default="/processed")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--abort-after", type=int)
    args = ap.parse_args()
    modes = {
        "oversized": mode_oversized,
        "handles": mode_handles,
        "tiny-writes": mode_tiny_writes,
        "stall": mode_stall,
    }
    result = modes[args.mode](args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
