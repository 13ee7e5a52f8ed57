"""The servers of the egress test world, run inside its network namespace: HTTP (every
response says which Host it saw and which local address answered; /bytes/N sends N bytes;
keep-alive), the same over TLS with a self-signed certificate for several names, a
server-first plain TCP service (an ssh-like banner, then an echo), and a UDP listener that
records what reaches it. Stops by itself after --limit seconds."""

import argparse
import http.server
import os
import socket
import socketserver
import ssl
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/bytes/"):
            size = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            while size > 0:
                n = min(size, len(chunk))
                self.wfile.write(chunk[:n])
                size -= n
            return
        body = ("host=%s local=%s path=%s\n" % (
            self.headers.get("Host"), self.connection.getsockname()[0], self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def banner_service(port):
    listener = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    while True:
        conn, _ = listener.accept()

        def serve(conn=conn):
            with conn:
                conn.sendall(b"SSH-2.0-world\r\n")
                data = conn.recv(1024)
                conn.sendall(b"echo " + data)

        threading.Thread(target=serve, daemon=True).start()


def udp_listener(port, log):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    while True:
        data, peer = sock.recvfrom(2048)
        with open(log, "a") as f:
            f.write("%s %r\n" % (peer[0], data))
        sock.sendto(b"udp-answer", peer)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, required=True)
    parser.add_argument("--https", type=int, required=True)
    parser.add_argument("--banner", type=int, required=True)
    parser.add_argument("--udp", type=int, required=True)
    parser.add_argument("--udp-log", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--limit", type=int, default=120)
    args = parser.parse_args()

    plain = Server(("::", args.http), Handler)
    tls = Server(("::", args.https), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    for target in (plain.serve_forever, tls.serve_forever,
                   lambda: banner_service(args.banner),
                   lambda: udp_listener(args.udp, args.udp_log)):
        threading.Thread(target=target, daemon=True).start()
    print("ready", flush=True)
    time.sleep(args.limit)
    os._exit(0)


if __name__ == "__main__":
    main()
