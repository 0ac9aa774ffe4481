"""Exit 0 if the DNS server at ADDRESS PORT answers an A record for the API server's Service.

Usage: python3 dns-answers.py ADDRESS PORT. The readiness check of the local cluster's CoreDNS
(dns.sh) and of the real node's (node.sh): ``kubernetes.default`` always exists.
"""

import socket
import struct
import sys

NAME = "kubernetes.default.svc.cluster.local"

query = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in NAME.split(".")) + b"\0"
query += struct.pack(">HH", 1, 1)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(0.5)
    s.sendto(query, (sys.argv[1], int(sys.argv[2])))
    answer = s.recv(512)
sys.exit(0 if struct.unpack(">H", answer[6:8])[0] > 0 else 1)
