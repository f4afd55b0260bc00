"""A DNS server on 127.x.y.z:53 that answers slowly: A queries for the names it knows get their
address after `delay` seconds, AAAA queries an empty answer, other names NXDOMAIN (after the
same delay). With resolv_conf() bind-mounted over /etc/resolv.conf in a mount namespace of its
own (wrapper()), one process resolves through it and nothing else on the machine notices."""

import os
import random
import socket
import struct
import threading

A, AAAA, IN = 1, 28, 1


def _question(packet):
    """(qname, qtype, end offset of the question) of a query."""
    labels, i = [], 12
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    qtype, _ = struct.unpack("!HH", packet[i + 1:i + 5])
    return ".".join(labels), qtype, i + 5


class SlowDns:
    def __init__(self, workdir, names, delay):
        self.names = {k.lower(): v for k, v in names.items()}
        self.delay = delay
        self.queries = []  # (name, qtype)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            self.addr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
            try:
                self.sock.bind((self.addr, 53))
                break
            except OSError:
                continue
        else:
            raise OSError("no free 127.x.y.z:53 for the test DNS server")
        self.resolv_conf = os.path.join(workdir, "resolv.conf")
        with open(self.resolv_conf, "w") as f:
            # One try, no fallback to another server: the delay is the whole lookup time.
            f.write(f"nameserver {self.addr}\noptions timeout:30 attempts:1\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def wrapper(self):
        """argv prefix that runs a command in a mount namespace resolving through this server."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/resolv.conf && exec "$@"', self.resolv_conf]

    def _answer(self, packet, peer):
        name, qtype, end = _question(packet)
        self.queries.append((name, qtype))
        (qid,) = struct.unpack("!H", packet[:2])
        address = self.names.get(name)
        if address is None:
            flags, answers = 0x8183, b""  # NXDOMAIN
        elif qtype == A:
            flags = 0x8180
            answers = struct.pack("!HHHIH", 0xC00C, A, IN, 0, 4) + socket.inet_aton(address)
        else:
            flags, answers = 0x8180, b""
        header = struct.pack("!HHHHHH", qid, flags, 1, 1 if answers else 0, 0, 0)
        if not self._stop.wait(self.delay):
            self.sock.sendto(header + packet[12:end] + answers, peer)

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                packet, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(packet, peer), daemon=True).start()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
