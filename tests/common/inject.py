#!/usr/bin/env python3
"""Forged-reply injector for rzmap's lab tests. Runs ONLY inside a lab's net namespace
(`ip netns exec <lab>-net python3 inject.py ...`): it opens an AF_PACKET socket on the net side
of the lab's veth pair, whose only peer is the lab's scanner namespace.

For every probe the scanner sends to one of the listed target addresses (hosts the lab keeps
silent, so they never answer by themselves), it sends back:
- forged replies a correct scanner must reject (counted in "forged"):
  tcp mode: SYN-ACK with ack = seq+2; SYN-ACK from a source port that is not scanned;
            SYN-ACK to the wrong destination port; RST with ack = seq+5;
  icmp mode: echo reply with the id flipped; echo reply with the seq flipped;
- one genuine ICMP error from a "router" (the --router address, not the target) quoting the
  probe (counted in "genuine"): destination unreachable / communication administratively
  prohibited (tcp mode) or time exceeded (icmp mode). A correct scanner reports it with
  saddr = the target and icmp_responder = the router.

It stops after --seconds, or on SIGTERM/SIGINT, and then prints one JSON line of counts.
Prints "ready" once the socket is bound.
"""
import argparse
import json
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip_header(src, dst, proto, payload_len, ident=0x4242):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0, 64, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]


def tcp_segment(src, dst, sport, dport, seq, ack, flags):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr))
    c = csum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def icmp_message(typ, code, rest, body):
    m = struct.pack("!BBH", typ, code, 0) + rest + body
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--mode", choices=["tcp", "icmp"], required=True)
    ap.add_argument("--targets", required=True, help="file with one address per line")
    ap.add_argument("--router", required=True)
    ap.add_argument("--scanner-mac", required=True)
    ap.add_argument("--seconds", type=float, default=30.0)
    a = ap.parse_args()

    targets = set()
    with open(a.targets) as f:
        for line in f:
            line = line.strip()
            if line:
                targets.add(socket.inet_aton(line))
    router = socket.inet_aton(a.router)
    scanner_mac = bytes.fromhex(a.scanner_mac.replace(":", ""))

    stop = [False]

    def on_signal(_sig, _frm):
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((a.iface, ETH_P_ALL))
    # SO_RCVBUFFORCE (root): a deep queue, so a descheduled injector misses no probe.
    s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
    our_mac = s.getsockname()[4][:6]
    print("ready", flush=True)

    counts = {"probes_seen": 0, "forged": 0, "genuine": 0, "targets": []}
    answered = set()
    deadline = time.monotonic() + a.seconds

    def send_ip(src, dst, proto, payload):
        frame = scanner_mac + our_mac + b"\x08\x00" + ip_header(src, dst, proto, len(payload))
        s.send(frame + payload)

    while not stop[0] and time.monotonic() < deadline:
        try:
            r, _, _ = select.select([s], [], [], 0.1)
        except InterruptedError:
            continue
        if not r:
            continue
        try:
            frame, addr = s.recvfrom(65535)
        except InterruptedError:
            continue
        if addr[2] == PACKET_OUTGOING or len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[0] >> 4 != 4 or ihl < 20 or len(ip) < ihl + 8:
            continue
        proto = ip[9]
        src, dst = ip[12:16], ip[16:20]
        if dst not in targets:
            continue
        l4 = ip[ihl:]
        quote = ip[: ihl + 8]
        if a.mode == "tcp" and proto == 6 and len(l4) >= 20:
            sport, dport, seq = struct.unpack("!HHI", l4[:8])
            flags = l4[13]
            if flags & 0x12 != 0x02:  # a SYN without ACK
                continue
            counts["probes_seen"] += 1
            ok_ack = (seq + 1) & 0xFFFFFFFF
            wrong_dport = sport + 1 if sport < 65535 else sport - 1
            wrong_sport = dport + 1 if dport < 65535 else dport - 1
            for seg in (
                tcp_segment(dst, src, dport, sport, 7, (seq + 2) & 0xFFFFFFFF, 0x12),
                tcp_segment(dst, src, wrong_sport, sport, 7, ok_ack, 0x12),
                tcp_segment(dst, src, dport, wrong_dport, 7, ok_ack, 0x12),
                tcp_segment(dst, src, dport, sport, 0, (seq + 5) & 0xFFFFFFFF, 0x14),
            ):
                send_ip(dst, src, 6, seg)
                counts["forged"] += 1
            send_ip(router, src, 1, icmp_message(3, 13, b"\0\0\0\0", quote))
            counts["genuine"] += 1
        elif a.mode == "icmp" and proto == 1 and l4[0] == 8:
            counts["probes_seen"] += 1
            ident, seq = struct.unpack("!HH", l4[4:8])
            body = l4[8:]
            for rest in (
                struct.pack("!HH", ident ^ 1, seq),
                struct.pack("!HH", ident, seq ^ 1),
            ):
                send_ip(dst, src, 1, icmp_message(0, 0, rest, body))
                counts["forged"] += 1
            send_ip(router, src, 1, icmp_message(11, 0, b"\0\0\0\0", quote))
            counts["genuine"] += 1
        else:
            continue
        answered.add(socket.inet_ntoa(dst))

    counts["targets"] = sorted(answered)
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
