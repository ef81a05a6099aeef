#!/usr/bin/env python3
"""envelopd client over the Unix socket, Python standard library only.

  ENVELOPD_SOCKET=/run/envelopd/envelopd.sock python3 envelopd_client.py encrypt TENANT IN OUT
  python3 envelopd_client.py decrypt IN OUT
  python3 envelopd_client.py datakey TENANT          (prints the JSON answer)

Bodies are streamed from and to files. The daemon identifies the caller by
its uid/gid (SO_PEERCRED): a [[clients]] rule must allow the operation.
Exit status 1 and one "envelopd_client:" line on any failure; an output file
is written next to OUT and renamed only when the whole body arrived.
"""
import http.client
import json
import os
import socket
import sys
import threading

SOCKET = os.environ.get("ENVELOPD_SOCKET", "/run/envelopd/envelopd.sock")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("envelopd")  # the host name is not used
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def send_file(conn, f):
    # The daemon streams both ways at once: the body is sent from a thread
    # while this one reads the response, or both sides' buffers fill up.
    try:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            conn.sock.sendall(chunk)
    except OSError:
        pass  # the response says why (an early error answer closes the request)


def request(method, path, body=None, headers=None, out=None):
    conn = UnixHTTPConnection(SOCKET)
    sender = None
    if hasattr(body, "read"):
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        sender = threading.Thread(target=send_file, args=(conn, body), daemon=True)
        sender.start()
    else:
        conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    if resp.status // 100 != 2:
        try:
            err = json.load(resp)["error"]
            msg = "%s (%s)" % (err["message"], err["code"])
        except Exception:
            msg = resp.reason
        raise SystemExit("envelopd_client: %s %s: HTTP %d: %s" % (method, path, resp.status, msg))
    if out is None:
        return resp.read()
    tmp = out + ".part"
    try:
        with open(tmp, "wb") as f:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        # http.client raises IncompleteRead on a broken chunked transfer:
        # the daemon's only signal that a stream failed after it started.
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def stream(method, path, src, dst):
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        request(method, path, body=f, out=dst,
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})


def main(argv):
    if len(argv) == 5 and argv[1] == "encrypt":
        stream("POST", "/v1/tenants/%s/encrypt" % argv[2], argv[3], argv[4])
    elif len(argv) == 4 and argv[1] == "decrypt":
        stream("POST", "/v1/decrypt", argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "datakey":
        body = request("POST", "/v1/tenants/%s/datakey" % argv[2], body=b"{}",
                       headers={"Content-Type": "application/json"})
        sys.stdout.write(body.decode())
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except OSError as e:
        sys.exit("envelopd_client: %s" % e)
    except http.client.HTTPException as e:
        sys.exit("envelopd_client: incomplete response: %r" % e)
